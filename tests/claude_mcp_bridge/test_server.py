"""The MCP server through the SDK's own client, in memory, in both protocol eras."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server import Server

from claude_mcp_bridge.server import create_server, open_bridge
from claude_mcp_bridge.settings import ClaudeExecutable, Settings
from tests.support import pid_alive

pytestmark = pytest.mark.anyio


EVERY_EVENT = {"limits": {"progress_gap_s": 0}}
"""Each event narrated as it comes (by default a burst is narrated by its last message)."""


@pytest.fixture(params=["auto", "legacy"])
def mode(request):
    return request.param


@contextmanager
def serving(settings: Settings) -> Iterator[Server]:
    with open_bridge(settings) as bridge:
        yield create_server(bridge)


@contextmanager
def make_server(workspace, fake, config=None):
    with serving(workspace.settings(fake, config)) as server:
        yield server


async def test_tools_list_shows_every_agent_and_skill(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    workspace.skill("changelog")
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["agent_reviewer", "skill_changelog", "test_agent"]
    assert tools[0].input_schema["required"] == ["prompt"]
    assert tools[0].output_schema["properties"]["cost_usd"]


async def test_a_call_returns_the_answer_with_cost_and_session(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "Looks good."},
                        {"result": {"total_cost_usd": 0.42, "num_turns": 2}}])
    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    with make_server(workspace, fake_claude, EVERY_EVENT) as server:
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "review x"},
                                            progress_callback=on_progress)
    assert not result.is_error
    assert result.content[0].text == "Looks good."
    assert result.structured_content["cost_usd"] == 0.42
    assert result.structured_content["num_turns"] == 2
    assert result.structured_content["session_id"]
    assert progress[0] == "starting agent reviewer"
    assert "wrote 2 words" in progress
    assert fake_claude.last()["prompt"] == "review x"


async def test_the_structured_result_is_lean_and_token_counts_go_to_meta(workspace, fake_claude,
                                                                         mode):
    # Claude Code hands the calling model the structuredContent (issue 15): what it acts on,
    # not the token details
    workspace.agent("reviewer")
    usage = {"input_tokens": 1200, "output_tokens": 80, "cache_read_input_tokens": 9000}
    fake_claude.script([{"init": {}}, {"text": "Looks good."},
                        {"result": {"total_cost_usd": 0.42, "num_turns": 2, "usage": usage}}])
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "review x"})
    assert set(result.structured_content) == {
        "result", "is_error", "session_id", "cost_usd", "num_turns", "duration_ms",
        "permission_denials"}
    assert len(json.dumps(result.structured_content)) < 250
    assert result.meta is not None and result.meta["usage"] == usage


async def test_progress_names_the_tools_the_agent_runs(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"tool_use": {"name": "Grep", "input": {"pattern": "x"}}},
                        {"tool_result": {"content": "none"}}, {"text": "ok"}, {"result": {}}])
    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    with make_server(workspace, fake_claude, EVERY_EVENT) as server:
        async with Client(server) as client:
            await client.call_tool("agent_reviewer", {"prompt": "go"},
                                   progress_callback=on_progress)
    assert "running tool Grep" in progress
    assert "Grep done" in progress


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([{"init": {}}, {"result": {"is_error": True, "subtype": "error_max_turns", "result": None,
                                    "errors": ["Reached maximum number of turns (2)"]}}],
         "Reached maximum number of turns (2) (the agent reached its turn limit"),
        ([{"init": {}}, {"result": {"is_error": True, "subtype": "success",
                                    "result": "Not logged in · Please run /login"}}],
         "Not logged in"),
        ([{"init": {}}, {"stderr": "fatal: disk on fire"}, {"exit": 3}],
         "exit code 3) without a result; stderr: fatal: disk on fire"),
        ([{"raw": "Segfault in module x"}, {"crash": "SIGSEGV"}], "killed by SIGSEGV"),
    ],
)
async def test_a_failed_run_is_a_tool_error_a_person_can_act_on(workspace, fake_claude, mode,
                                                                script, expected):
    workspace.agent("reviewer")
    fake_claude.script(script)
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert result.is_error
    assert result.content[0].text.startswith("agent_reviewer: ")
    assert expected in result.content[0].text


async def test_the_budget_limit_of_the_cli_is_reported(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "spent"}, {"result": {"total_cost_usd": 2.0}}])
    with make_server(workspace, fake_claude) as server:
        async with Client(server) as client:
            result = await client.call_tool("agent_reviewer",
                                            {"prompt": "go", "max_budget_usd": 0.5})
    assert result.is_error
    assert "budget" in result.content[0].text
    assert "--max-budget-usd=0.5" in fake_claude.last()["argv"]


async def test_an_unknown_tool_is_a_protocol_error(workspace, fake_claude, mode):
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            with pytest.raises(MCPError, match="unknown tool 'agent_nope'"):
                await client.call_tool("agent_nope", {"prompt": "go"})


async def test_hostile_arguments_never_start_a_child(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("agent_reviewer",
                                            {"prompt": "go",
                                             "model": "--dangerously-skip-permissions"})
    assert result.is_error
    assert "invalid arguments: model" in result.content[0].text
    assert fake_claude.records() == []


async def test_a_missing_claude_says_what_to_set(workspace, fake_claude):
    workspace.agent("reviewer")
    settings = replace(workspace.settings(fake_claude),
                       claude=ClaudeExecutable(None, "not on PATH"))
    with serving(settings) as server:
        async with Client(server) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert result.is_error
    text = result.content[0].text
    assert "set CLAUDE_MCP_BRIDGE_CLAUDE_BIN to its absolute path" in text
    # the client started the server: say that its environment is not the shell's, and how
    assert "MCP clients do not pass your shell's environment" in text
    assert '"env": {"CLAUDE_MCP_BRIDGE_CLAUDE_BIN": ' in text
    assert "claude mcp add -e CLAUDE_MCP_BRIDGE_CLAUDE_BIN=" in text
    assert "`-e CLAUDE_MCP_BRIDGE_CLAUDE_BIN=...` for the MCP Inspector" in text


async def test_not_logged_in_says_the_client_does_not_pass_the_shells_environment(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"result": {"is_error": True, "subtype": "success",
                                                  "result": "Not logged in · Please run /login"}}])
    with make_server(workspace, fake_claude) as server:
        async with Client(server) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert result.is_error
    text = result.content[0].text
    assert text.startswith("agent_reviewer: Not logged in · Please run /login (run `claude`")
    assert "MCP clients do not pass your shell's environment" in text
    assert '"env": {"ANTHROPIC_API_KEY": ' in text
    assert "claude mcp add -e ANTHROPIC_API_KEY=" in text
    assert "`-e ANTHROPIC_API_KEY=...` for the MCP Inspector" in text


async def test_a_timeout_is_a_tool_error_and_kills_the_child(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"hang": True}])
    with make_server(workspace, fake_claude, {"limits": {"timeout_s": 1}}) as server:
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert result.is_error and "timed out after 1s" in result.content[0].text
    assert not any(pid_alive(p) for p in fake_claude.spawned_pids())


async def test_a_client_that_cancels_kills_the_child(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("agent_reviewer", {"prompt": "go"},
                                                       progress_callback=on_progress))
                with anyio.fail_after(10):
                    await busy.wait()
                tg.cancel_scope.cancel()
            # the server answers further requests after a cancelled call
            assert (await client.list_tools()).tools
            with anyio.fail_after(10):
                pids = [r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids()
                while any(pid_alive(p) for p in pids):  # noqa: ASYNC110 - other processes
                    await anyio.sleep(0.05)


async def test_a_session_id_resumes_that_session(workspace, fake_claude):
    workspace.agent("reviewer")
    with make_server(workspace, fake_claude) as server:
        async with Client(server) as client:
            first = await client.call_tool("agent_reviewer", {"prompt": "hello"})
            session = first.structured_content["session_id"]
            result = await client.call_tool("agent_reviewer",
                                            {"prompt": "more?", "session_id": session})
    assert result.structured_content["session_id"] == session
    assert f"--resume={session}" in fake_claude.last()["argv"]
