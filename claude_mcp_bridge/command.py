"""(definition, arguments, settings) -> Command: argv, env, cwd, stdin. Pure.

The argv uses only flags the real CLI has (``../shared/reference/claude-cli.md``).
Rules that matter:
- The prompt goes on stdin, never in argv: the CLI's variadic options
  (``--mcp-config``, ``--allowedTools``, ``--add-dir``) swallow a trailing
  positional argument, and a prompt starting with ``-`` would read as a flag.
- Options whose value comes from a definition or a caller use ``--flag=value``, so a
  value starting with ``-`` can never be read as another flag.
- An agent runs from its own definition, passed inline with ``--agents`` and
  selected with ``--agent``: the child runs exactly what was published, whatever
  other agent files of that name it might find.
- A skill runs deterministically: its SKILL.md body is appended to the system
  prompt and its folder is added with ``--add-dir`` (skills read files beside them).
- When policy or the definition narrows the tools, ``--tools`` narrows the built-in
  set the model is offered, on every path: ``--allowedTools`` only pre-approves, and
  without ``--tools`` the real CLI offers its whole default set (Bash, Write, ...).
  ``--tools`` takes names, not rules (``Bash(git *)`` -> ``Bash``), and never removes
  MCP tools, so a narrowed list that names no ``mcp__`` tool also denies ``mcp__*``.
- Every child speaks the control protocol (issue 17): ``--input-format stream-json``
  and ``--permission-prompt-tool stdio``; stdin carries an ``initialize`` control
  request, then the prompt as one user message, and stays open so the runner can
  answer the CLI's ``can_use_tool`` requests. So the definition's tools are not
  pre-allowed with ``--allowedTools`` (that would skip the bridge's rules): the
  bridge allows them when asked, unless a rule says otherwise. ``dontAsk`` asks
  nothing, so there they are still pre-allowed.
- A sandboxed call adds ``--settings`` with the CLI's ``sandbox`` block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents_registry import AgentDefinition, Definition, SkillDefinition

from .errors import CommandError
from .forwarding import call_flags
from .policy import RunPlan
from .settings import DEPTH_VAR, Settings
from .tool_policy import Sandbox

CONTROL_FLAGS = ("--input-format", "stream-json", "--permission-prompt-tool", "stdio")
"""The control protocol: the bridge answers the child's permission prompts on stdin."""
INITIALIZE_ID = "bridge-init"

# Environment variables a parent Claude Code sets that must not leak into the child:
# CLAUDECODE made older CLIs refuse to start ("nested session").
_REMOVED_ENV = ("CLAUDECODE",)
MCP_PREFIX = "mcp__"


@dataclass(frozen=True)
class Command:
    """Everything needed to start one child; built by ``build_command``."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    stdin: bytes
    interactive: bool = False
    """The child speaks the control protocol: stdin stays open for answers until its
    ``result``."""


def build_command(
    definition: Definition, plan: RunPlan, prompt: str, settings: Settings, claude: Path,
    *, json_schema: Mapping[str, Any] | None = None,
) -> Command:
    argv = [str(claude), "-p", "--output-format", "stream-json", "--verbose", *CONTROL_FLAGS]
    if isinstance(definition, AgentDefinition):
        argv += _agent_flags(definition, plan)
    else:
        argv += _skill_flags(definition, plan)
    argv += _tool_flags(plan.tools, plan.disallowed_tools,
                        pre_allow=plan.permission_mode == "dontAsk")
    argv += _plan_flags(plan)
    if plan.sandbox is not None:
        argv.append(f"--settings={json.dumps(sandbox_settings(plan.sandbox, plan.cwd))}")
    argv += call_flags(settings.mcp_configs, settings.strict_mcp_config, plan.cwd,
                       settings.project_dir, allowed=plan.allowed_servers)
    if json_schema is not None:
        argv.append(f"--json-schema={json.dumps(json_schema, separators=(',', ':'))}")
    return Command(
        argv=tuple(argv),
        env=child_env(settings.base_env, settings.depth),
        cwd=plan.cwd,
        stdin=control_stdin(prompt),
        interactive=True,
    )


def control_stdin(prompt: str) -> bytes:
    """What a control-protocol child reads first: ``initialize``, then the prompt."""
    frames = [
        {"type": "control_request", "request_id": INITIALIZE_ID,
         "request": {"subtype": "initialize", "hooks": None}},
        {"type": "user", "message": {"role": "user", "content": prompt},
         "parent_tool_use_id": None, "session_id": "default"},
    ]
    return "".join(json.dumps(frame) + "\n" for frame in frames).encode()


def sandbox_settings(sandbox: Sandbox, cwd: Path) -> dict[str, Any]:
    """The CLI's ``sandbox`` settings: Bash runs sandboxed without a prompt, writes only in
    ``cwd`` (the CLI's default) and the extra roots, network only to the allowed hosts, and
    a command that cannot be sandboxed fails instead of running bare."""
    return {"sandbox": {
        "enabled": True,
        "autoAllowBashIfSandboxed": True,
        "allowUnsandboxedCommands": False,
        "failIfUnavailable": True,
        "filesystem": {"allowWrite": [str(cwd), *(str(r) for r in sandbox.writable_roots)]},
        "network": {"allowedDomains": list(sandbox.allowed_domains)},
    }}


def _agent_flags(agent: AgentDefinition, plan: RunPlan) -> list[str]:
    inline: dict[str, Any] = {
        "description": agent.description,
        "prompt": agent.body or agent.description,
    }
    if plan.tools is not None:
        inline["tools"] = list(plan.tools)
    if plan.disallowed_tools:
        inline["disallowedTools"] = list(plan.disallowed_tools)
    if plan.model:
        inline["model"] = plan.model
    if agent.max_turns:
        inline["maxTurns"] = agent.max_turns
    if agent.skills:
        inline["skills"] = list(agent.skills)
    if agent.effort:
        inline["effort"] = agent.effort
    if plan.mcp_servers:
        inline["mcpServers"] = list(plan.mcp_servers)
    if plan.permission_mode:
        inline["permissionMode"] = plan.permission_mode
    return [f"--agents={json.dumps({agent.name: inline})}", f"--agent={agent.name}"]


def _skill_flags(skill: SkillDefinition, plan: RunPlan) -> list[str]:
    return [f"--append-system-prompt={skill_system_prompt(skill)}",
            "--add-dir", str(skill.directory)]


def skill_system_prompt(skill: SkillDefinition) -> str:
    return (
        f'You are running the "{skill.name}" skill. Follow its instructions to do the '
        f"user's request.\nBase directory for this skill: {skill.directory}\n\n{skill.body}"
    )


def _check_rules(tools: tuple[str, ...] | None) -> None:
    for tool in tools or ():
        if tool.startswith("-"):
            raise CommandError(f"tool rule {tool!r} starts with '-' and would be read as a flag")


def _tool_flags(allowed: tuple[str, ...] | None, disallowed: tuple[str, ...], *,
                pre_allow: bool) -> list[str]:
    """``--tools`` narrows what the model is offered; ``--allowedTools`` pre-approves
    only with ``pre_allow`` (dontAsk), otherwise the bridge's rules answer each prompt."""
    _check_rules((*(allowed or ()), *disallowed))
    flags: list[str] = []
    if allowed is not None:
        flags.append(f"--tools={','.join(builtin_set(allowed))}")
        if not any(tool.startswith(MCP_PREFIX) for tool in allowed):
            disallowed = (*disallowed, MCP_PREFIX + "*")
    if allowed and pre_allow:
        flags += ["--allowedTools", *allowed]
    if disallowed:
        flags += ["--disallowedTools", *disallowed]
    return flags


def builtin_set(tools: tuple[str, ...]) -> tuple[str, ...]:
    """The names for ``--tools``: built-in tools only, rules reduced to their tool."""
    names = (tool.split("(", 1)[0].strip() for tool in tools if not tool.startswith(MCP_PREFIX))
    return tuple(dict.fromkeys(name for name in names if name))


def _plan_flags(plan: RunPlan) -> list[str]:
    flags: list[str] = []
    if plan.model and plan.model != "inherit":
        flags.append(f"--model={plan.model}")
    if plan.permission_mode:
        flags.append(f"--permission-mode={plan.permission_mode}")
    if plan.max_turns is not None:
        flags.append(f"--max-turns={plan.max_turns}")
    if plan.max_budget_usd is not None:
        flags.append(f"--max-budget-usd={format_usd(plan.max_budget_usd)}")
    if plan.session_id:
        flags.append(f"--resume={plan.session_id}")
    return flags




def child_env(base: Mapping[str, str], depth: int) -> dict[str, str]:
    env = {key: value for key, value in base.items() if key not in _REMOVED_ENV}
    env[DEPTH_VAR] = str(depth + 1)
    # 2.1.197 connects MCP servers in the background, so a slow forwarded server can miss
    # the first model turn; wait for them (bounded by MCP_CONNECT_TIMEOUT_MS) unless the
    # user chose otherwise.
    env.setdefault("MCP_CONNECTION_NONBLOCKING", "0")
    return env


def format_usd(amount: float) -> str:
    """A dollar amount as plain decimal text (never ``1e-05``, which the CLI may misread)."""
    return f"{amount:.6f}".rstrip("0").rstrip(".") or "0"
