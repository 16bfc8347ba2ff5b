"""Policy: (definition, arguments, tool policy) -> RunPlan | Refusal. Pure, no I/O but paths.

Rules:
- Policy narrows what a definition asks for, never widens it: the allowed tools
  are the definition's ``tools`` kept only where the config's allow-lists admit
  them; the disallowed tools are the union of all lists.
- ``bypassPermissions`` runs only when the config says so explicitly.
- A definition file's ``permissionMode`` must be in every ``allowed_modes`` list that
  applies (default: the safe modes, see ``config.SAFE_MODES``); a mode the config sets
  itself is the config's choice.
- MCP servers are narrowed like tools. An agent file's ``mcpServers`` may name servers
  configured elsewhere, but an inline config (which starts a program of the file's
  choosing, even under ``--strict-mcp-config``, checked with the real CLI) runs only
  when every ``definition_servers`` list names it; every server, from any source, must
  be in every ``allowed_servers`` list. Forwarded servers outside them are left out
  (``forwarding.py``).
- A ``cwd`` must resolve (symlinks and ``..`` first) inside an allowed root.
- The per-call cap is the smallest of the caller's, the tool's and the global one.
- A bridge at or beyond ``max_depth`` refuses every call: a chain of agents that
  loops back into the bridge stops instead of forking forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents_registry import AgentDefinition, Definition

from .arguments import CallArguments
from .outcomes import Refusal
from .tool_policy import Sandbox, ToolPolicy, smallest, stricter, unique


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
    mcp_servers: tuple[Any, ...] = ()
    """The agent's own ``mcpServers`` as ``--agents`` takes them: names and ``{name: config}``."""
    allowed_servers: frozenset[str] | None = None
    """The MCP servers a child may use (None: any); forwarded configs are cut down to them."""


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
    mode = _checked_mode(definition, policy)
    if isinstance(mode, Refusal):
        return mode
    cwd = _checked_cwd(arguments.cwd, policy.cwd_roots, project_dir)
    if isinstance(cwd, Refusal):
        return cwd
    servers = checked_servers(definition, policy)
    if isinstance(servers, Refusal):
        return servers
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
        mcp_servers=servers,
        allowed_servers=_admitted_by_all(policy.allowed_servers),
    )


def _checked_mode(definition: Definition, policy: ToolPolicy) -> str | Refusal | None:
    """The permission mode the call runs in (held to a client's ceiling), or why a
    definition file may not ask for its mode."""
    mode = stricter(policy.permission_mode or _definition_mode(definition),
                    policy.mode_ceiling)
    if mode == "bypassPermissions" and not policy.allow_bypass:
        return Refusal("policy", f"{definition.path}: asks for permission mode "
                       "bypassPermissions; allow it with [permissions] "
                       "allow_bypass_permissions = true")
    if policy.permission_mode is None and mode is not None:
        refused_by = next((key for key, modes in policy.allowed_modes if mode not in modes), None)
        if refused_by is not None:
            allowed = dict(policy.allowed_modes)[refused_by]
            return Refusal("policy", f"{definition.path}: asks for permission mode {mode}, "
                           f"which {refused_by} does not allow (allowed: "
                           f"{', '.join(allowed) or 'none'}); add it there, or set the "
                           "mode in the config")
    return mode


def checked_servers(definition: Definition, policy: ToolPolicy) -> tuple[Any, ...] | Refusal:
    """The agent's ``mcpServers`` in the list form ``--agents`` accepts (2.1.197 drops an
    agent whose ``mcpServers`` is a mapping), or why one of them may not run."""
    raw = definition.mcp_servers if isinstance(definition, AgentDefinition) else None
    if raw is None:
        return ()
    entries = [{name: config} for name, config in raw.items()] if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        return Refusal("policy", f"{definition.path}: mcpServers must be a list of server "
                       f"names or {{name: config}} entries, got {type(raw).__name__}")
    for entry in entries:
        refusal = _server_refusal(definition, entry, policy)
        if refusal is not None:
            return refusal
    return tuple(entries)


def _server_refusal(definition: Definition, entry: Any, policy: ToolPolicy) -> Refusal | None:
    if isinstance(entry, str):
        names, started = [entry], False
    elif isinstance(entry, dict) and entry and all(isinstance(k, str) for k in entry):
        names, started = list(entry), True
    else:
        return Refusal("policy", f"{definition.path}: an mcpServers entry must be a server name "
                       f"or {{name: config}}, got {entry!r:.80}")
    for name in names:
        if started:
            denied_by = _denied_by(name, policy.definition_servers, default="[mcp] "
                                   "definition_servers")
            if denied_by is not None:
                command = entry[name].get("command") if isinstance(entry[name], dict) else None
                what = f" (command {command!r:.80})" if command else ""
                return Refusal("policy", f"{definition.path}: mcpServers starts the server "
                               f"{name!r}{what} itself, which {denied_by} does not allow; a "
                               "definition file starts only the servers named there (none by "
                               "default)")
        denied_by = _denied_by(name, policy.allowed_servers)
        if denied_by is not None:
            return Refusal("policy", f"{definition.path}: mcpServers names the server {name!r}, "
                           f"which {denied_by} does not allow; add it there or remove it "
                           "from the file")
    return None


def _denied_by(name: str, lists: tuple[tuple[str, tuple[str, ...]], ...],
               default: str | None = None) -> str | None:
    """The key of the first list that does not admit ``name``; with no list at all,
    ``default`` (a source that needs consent) or None (allowed)."""
    if not lists:
        return default
    return next((key for key, names in lists if name not in names), None)


def _admitted_by_all(lists: tuple[tuple[str, tuple[str, ...]], ...]) -> frozenset[str] | None:
    if not lists:
        return None
    admitted = set(lists[0][1])
    for _, names in lists[1:]:
        admitted &= set(names)
    return frozenset(admitted)


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
