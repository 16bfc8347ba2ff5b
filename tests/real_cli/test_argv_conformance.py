"""Every argv shape the bridge builds is accepted by the real CLI.

Each case sets up a definition, a config and call arguments, makes one MCP call through an
in-process bridge, and checks three things: the argv holds the flags the policy implies (read
from the recording shim), the real CLI ran it to a successful answer, and what reached the model
(tools, model) matches.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.real_cli.support import DEMO_MCP_SERVER, bridge_settings, call

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]


@dataclass(frozen=True)
class Case:
    front: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    arguments: dict[str, Any] = field(default_factory=dict)
    flags: tuple[tuple[str, ...], ...] = ()
    """Runs of consecutive argv entries that must appear."""
    model_tools: frozenset[str] | None = None
    """The exact tool names the model is offered (None: not checked)."""
    model_contains: str | None = None


CASES: dict[str, Case] = {
    "agent-defaults": Case(flags=(("--agent=helper",),)),
    "agent-tools-and-disallowed": Case(
        front="tools: Read, Grep, Bash(git log:*)\ndisallowedTools: Write\n",
        config={"permissions": {"disallowed_tools": ["WebFetch"]}},
        flags=(("--tools=Read,Grep,Bash",), ("--disallowedTools", "Write", "WebFetch")),
        model_tools=frozenset({"Read", "Grep", "Bash"})),
    "policy-narrows-tools": Case(
        front="tools: Read, Grep, Bash\n",
        config={"permissions": {"allowed_tools": ["Read", "Bash(git *)"]}},
        flags=(("--tools=Read,Bash",),),
        model_tools=frozenset({"Read", "Bash"})),
    "caller-model-turns-budget": Case(
        arguments={"model": "haiku", "max_turns": 3, "max_budget_usd": 0.5},
        flags=(("--model=haiku",), ("--max-turns=3",), ("--max-budget-usd=0.5",)),
        model_contains="haiku"),
    "definition-model-and-extras": Case(
        front="model: haiku\nmaxTurns: 4\neffort: low\nskills: [notes]\n",
        config={"budget": {"per_call_usd": 2.0}, "limits": {"max_turns": 10}},
        flags=(("--model=haiku",), ("--max-budget-usd=2",)),
        model_contains="haiku"),
    "agent-permission-mode": Case(front="permissionMode: plan\n",
                                  flags=(("--permission-mode=plan",),)),
    "bypass-permissions-when-allowed": Case(
        config={"permissions": {"mode": "bypassPermissions", "allow_bypass_permissions": True}},
        flags=(("--permission-mode=bypassPermissions",),)),
    **{
        f"permission-mode-{mode}": Case(config={"permissions": {"mode": mode}},
                                        flags=((f"--permission-mode={mode}",),))
        for mode in ("acceptEdits", "auto", "default", "dontAsk", "plan")
    },
}


def has_run(argv: list[str], run: tuple[str, ...]) -> bool:
    return any(tuple(argv[i:i + len(run)]) == run for i in range(len(argv)))


def agent_json(argv: list[str]) -> dict[str, Any]:
    value = next(a for a in argv if a.startswith("--agents="))
    return dict(json.loads(value.removeprefix("--agents=")))


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_the_real_cli_accepts_the_argv_the_policy_builds(workspace, real_cli, case):
    workspace.agent("helper", case.front, body="You help. ARGV-CASE-BODY")
    # As root the CLI refuses bypassPermissions outside a sandbox; this is one.
    workspace.extra_env["IS_SANDBOX"] = "1"
    result = await call(bridge_settings(workspace, real_cli, case.config), real_cli,
                        "agent_helper", prompt="Say done", **case.arguments)
    argv = real_cli.last_argv()
    assert not result.is_error, result.content[0].text
    assert result.content[0].text == "done"
    assert argv[:4] == ["-p", "--output-format", "stream-json", "--verbose"]
    for run in case.flags:
        assert has_run(argv, run), f"{run} not in {argv}"
    request = real_cli.server.last
    assert "ARGV-CASE-BODY" in request.system_text
    if case.model_tools is not None:
        assert set(request.tool_names) == case.model_tools
    if case.model_contains is not None:
        assert case.model_contains in (request.model or "")


async def test_the_inline_agent_keeps_the_definition_extras(workspace, real_cli):
    workspace.agent("helper", "model: haiku\nmaxTurns: 4\neffort: low\nskills: [notes]\n"
                              "permissionMode: dontAsk\ntools: Read\n")
    result = await call(bridge_settings(workspace, real_cli), real_cli, "agent_helper",
                        prompt="Say done")
    assert not result.is_error, result.content[0].text
    inline = agent_json(real_cli.last_argv())["helper"]
    assert inline == {"description": "The helper agent.", "prompt": "You help.",
                      "tools": ["Read"], "model": "haiku", "maxTurns": 4, "skills": ["notes"],
                      "effort": "low", "permissionMode": "dontAsk"}


async def test_a_skill_runs_with_its_body_its_folder_and_its_allowed_tools(workspace, real_cli):
    skill = workspace.skill("notes", "allowed-tools: Grep, Read\n",
                            body="Summarise the notes. SKILL-BODY-SENTINEL", scope="user")
    (skill.parent / "reference.md").write_text("REFERENCE-BESIDE-THE-SKILL\n")
    real_cli.server.add({"tool_use": {"name": "Read",
                                      "input": {"file_path": str(skill.parent / "reference.md")}}},
                        {"text": "Summarised."})
    result = await call(bridge_settings(workspace, real_cli), real_cli, "skill_notes",
                        prompt="Summarise")
    argv = real_cli.last_argv()
    assert not result.is_error, result.content[0].text
    assert result.content[0].text == "Summarised."
    assert has_run(argv, ("--add-dir", str(skill.parent)))
    assert has_run(argv, ("--tools=Grep,Read",))
    assert "--allowedTools" not in argv  # the bridge allows them when the CLI asks
    assert any(a.startswith("--append-system-prompt=") for a in argv)
    first, second = real_cli.server.turn_requests[-2:]
    assert "SKILL-BODY-SENTINEL" in first.system_text
    assert sorted(first.tool_names) == ["Grep", "Read"]  # its allowed-tools are its whole set
    # The skill's folder is outside the project; it is added with --add-dir (checked above).
    [read] = second.tool_results
    assert not read.get("is_error")
    assert "REFERENCE-BESIDE-THE-SKILL" in second.message_text


async def test_forwarded_mcp_configs_and_strict_reach_the_cli(workspace, real_cli, tmp_path):
    # alwaysLoad: the CLI waits for the server before its first model turn (see test_calls)
    entry = {"command": sys.executable, "args": [str(DEMO_MCP_SERVER)], "alwaysLoad": True}
    config_file = tmp_path / "echo.mcp.json"
    config_file.write_text(json.dumps({"mcpServers": {"echo_file": entry}}))
    inline = json.dumps({"mcpServers": {"echo_inline": entry}})
    workspace.agent("helper", "tools: mcp__echo_file__echo, mcp__echo_inline__echo\n")
    real_cli.server.add({"tool_use": {"name": "mcp__echo_inline__echo", "input": {"text": "hi"}}},
                        {"text": "Echoed."})
    settings = bridge_settings(workspace, real_cli, mcp_configs=(str(config_file), inline),
                               strict_mcp_config=True)
    result = await call(settings, real_cli, "agent_helper", prompt="Echo hi")
    argv = real_cli.last_argv()
    assert not result.is_error, result.content[0].text
    assert has_run(argv, ("--mcp-config", str(config_file), inline, "--strict-mcp-config"))
    assert any("MCP: 2/2 connected" in p for p in real_cli.progress), real_cli.progress
    assert set(real_cli.server.turn_requests[0].tool_names) == {
        "mcp__echo_file__echo", "mcp__echo_inline__echo"}
    assert "echo: hi" in real_cli.server.last.message_text
