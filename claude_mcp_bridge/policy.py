"""Policy: (definition, arguments, config) -> RunPlan | Refused. Pure, no I/O but paths.

Rules:
- Policy narrows what a definition asks for, never widens it: the allowed tools
  are the definition's ``tools`` kept only where the config's allow-lists admit
  them; the disallowed tools are the union of all lists.
- ``bypassPermissions`` runs only when the config says so explicitly.
- A ``cwd`` must resolve (symlinks and ``..`` first) inside an allowed root.
- The per-call cap is the smallest of the caller's, the tool's and the global one.
- A bridge at or beyond ``max_depth`` refuses every call: a chain of agents that
  loops back into the bridge stops instead of forking forever.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agents_registry import AgentDefinition, Definition

from .config import Config, ToolConfig
from .ledger import Budget
from .schemas import CallArguments

_N = TypeVar("_N", int, float)


@dataclass(frozen=True)
class ToolPolicy:
    """The config as it applies to one definition."""

    budget: Budget
    """The tool's own daily and monthly caps."""
    per_call_usd: float | None
    timeout_s: float
    max_turns: int | None
    max_concurrency: int | None
    permission_mode: str | None
    allowed_tools: tuple[tuple[str, ...], ...]
    """Allow-lists that all must admit a tool (global, then the tool's own)."""
    disallowed_tools: tuple[str, ...]
    cwd_roots: tuple[Path, ...]
    allow_model_override: bool
    allow_bypass: bool


@dataclass(frozen=True)
class RunPlan:
    """What one admitted call runs with; ``command.py`` turns it into argv."""

    tools: tuple[str, ...] | None
    """The agent's available and allowed tools (None: the CLI's defaults)."""
    disallowed_tools: tuple[str, ...]
    permission_mode: str | None
    model: str | None
    max_turns: int | None
    max_budget_usd: float | None
    cwd: Path
    session_id: str | None
    timeout_s: float


@dataclass(frozen=True)
class Refused:
    reason: str


def tool_policy(config: Config, definition: Definition, project_dir: Path) -> ToolPolicy:
    tool = config.tool(definition.kind, definition.name)
    limits, permissions = config.limits, config.permissions
    roots = tool.permissions.allowed_cwd_roots or permissions.allowed_cwd_roots or [project_dir]
    allow_lists = [permissions.allowed_tools, tool.permissions.allowed_tools]
    override = tool.permissions.allow_model_override
    return ToolPolicy(
        budget=Budget(None, tool.budget.daily_usd, tool.budget.monthly_usd),
        per_call_usd=_smallest(config.budget.per_call_usd, tool.budget.per_call_usd),
        timeout_s=tool.limits.timeout_s or limits.timeout_s,
        max_turns=_smallest(limits.max_turns, tool.limits.max_turns),
        max_concurrency=tool.limits.max_concurrency,
        permission_mode=tool.permissions.mode or permissions.mode,
        allowed_tools=tuple(tuple(a) for a in allow_lists if a is not None),
        disallowed_tools=_unique(
            [*permissions.disallowed_tools, *tool.permissions.disallowed_tools]),
        cwd_roots=tuple(_resolved(str(r)) for r in roots),
        allow_model_override=override if override is not None else permissions.allow_model_override,
        allow_bypass=permissions.allow_bypass_permissions,
    )


@functools.lru_cache(maxsize=256)
def _resolved(root: str) -> Path:
    # A catalog of thousands resolves the same few roots once each, not once per tool.
    # Cached for the process: a root that later becomes a symlink elsewhere needs a restart.
    return Path(root).expanduser().resolve()


def is_enabled(config: Config, definition: Definition) -> bool:
    return config.tool(definition.kind, definition.name).enabled


def tool_config(config: Config, definition: Definition) -> ToolConfig:
    return config.tool(definition.kind, definition.name)


def plan_call(
    definition: Definition,
    arguments: CallArguments,
    policy: ToolPolicy,
    *,
    depth: int,
    max_depth: int,
    project_dir: Path,
) -> RunPlan | Refused:
    if depth >= max_depth:
        return Refused(
            f"recursion guard: this bridge runs at depth {depth} of a chain of bridges "
            f"(max_depth {max_depth}), so an agent called back into the bridge; raise "
            "[limits] max_depth if the chain is meant to be this deep")
    if arguments.model and not policy.allow_model_override:
        return Refused("the config does not let callers choose the model "
                       "([permissions] allow_model_override = false)")
    mode = policy.permission_mode or _definition_mode(definition)
    if mode == "bypassPermissions" and not policy.allow_bypass:
        return Refused(f"{definition.path}: asks for permission mode bypassPermissions; allow it "
                       "with [permissions] allow_bypass_permissions = true")
    cwd = _checked_cwd(arguments.cwd, policy.cwd_roots, project_dir)
    if isinstance(cwd, Refused):
        return cwd
    declared = definition.tools if definition.kind == "agent" else definition.allowed_tools
    tools = narrow_tools(declared, policy.allowed_tools)
    if tools == () and policy.allowed_tools and declared != ():
        # An empty list could read as "the default tools" somewhere down the line: refuse.
        return Refused(
            f"{definition.path}: none of its tools ({', '.join(declared or ('the defaults',))}) "
            "is allowed by [permissions] allowed_tools; widen the allow-list or the "
            "definition's tools")
    return RunPlan(
        tools=tools,
        disallowed_tools=_unique([*(definition.disallowed_tools or ()), *policy.disallowed_tools]),
        permission_mode=mode,
        model=arguments.model or definition.model,
        max_turns=_smallest(arguments.max_turns, policy.max_turns),
        max_budget_usd=_smallest(arguments.max_budget_usd, policy.per_call_usd),
        cwd=cwd,
        session_id=arguments.session_id,
        timeout_s=policy.timeout_s,
    )


def narrow_tools(
    declared: tuple[str, ...] | None, allow_lists: Iterable[tuple[str, ...]]
) -> tuple[str, ...] | None:
    """The tools every allow-list admits; ``None`` means the CLI's default set.

    A rule admits a tool by name or by its base (``Bash`` admits ``Bash(git *)``);
    when the declared tool is broader than the rule (``Bash`` vs ``Bash(git *)``),
    the narrower rule is what remains.
    """
    tools = declared
    for allowed in allow_lists:
        if tools is None:
            tools = allowed
            continue
        kept: list[str] = []
        for tool in tools:
            if tool in allowed or _base(tool) in allowed:
                kept.append(tool)
            else:
                kept += [rule for rule in allowed if _base(rule) == tool]
        tools = _unique(kept)
    return tools


def _base(rule: str) -> str:
    return rule.split("(", 1)[0]


def _definition_mode(definition: Definition) -> str | None:
    return definition.permission_mode if isinstance(definition, AgentDefinition) else None


def _checked_cwd(
    requested: str | None, roots: tuple[Path, ...], project_dir: Path
) -> Path | Refused:
    if requested is None:
        return project_dir
    shown = requested if len(requested) <= 200 else requested[:200] + "..."
    if "\0" in requested:
        return Refused(f"cwd {shown!r} contains a NUL byte, which no path can")
    path = Path(requested)
    if not path.is_absolute():
        return Refused(f"cwd must be an absolute path, got {shown!r}")
    try:
        resolved = path.resolve()
        is_dir = resolved.is_dir()
    except OSError as exc:  # ENAMETOOLONG for a path or a component over the OS limit
        return Refused(f"cwd {shown!r} ({len(requested)} characters) cannot be used: "
                       f"{(exc.strerror or str(exc)).lower()}")
    if not is_dir:
        return Refused(f"cwd {shown!r} is not an existing directory")
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        return Refused(f"cwd {requested!r} resolves to {resolved}, outside the allowed roots "
                       f"({allowed}); add it to [permissions] allowed_cwd_roots")
    return resolved


def _smallest(*values: _N | None) -> _N | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
