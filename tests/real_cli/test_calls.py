"""Agent calls through the bridge with the real CLI: what reaches the model, progress, failures,
cancellation and resume. Assertions are on the recorded Messages API requests and on processes,
not on the text a test scripted."""

from __future__ import annotations

import json
import re
import sys

import anyio
import pytest

from tests.real_cli.support import (
    DEMO_MCP_SERVER,
    bridge_client,
    bridge_settings,
    call,
    wait_until_dead,
)

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

REVIEWER = "tools: Read, Grep\nmodel: haiku\n"
REVIEWER_BODY = "You are a strict reviewer. AGENT-BODY-SENTINEL"


async def test_an_agent_call_runs_with_its_body_tools_and_model(workspace, real_cli):
    workspace.agent("reviewer", REVIEWER, body=REVIEWER_BODY)
    real_cli.server.add({"text": "Reviewed: nothing to change."})
    result = await call(bridge_settings(workspace, real_cli), real_cli, "agent_reviewer",
                        prompt="Review the parser, please")
    assert not result.is_error, result.content[0].text
    request = real_cli.server.last
    assert "AGENT-BODY-SENTINEL" in request.system_text
    assert "You are an interactive agent" not in request.system_text  # the body replaces it
    assert request.tool_names == ["Read", "Grep"]
    assert "haiku" in (request.model or "")
    assert "Review the parser, please" in request.message_text  # the prompt went on stdin
    output = result.structured_content
    assert output["result"] == "Reviewed: nothing to change."
    assert output["cost_usd"] > 0 and output["num_turns"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", output["session_id"])


async def test_progress_follows_the_real_stream(workspace, real_cli):
    workspace.agent("reviewer", REVIEWER, body=REVIEWER_BODY)
    notes = workspace.project / "notes.txt"
    notes.write_text("the meeting is on Tuesday\n")
    real_cli.server.add({"tool_use": {"name": "Read", "input": {"file_path": str(notes)}}},
                        {"text": "Tuesday, apparently."})
    every_event = {"limits": {"progress_gap_s": 0}}  # the scripted model answers at once
    result = await call(bridge_settings(workspace, real_cli, every_event), real_cli,
                        "agent_reviewer", prompt="When is the meeting?")
    assert not result.is_error, result.content[0].text
    expected = [r"starting agent reviewer", r"started \(claude-haiku\S*, 2 tools\)",
                r"running tool Read", r"Read done", r"wrote 2 words",
                r"finished \(2 turns, \$0\.\d{4}\)"]
    # in this order, whatever else (a heartbeat on a slow machine) comes between
    remaining = iter(real_cli.progress)
    for pattern in expected:
        assert any(re.fullmatch(pattern, message) for message in remaining), \
            (pattern, real_cli.progress)
    assert re.fullmatch(expected[-1], real_cli.progress[-1])
    assert "the meeting is on Tuesday" in real_cli.server.last.message_text


FAILURES = {
    "auth-401": ({"script": [{"error": 401}]}, ["Invalid API key"]),
    "overloaded-529": ({"script": [{"error": 529}]}, ["529", "Overloaded"]),
    "not-logged-in": ({"env": {"ANTHROPIC_API_KEY": ""}},
                      ["Not logged in", "MCP clients do not pass your shell's environment"]),
    "max-turns": ({"script": [{"tool_use": {"name": "Read", "input": {"file_path": "/nowhere"}}},
                              {"text": "never reached"}],
                   "arguments": {"max_turns": 1}},
                  ["Reached maximum number of turns (1)", "raise max_turns"]),
    "max-budget": ({"script": [{"text": "An expensive answer.",
                                "usage": {"input_tokens": 200000, "output_tokens": 5000}}],
                    "arguments": {"max_budget_usd": 0.0001}},
                   ["Reached maximum budget", "raise max_budget_usd"]),
}
# A permission mode the other tested version offers and this one refuses (None: there is none,
# 2.1.332 still accepts "default", which it no longer lists).
MODE_OF_ANOTHER_VERSION = {"2.1.197": "manual", "2.1.332": None}


@pytest.mark.parametrize(("setup", "expected"), list(FAILURES.values()), ids=list(FAILURES))
async def test_a_failed_real_run_is_a_clear_tool_error(workspace, real_cli, setup, expected):
    workspace.agent("reviewer", REVIEWER, body=REVIEWER_BODY)
    real_cli.server.add(*setup.get("script", []))
    workspace.extra_env.update(setup.get("env", {}))
    settings = bridge_settings(workspace, real_cli, setup.get("config"))
    result = await call(settings, real_cli, "agent_reviewer", prompt="Go",
                        **setup.get("arguments", {}))
    text = result.content[0].text
    assert result.is_error
    assert result.structured_content is None or result.structured_content["is_error"]
    assert text.startswith("agent_reviewer: ")
    for part in expected:
        assert part in text


async def test_a_permission_mode_this_cli_lacks_is_a_clear_tool_error(
        workspace, real_cli, cli_version):
    mode = MODE_OF_ANOTHER_VERSION[cli_version]
    if mode is None:
        pytest.skip(f"claude {cli_version} accepts every mode the other tested version offers")
    workspace.agent("reviewer", REVIEWER, body=REVIEWER_BODY)
    settings = bridge_settings(workspace, real_cli, {"permissions": {"mode": mode}})
    result = await call(settings, real_cli, "agent_reviewer", prompt="Go")
    text = result.content[0].text
    assert result.is_error
    assert text.startswith("agent_reviewer: ")
    assert f"argument '{mode}' is invalid" in text and "Allowed choices are" in text


async def test_cancelling_a_call_ends_the_real_cli_and_its_mcp_servers(
        workspace, real_cli, tmp_path):
    pidfile = tmp_path / "mcp.pid"
    # The demo server lingers 60 s after its stdin closes: only a group kill ends it in time.
    config = json.dumps({"mcpServers": {"demo": {
        "command": sys.executable, "args": [str(DEMO_MCP_SERVER)], "alwaysLoad": True,
        "env": {"DEMO_MCP_PIDFILE": str(pidfile), "DEMO_MCP_LINGER": "60"}}}})
    workspace.agent("reviewer", "tools: mcp__demo__echo\n")
    real_cli.server.add({"delay": 120, "text": "too late"})
    settings = bridge_settings(workspace, real_cli, mcp_configs=(config,), strict_mcp_config=True)
    async with bridge_client(settings) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("agent_reviewer", {"prompt": "go"}))
            with anyio.fail_after(30):
                # the model request arrives after the CLI connected its MCP servers
                assert await anyio.to_thread.run_sync(real_cli.server.wait_for_turns, 1, 30)
            tg.cancel_scope.cancel()
        assert (await client.list_tools()).tools  # the bridge lives on
    [cli_pid] = real_cli.pids()
    mcp_pid = int(pidfile.read_text().split()[0])
    assert await wait_until_dead([cli_pid, mcp_pid]) == []


async def test_a_slow_forwarded_mcp_server_is_ready_for_the_first_turn(workspace, real_cli):
    slow = {"command": "sh",
            "args": ["-c", f'sleep 3; exec "{sys.executable}" "{DEMO_MCP_SERVER}"']}
    workspace.agent("helper", "tools: mcp__slow__echo\n")
    settings = bridge_settings(workspace, real_cli, strict_mcp_config=True,
                               mcp_configs=(json.dumps({"mcpServers": {"slow": slow}}),))
    result = await call(settings, real_cli, "agent_helper", prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert real_cli.server.turn_requests[0].tool_names == ["mcp__slow__echo"]


async def test_a_session_id_continues_the_conversation(workspace, real_cli):
    workspace.agent("reviewer", REVIEWER, body=REVIEWER_BODY)
    real_cli.server.add({"text": "The answer is FIRST-ANSWER-42."}, {"text": "Yes, 42."})
    settings = bridge_settings(workspace, real_cli)
    with anyio.fail_after(60):
        async with bridge_client(settings) as client:
            first = await client.call_tool("agent_reviewer", {"prompt": "FIRST-QUESTION?"})
            session = first.structured_content["session_id"]
            second = await client.call_tool("agent_reviewer",
                                            {"prompt": "FOLLOW-UP?", "session_id": session})
    assert not first.is_error and not second.is_error, second.content[0].text
    assert f"--resume={session}" in real_cli.last_argv()
    follow_up = real_cli.server.last
    assert "AGENT-BODY-SENTINEL" in follow_up.system_text
    # the resumed run sent the earlier exchange to the model, then the new prompt
    text = follow_up.message_text
    assert text.index("FIRST-QUESTION?") < text.index("FIRST-ANSWER-42") < text.index("FOLLOW-UP?")
    assert second.structured_content["session_id"] == session


async def test_an_agent_with_an_empty_tool_list_reaches_the_model_with_no_tools(
        workspace, real_cli):
    workspace.agent("thinker", "tools: []\n", body="Only think. EMPTY-TOOLS-SENTINEL")
    real_cli.server.add({"text": "Thought about it."})
    result = await call(bridge_settings(workspace, real_cli), real_cli, "agent_thinker",
                        prompt="Think")
    assert not result.is_error, result.content[0].text
    assert "EMPTY-TOOLS-SENTINEL" in real_cli.server.last.system_text
    assert real_cli.server.last.tool_names == []
