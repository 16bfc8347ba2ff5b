"""Live sessions with the real CLI (issue 22): a follow-up written to the process that
answered the first question keeps the session and its context, pays its own turn, can be
cancelled; limits and shutdown end the processes; a crashed one falls back to resume."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge.server import create_server, open_bridge
from tests.real_cli.support import bridge_settings
from tests.support import pid_alive

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

SMALL = {"usage": {"input_tokens": 1000, "output_tokens": 100}}
LARGE = {"usage": {"input_tokens": 3000, "output_tokens": 300}}


@asynccontextmanager
async def live(workspace, real_cli, sessions: int = 2) -> AsyncIterator:
    settings = bridge_settings(workspace, real_cli, {"warm": {"live_sessions": sessions},
                                                     "limits": {"kill_grace_s": 2}})
    with open_bridge(settings) as bridge, anyio.fail_after(120):
        async with bridge.warm.running(), Client(create_server(bridge)) as client:
            yield bridge, client


async def until(condition, within: float = 30) -> None:
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - foreign processes: nothing to wait on
            await anyio.sleep(0.05)


async def ask(client, prompt: str, on_progress=None, **arguments):
    result = await client.call_tool("agent_reviewer", {"prompt": prompt, **arguments},
                                    progress_callback=on_progress)
    assert not result.is_error, result.content[0].text
    return result


async def test_a_follow_up_in_the_live_process_keeps_the_context_and_pays_its_turn(
        workspace, real_cli):
    workspace.agent("reviewer", "tools: Read\n")
    real_cli.server.add({"text": "answer one", **SMALL}, {"text": "answer two", **LARGE})
    async with live(workspace, real_cli) as (bridge, client):
        first = await ask(client, "first question")
        second = await ask(client, "second question", real_cli.on_progress,
                           session_id=first.structured_content["session_id"])
        assert bridge.warm.live_hits == 1
    assert len(real_cli.pids()) == 1, "one CLI process answered both questions"
    assert second.content[0].text == "answer two"
    assert second.structured_content["session_id"] == first.structured_content["session_id"]
    assert "starting agent reviewer (live)" in real_cli.progress
    request = real_cli.server.last
    assert "first question" in request.message_text and "answer one" in request.message_text
    # three times the tokens: three times the cost, although the CLI reports the sum
    one, two = first.structured_content["cost_usd"], second.structured_content["cost_usd"]
    assert one > 0 and two == pytest.approx(3 * one, rel=1e-6)


async def test_a_live_follow_up_can_be_cancelled_and_its_process_ends(workspace, real_cli):
    workspace.agent("reviewer", "tools: Read\n")
    real_cli.server.add({"text": "answer one"}, {"hold": "second"})
    async with live(workspace, real_cli) as (bridge, client):
        first = await ask(client, "first question")
        [pid] = real_cli.pids()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("agent_reviewer", {
                    "prompt": "second question",
                    "session_id": first.structured_content["session_id"]}))
                await until(lambda: len(real_cli.server.turn_requests) == 2)
                tg.cancel_scope.cancel()
            await until(lambda: not pid_alive(pid))
        finally:
            real_cli.server.release("second")
        await until(lambda: bridge.ledger.rows(
            "SELECT outcome FROM calls ORDER BY rowid")[-1]["outcome"] != "running")
        outcomes = [row["outcome"] for row in bridge.ledger.rows(
            "SELECT outcome FROM calls ORDER BY rowid")]
        assert outcomes == ["ok", "cancelled"] and bridge.warm.live_sessions() == 0


async def test_a_crashed_live_process_is_resumed_with_its_context(workspace, real_cli):
    workspace.agent("reviewer", "tools: Read\n")
    real_cli.server.add({"text": "answer one"}, {"text": "answer two"})
    async with live(workspace, real_cli) as (_, client):
        first = await ask(client, "first question")
        [pid] = real_cli.pids()
        # the CLI writes its transcript after the answer: a crash before that loses the
        # session for any resume, and that is not what this test is about
        session = first.structured_content["session_id"]
        await until(lambda: any("answer one" in path.read_text(errors="replace")
                                for path in workspace.home.rglob(f"{session}.jsonl")))
        os.kill(pid, signal.SIGKILL)
        await until(lambda: not pid_alive(pid))
        second = await ask(client, "second question",
                           session_id=first.structured_content["session_id"])
    assert second.content[0].text == "answer two"
    assert len(real_cli.pids()) == 2
    resumed = real_cli.last_argv()
    assert f"--resume={first.structured_content['session_id']}" in resumed
    assert "first question" in real_cli.server.last.message_text  # the transcript was loaded


async def test_the_session_limit_and_shutdown_end_the_live_processes(workspace, real_cli):
    workspace.agent("reviewer", "tools: Read\n")
    real_cli.server.add({"text": "one"}, {"text": "two"})
    async with live(workspace, real_cli, sessions=1) as (bridge, client):
        await ask(client, "first question")
        await ask(client, "another question")
        started = sorted(real_cli.argv_dir.glob("*.argv"), key=lambda p: p.stat().st_mtime_ns)
        older, newer = (int(path.stem) for path in started)
        await until(lambda: not pid_alive(older))  # the least recently used made room
        assert pid_alive(newer) and bridge.warm.live_sessions() == 1
    await until(lambda: not pid_alive(newer))


async def test_a_live_follow_up_times_out_like_any_call(workspace, real_cli):
    workspace.agent("reviewer", "tools: Read\n")
    real_cli.server.add({"text": "answer one"}, {"hold": "never"})
    settings = bridge_settings(workspace, real_cli, {
        "warm": {"live_sessions": 2}, "limits": {"kill_grace_s": 2},
        "agents": {"reviewer": {"limits": {"timeout_s": 10}}}})
    try:
        with open_bridge(settings) as bridge, anyio.fail_after(120):
            async with bridge.warm.running(), Client(create_server(bridge)) as client:
                first = await ask(client, "first question")
                [pid] = real_cli.pids()
                late = await client.call_tool("agent_reviewer", {
                    "prompt": "second question",
                    "session_id": first.structured_content["session_id"]})
                assert late.is_error and "timed out" in late.content[0].text
                await until(lambda: not pid_alive(pid))
                assert bridge.warm.live_sessions() == 0
    finally:
        real_cli.server.release("never")


async def test_a_changed_agent_file_ends_its_live_session(workspace, real_cli):
    path = workspace.agent("reviewer", "tools: Read\n")
    real_cli.server.add({"text": "answer one"})
    async with live(workspace, real_cli) as (bridge, client):
        await ask(client, "first question")
        [pid] = real_cli.pids()
        path.write_text(path.read_text().replace("You help.", "You review closely."))
        await bridge.reload()
        await until(lambda: not pid_alive(pid))
        assert bridge.warm.live_sessions() == 0
