"""Policy: (definition, arguments, tool policy) -> RunPlan | Refusal. Pure, no I/O but paths.

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

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agents_registry import AgentDefinition, Definition

from .arguments import CallArguments
from .outcomes import Refusal
from .tool_policy import Sandbox, ToolPolicy, smallest, unique


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
    sandbox: Sandbox | None = None
    """The CLI's sandbox around the call's commands (None: not sandboxed)."""


def plan_call(
    definition: Definition,
    arguments: CallArguments,
    policy: ToolPolicy,
    *,
    depth: int,
    max_depth: int,
    project_dir: Path,
) -> RunPlan | Refusal:
    if depth >= max_depth:
        return Refusal(
            "depth", f"recursion guard: this bridge runs at depth {depth} of a chain of bridges "
            f"(max_depth {max_depth}), so an agent called back into the bridge; raise "
            "[limits] max_depth if the chain is meant to be this deep")
    if arguments.model and not policy.allow_model_override:
        return Refusal("policy", "the config does not let callers choose the model "
                       "([permissions] allow_model_override = false)")
    mode = policy.permission_mode or _definition_mode(definition)
    if mode == "bypassPermissions" and not policy.allow_bypass:
        return Refusal("policy", f"{definition.path}: asks for permission mode "
                       "bypassPermissions; allow it with [permissions] "
                       "allow_bypass_permissions = true")
    cwd = _checked_cwd(arguments.cwd, policy.cwd_roots, project_dir)
    if isinstance(cwd, Refusal):
        return cwd
    declared = definition.tools if definition.kind == "agent" else definition.allowed_tools
    tools = narrow_tools(declared, policy.allowed_tools)
    if tools == () and policy.allowed_tools and declared != ():
        # An empty list could read as "the default tools" somewhere down the line: refuse.
        listed = ", ".join(declared or ("the defaults",))
        return Refusal(
            "policy", f"{definition.path}: none of its tools ({listed}) "
            "is allowed by [permissions] allowed_tools; widen the allow-list or the "
            "definition's tools")
    return RunPlan(
        tools=tools,
        disallowed_tools=unique([*(definition.disallowed_tools or ()), *policy.disallowed_tools]),
        permission_mode=mode,
        model=arguments.model or definition.model,
        max_turns=smallest(arguments.max_turns, policy.max_turns),
        max_budget_usd=smallest(arguments.max_budget_usd, policy.per_call_usd),
        cwd=cwd,
        session_id=arguments.session_id,
        timeout_s=policy.timeout_s,
        sandbox=policy.sandbox,
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
        tools = unique(kept)
    return tools


def _base(rule: str) -> str:
    return rule.split("(", 1)[0]


def _definition_mode(definition: Definition) -> str | None:
    return definition.permission_mode if isinstance(definition, AgentDefinition) else None


def _checked_cwd(
    requested: str | None, roots: tuple[Path, ...], project_dir: Path
) -> Path | Refusal:
    if requested is None:
        return project_dir
    shown = requested if len(requested) <= 200 else requested[:200] + "..."
    if "\0" in requested:
        return Refusal("policy", f"cwd {shown!r} contains a NUL byte, which no path can")
    path = Path(requested)
    if not path.is_absolute():
        return Refusal("policy", f"cwd must be an absolute path, got {shown!r}")
    try:
        resolved = path.resolve()
        is_dir = resolved.is_dir()
    except OSError as exc:  # ENAMETOOLONG for a path or a component over the OS limit
        return Refusal("policy", f"cwd {shown!r} ({len(requested)} characters) cannot be used: "
                       f"{(exc.strerror or str(exc)).lower()}")
    if not is_dir:
        return Refusal("policy", f"cwd {shown!r} is not an existing directory")
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        return Refusal("policy", f"cwd {requested!r} resolves to {resolved}, outside the "
                       f"allowed roots ({allowed}); add it to [permissions] allowed_cwd_roots")
    return resolved
