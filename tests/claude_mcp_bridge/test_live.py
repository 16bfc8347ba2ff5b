"""Live sessions (issue 22): a call's process stays alive for its follow-up, bounded by
count, memory and idle time, and ends on shutdown, reload and when it cannot serve."""

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge.server import create_server, open_bridge
from tests.support import pid_alive

pytestmark = pytest.mark.anyio

ONE_TURN = [{"init": {}}, {"result": {"result": "answered", "total_cost_usd": 0.25}}]


@asynccontextmanager
async def live_bridge(workspace, fake, warm=None, **sections) -> AsyncIterator:
    config = {"warm": {"live_sessions": 2, **(warm or {})}, "limits": {"kill_grace_s": 1},
              **sections}
    with open_bridge(workspace.settings(fake, config)) as bridge:
        async with bridge.warm.running(), Client(create_server(bridge)) as client:
            yield bridge, client


async def until(condition, within: float = 15) -> None:
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - foreign processes and the pool: no event
            await anyio.sleep(0.02)


def pids(fake) -> list[int]:
    return [record["pid"] for record in fake.records()]


async def ask(client, prompt: str, **arguments):
    result = await client.call_tool("agent_reviewer", {"prompt": prompt, **arguments})
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def test_a_finished_call_leaves_its_process_waiting_and_shutdown_ends_it(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude) as (bridge, client):
        first = await ask(client, "first")
        [pid] = pids(fake_claude)
        assert bridge.warm.live_sessions() == 1
        assert pid_alive(pid), "the process waits for a follow-up"
        assert first["cost_usd"] == 0.25
    assert not pid_alive(pid), "shutdown ends live processes"


async def test_sessions_beyond_the_count_end_the_least_recently_used(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude, {"live_sessions": 1}) as (bridge, client):
        await ask(client, "first")
        await ask(client, "second")
        older, newer = pids(fake_claude)
        await until(lambda: not pid_alive(older))
        assert pid_alive(newer) and bridge.warm.live_sessions() == 1


async def test_sessions_beyond_the_memory_limit_are_ended(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    # every process holds more than 1 MB: none may stay
    async with live_bridge(workspace, fake_claude, {"live_memory_mb": 1}) as (bridge, client):
        await ask(client, "first")
        [pid] = pids(fake_claude)
        await until(lambda: not pid_alive(pid))
        assert bridge.warm.live_sessions() == 0


async def test_an_idle_session_ends_after_its_tools_idle_time(workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.agent("writer")
    fake_claude.script(ONE_TURN)
    tools = {"reviewer": {"limits": {"live_idle_s": 0.3}}, "writer": {"limits": {"live_idle_s": 0}}}
    async with live_bridge(workspace, fake_claude, agents=tools) as (bridge, client):
        await ask(client, "soon idle")
        await client.call_tool("agent_writer", {"prompt": "never kept"})
        reviewer, writer = pids(fake_claude)
        await until(lambda: not pid_alive(writer))  # 0: ended with its call
        await until(lambda: not pid_alive(reviewer))  # 0.3 s idle: ended by the pool
        assert bridge.warm.live_sessions() == 0


async def test_a_changed_definition_ends_its_sessions_and_not_others(workspace, fake_claude):
    path = workspace.agent("reviewer")
    workspace.agent("writer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude) as (bridge, client):
        await ask(client, "first")
        await client.call_tool("agent_writer", {"prompt": "other"})
        reviewer, writer = pids(fake_claude)
        path.write_text(path.read_text().replace("You help.", "You review closely."))
        await bridge.reload()  # the published tool is the same; its prompt is not
        await until(lambda: not pid_alive(reviewer))
        assert pid_alive(writer) and bridge.warm.live_sessions() == 1


async def test_a_live_process_that_died_is_resumed_without_the_caller_noticing(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude) as (_, client):
        first = await ask(client, "first")
        [pid] = pids(fake_claude)
        os.kill(pid, signal.SIGKILL)
        await until(lambda: not pid_alive(pid))
        again = await ask(client, "again", session_id=first["session_id"])
    assert again["result"] == "answered"
    resumed = fake_claude.records()[1]
    assert f"--resume={first['session_id']}" in resumed["argv"]
    assert resumed["prompt"] == "again"


async def test_a_follow_up_on_another_command_line_resumes_and_ends_the_live_process(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude) as (bridge, client):
        first = await ask(client, "first")
        [pid] = pids(fake_claude)
        await ask(client, "with haiku", session_id=first["session_id"], model="haiku")
        await until(lambda: not pid_alive(pid))  # one process per session
        assert bridge.warm.live_sessions() == 1  # the resumed one is live now
    resumed = fake_claude.records()[1]
    assert "--model=haiku" in resumed["argv"]
    assert f"--resume={first['session_id']}" in resumed["argv"]


async def test_without_live_sessions_the_process_ends_with_its_call(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude, {"live_sessions": 0}) as (bridge, client):
        await ask(client, "first")
        [pid] = pids(fake_claude)
        await until(lambda: not pid_alive(pid))
        assert bridge.warm.live_sessions() == 0


async def test_under_a_per_call_cap_a_follow_up_after_spending_resumes(workspace, fake_claude):
    # The CLI holds --max-budget-usd over its whole process: a live follow-up would get
    # only what the first call left of it.
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude, budget={"per_call_usd": 1.0}) as (_, client):
        first = await ask(client, "first")
        [pid] = pids(fake_claude)
        await ask(client, "again", session_id=first["session_id"])
        await until(lambda: not pid_alive(pid))
    resumed = fake_claude.records()[1]
    assert f"--resume={first['session_id']}" in resumed["argv"]
    assert "--max-budget-usd=1" in resumed["argv"]
