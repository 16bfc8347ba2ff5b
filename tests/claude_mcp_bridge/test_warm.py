"""Warm starts: a process started ahead of time serves the next call of its command line."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge.server import create_server, open_bridge
from claude_mcp_bridge.warm import INPUT_FLAGS
from tests.support import pid_alive

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def warm_bridge(workspace, fake, warm) -> AsyncIterator:
    config = {"warm": warm, "limits": {"kill_grace_s": 1}}
    with open_bridge(workspace.settings(fake, config)) as bridge:
        async with bridge.warm.running(), Client(create_server(bridge)) as client:
            yield bridge, client


def waiting_pids(bridge) -> list[int]:
    return [w.process.pid for items in bridge.warm._waiting.values() for w in items]


async def until(condition, within: float = 10) -> None:
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - processes and pools, not events
            await anyio.sleep(0.02)


async def test_the_second_call_is_served_by_a_process_started_ahead(workspace, fake_claude):
    workspace.agent("reviewer", "tools: Read\n")
    fake_claude.script([{"init": {}}, {"result": {"result": "reviewed"}}])
    messages: list[str] = []

    async def on_progress(done, total, message):
        messages.append(message)

    async with warm_bridge(workspace, fake_claude, {"size": 1}) as (bridge, client):
        cold = await client.call_tool("agent_reviewer", {"prompt": "first"})
        await until(lambda: bridge.warm.waiting() == 1)
        warm = await client.call_tool("agent_reviewer", {"prompt": "second\nline"},
                                      progress_callback=on_progress)
        await until(lambda: bridge.warm.waiting() == 1)  # a replacement is waiting again
        assert (bridge.warm.hits, bridge.warm.misses) == (1, 1)
    assert cold.content[0].text == warm.content[0].text == "reviewed"
    assert "starting agent reviewer (warm)" in messages
    first, second = fake_claude.records()[:2]
    assert first["prompt"] == "first"
    assert second["argv"] == first["argv"], "same policy, same flags (both speak stream-json)"
    assert set(INPUT_FLAGS) <= set(second["argv"])
    assert second["prompt"] == "second\nline"


async def test_another_command_line_is_not_served_by_a_warm_process(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"result": {"result": "ok"}}])
    async with warm_bridge(workspace, fake_claude, {"size": 1}) as (bridge, client):
        await client.call_tool("agent_reviewer", {"prompt": "first"})
        await until(lambda: bridge.warm.waiting() == 1)
        await client.call_tool("agent_reviewer", {"prompt": "other", "model": "haiku"})
        assert bridge.warm.hits == 0
    assert "--model=haiku" in fake_claude.records()[1]["argv"]
    assert fake_claude.records()[1]["prompt"] == "other"


async def test_an_idle_warm_process_expires_and_shutdown_ends_the_rest(workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.agent("writer")
    fake_claude.script([{"init": {}}, {"result": {"result": "ok"}}])
    async with warm_bridge(workspace, fake_claude, {"size": 1, "idle_s": 0.5}) as (bridge,
                                                                                   client), \
            anyio.create_task_group() as tg:
        # The warm process starts with the first call and may go idle for 0.5 s before the
        # call returns (a slow start of the cold one): it is seen from a task in the pool's
        # own loop, whose 10 ms timer always runs before the pool's expiry check is due.
        seen: list[int] = []

        async def watch() -> None:
            while True:
                seen.extend(pid for pid in waiting_pids(bridge) if pid not in seen)
                await anyio.sleep(0.01)

        tg.start_soon(watch)
        await client.call_tool("agent_reviewer", {"prompt": "go"})
        await until(lambda: seen)
        [expiring] = seen
        await until(lambda: not pid_alive(expiring))
        assert bridge.warm.waiting() == 0
        bridge.warm.idle_s = 60
        await client.call_tool("agent_writer", {"prompt": "go"})
        await until(lambda: bridge.warm.waiting() == 1)
        [left] = waiting_pids(bridge)
        tg.cancel_scope.cancel()
    assert not pid_alive(left), "shutdown ends waiting processes"


async def test_without_a_size_nothing_is_started_ahead(workspace, fake_claude):
    workspace.agent("reviewer")
    async with warm_bridge(workspace, fake_claude, {"size": 0}) as (bridge, client):
        await client.call_tool("agent_reviewer", {"prompt": "go"})
        await anyio.sleep(0.2)
        assert bridge.warm.waiting() == 0
    assert len(fake_claude.records()) == 1
