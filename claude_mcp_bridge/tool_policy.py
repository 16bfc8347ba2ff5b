"""The config as it applies to one definition: its budget, limits and permissions.

Built once per catalog (``catalog.py``) and carried with each published tool, so a
call looks nothing up in the config.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from agents_registry import Definition

from .budget import Budget
from .config import Config, Decision
from .rules import Rule

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
    rules: tuple[tuple[Rule, ...], ...] = ()
    """Permission rules per level (global, then the definition's); each level only narrows."""
    unmatched: Decision = "ask"
    ask_timeout_s: float = 120.0
    no_elicitation: Decision = "deny"
    sandbox: Sandbox | None = None
    """The CLI's sandbox around the call's commands, when the config asks for it."""
    allowed_modes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(config key, modes) lists that all must admit a definition file's permission mode."""
    allowed_servers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(config key, names) lists that all must admit every MCP server a child uses."""
    definition_servers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(config key, names) lists that all must admit a server an agent file starts itself."""
    mode_ceiling: str | None = None
    """The most permissive mode a call may run in (a client's); a stricter one is kept."""
    live_idle_s: float = 0.0
    """How long the call's process may wait alive for a follow-up (0: not kept)."""


@dataclass(frozen=True)
class Sandbox:
    """Where sandboxed commands may write (besides the call's cwd) and connect."""

    writable_roots: tuple[Path, ...] = ()
    allowed_domains: tuple[str, ...] = ()


def tool_policy(config: Config, definition: Definition, project_dir: Path) -> ToolPolicy:
    tool = config.tool(definition.kind, definition.name)
    limits, permissions = config.limits, config.permissions
    roots = tool.permissions.allowed_cwd_roots or permissions.allowed_cwd_roots or [project_dir]
    allow_lists = [permissions.allowed_tools, tool.permissions.allowed_tools]
    override = tool.permissions.allow_model_override
    return ToolPolicy(
        budget=Budget(None, tool.budget.daily_usd, tool.budget.monthly_usd),
        per_call_usd=smallest(config.budget.per_call_usd, tool.budget.per_call_usd),
        timeout_s=tool.limits.timeout_s or limits.timeout_s,
        max_turns=smallest(limits.max_turns, tool.limits.max_turns),
        max_concurrency=tool.limits.max_concurrency,
        permission_mode=tool.permissions.mode or permissions.mode,
        allowed_tools=tuple(tuple(a) for a in allow_lists if a is not None),
        disallowed_tools=unique(
            [*permissions.disallowed_tools, *tool.permissions.disallowed_tools]),
        cwd_roots=tuple(_resolved(str(r)) for r in roots),
        allow_model_override=override if override is not None else permissions.allow_model_override,
        allow_bypass=permissions.allow_bypass_permissions,
        rules=tuple(tuple(Rule(r.tool, r.decision) for r in level)
                    for level in (permissions.rules, tool.permissions.rules)),
        unmatched=permissions.unmatched,
        ask_timeout_s=permissions.ask_timeout_s,
        no_elicitation=permissions.no_elicitation,
        sandbox=_sandbox(config, tool.permissions.sandbox),
        allowed_modes=_mode_lists(config, definition),
        allowed_servers=_server_lists(config, definition, "allowed_servers"),
        definition_servers=_server_lists(config, definition, "definition_servers"),
        live_idle_s=_live_idle_s(config, tool.limits.live_idle_s),
    )


def _live_idle_s(config: Config, own: float | None) -> float:
    if not config.warm.live_sessions:
        return 0.0
    return own if own is not None else config.warm.live_idle_s


def _sandbox(config: Config, asked: bool | None) -> Sandbox | None:
    sandbox = config.permissions.sandbox
    # A definition may turn the sandbox on, never off: policy only narrows.
    if not (sandbox.enabled or asked):
        return None
    return Sandbox(tuple(_resolved(str(r)) for r in sandbox.writable_roots),
                   tuple(sandbox.allowed_domains))


def _server_lists(
    config: Config, definition: Definition, key: Literal["allowed_servers", "definition_servers"]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    lists: list[tuple[str, tuple[str, ...]]] = []
    configured: list[str] | None = getattr(config.mcp, key)
    if configured is not None:
        lists.append((f"[mcp] {key}", tuple(configured)))
    own: list[str] | None = getattr(config.tool(definition.kind, definition.name).mcp, key)
    if own is not None:
        table = "agents" if definition.kind == "agent" else "skills"
        lists.append((f"[{table}.{definition.name}.mcp] {key}", tuple(own)))
    return tuple(lists)


def _mode_lists(config: Config, definition: Definition) -> tuple[tuple[str, tuple[str, ...]], ...]:
    lists = [("[permissions] allowed_modes", config.permissions.modes_for_definitions())]
    own = config.tool(definition.kind, definition.name).permissions.allowed_modes
    if own is not None:
        table = "agents" if definition.kind == "agent" else "skills"
        lists.append((f"[{table}.{definition.name}.permissions] allowed_modes", tuple(own)))
    return tuple(lists)


# From the strictest: a mode may be lowered to a ceiling, never raised. No mode at all is
# the CLI's "default".
_PERMISSIVENESS = {"plan": 0, "dontAsk": 1, "default": 1, "manual": 1, "acceptEdits": 2,
                   "auto": 3, "bypassPermissions": 4}


def stricter(mode: str | None, ceiling: str | None) -> str | None:
    """``mode`` held to ``ceiling``: the ceiling when ``mode`` is more permissive."""
    if ceiling is None:
        return mode
    rank = _PERMISSIVENESS.get(mode or "default", len(_PERMISSIVENESS))
    return ceiling if _PERMISSIVENESS[ceiling] < rank else mode


def resolve_roots(config: Config, project_dir: Path) -> None:
    """Resolve every folder a policy of ``config`` names, now: a root that cannot be
    resolved (a symlink loop, ``~nobody``) stops the catalog's build with its error instead
    of failing each call of a tool, and no call resolves one on the event loop."""
    tools = [*config.agents.values(), *config.skills.values()]
    roots = [project_dir, *config.permissions.sandbox.writable_roots,
             *(config.permissions.allowed_cwd_roots or ()),
             *(root for tool in tools for root in tool.permissions.allowed_cwd_roots or ())]
    for root in roots:
        _resolved(str(root))


@functools.lru_cache(maxsize=256)
def _resolved(root: str) -> Path:
    # A catalog of thousands resolves the same few roots once each, not once per tool.
    # Cached for the process: a root that later becomes a symlink elsewhere needs a restart.
    return Path(root).expanduser().resolve()


def smallest(*values: _N | None) -> _N | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
