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


# every process holds more than 1 MB, so the memory limit lets none stay
@pytest.mark.parametrize("warm", [{"live_memory_mb": 1}, {"live_sessions": 0}],
                         ids=["beyond-the-memory-limit", "live-sessions-off"])
async def test_a_process_that_may_not_stay_ends_after_its_call(workspace, fake_claude, warm):
    workspace.agent("reviewer")
    fake_claude.script(ONE_TURN)
    async with live_bridge(workspace, fake_claude, warm) as (bridge, client):
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


TWO_TURNS = {
    "first": [{"init": {}}, {"text": "noted"}, {"result": {}, "turn_cost_usd": 0.25}],
    "again": [{"init": {}}, {"text": "teal"}, {"result": {}, "turn_cost_usd": 0.1}],
}


async def test_a_follow_up_goes_to_the_live_process_keeps_the_context_and_pays_its_turn(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(TWO_TURNS)
    messages: list[str] = []

    async def on_progress(done, total, message):
        messages.append(message)

    async with live_bridge(workspace, fake_claude) as (bridge, client):
        first = await ask(client, "first")
        again = await client.call_tool(
            "agent_reviewer", {"prompt": "again", "session_id": first["session_id"]},
            progress_callback=on_progress)
        assert not again.is_error, again.content[0].text
        assert bridge.warm.live_hits == 1 and bridge.warm.live_sessions() == 1
        rows = bridge.ledger.rows("SELECT cost_usd, outcome FROM calls ORDER BY rowid")
    [record] = fake_claude.records()  # one process served both calls
    assert record["prompts"] == ["first", "again"], "the follow-up reached the same session"
    assert again.structured_content["session_id"] == first["session_id"]
    assert again.content[0].text == "teal"
    assert "starting agent reviewer (live)" in messages
    # the CLI reports 0.35 for the process after the second turn: the call pays its 0.10
    assert (first["cost_usd"], again.structured_content["cost_usd"]) == (0.25, 0.1)
    assert [(r["cost_usd"], r["outcome"]) for r in rows] == [(0.25, "ok"), (0.1, "ok")]


async def test_a_cancelled_live_follow_up_ends_the_process_and_is_charged(workspace,
                                                                          fake_claude):
    workspace.agent("reviewer")
    # a first turn that cost nothing leaves the whole per-call cap to the live follow-up
    fake_claude.script({"first": [{"init": {}}, {"result": {}, "turn_cost_usd": 0}],
                        "stuck": [{"init": {}}, {"text": "thinking"}, {"hang": True}]})
    budget = {"daily_usd": 5.0, "per_call_usd": 0.4}
    async with live_bridge(workspace, fake_claude, budget=budget) as (bridge, client):
        first = await ask(client, "first")
        [pid] = pids(fake_claude)
        thinking = anyio.Event()

        async def on_progress(done, total, message):
            if "wrote" in (message or ""):
                thinking.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool(
                "agent_reviewer", {"prompt": "stuck", "session_id": first["session_id"]},
                progress_callback=on_progress))
            await thinking.wait()
            tg.cancel_scope.cancel()
        await until(lambda: not pid_alive(pid))
        await until(lambda: bridge.ledger.rows(
            "SELECT outcome FROM calls ORDER BY rowid")[-1]["outcome"] != "running")
        rows = bridge.ledger.rows("SELECT outcome, cost_usd FROM calls ORDER BY rowid")
        assert bridge.warm.live_sessions() == 0
    assert [row["outcome"] for row in rows] == ["ok", "cancelled"]
    assert rows[1]["cost_usd"] == 0.4, "stopped before its result: charged its cap"


async def test_a_live_follow_up_times_out_like_any_call(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script({"first": TWO_TURNS["first"],
                        "stuck": [{"init": {}}, {"text": "thinking"}, {"hang": True}]})
    tools = {"reviewer": {"limits": {"timeout_s": 1}}}
    async with live_bridge(workspace, fake_claude, agents=tools) as (bridge, client):
        first = await ask(client, "first")
        [pid] = pids(fake_claude)
        late = await client.call_tool(
            "agent_reviewer", {"prompt": "stuck", "session_id": first["session_id"]})
        assert late.is_error and "timed out" in late.content[0].text
        await until(lambda: not pid_alive(pid))
        assert bridge.warm.live_sessions() == 0


@pytest.mark.parametrize(("version", "charged"), [("2.1.332", 0.1), ("2.1.197", 0.35)])
async def test_a_resumed_call_pays_its_share_when_the_cli_sums_the_session(
        workspace, fake_claude, version, charged):
    # 2.1.332 reports a resumed process's total over the whole session; 2.1.197 over the
    # process alone. Here both print 0.35 after a first call of 0.25: only the newer one
    # means 0.25 of it was paid before.
    workspace.agent("reviewer")
    workspace.extra_env["FAKE_CLAUDE_VERSION"] = version
    fake_claude.script({"first": TWO_TURNS["first"],
                        "again": [{"init": {}}, {"result": {"total_cost_usd": 0.35}}]})
    async with live_bridge(workspace, fake_claude, {"live_sessions": 0}) as (_, client):
        first = await ask(client, "first")
        again = await ask(client, "again", session_id=first["session_id"])
    assert (first["cost_usd"], again["cost_usd"]) == (0.25, charged)


async def test_a_warm_process_becomes_a_live_session_after_its_call(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(TWO_TURNS)
    async with live_bridge(workspace, fake_claude, {"size": 1}) as (bridge, client):
        await ask(client, "first")  # cold; a warm process starts behind it
        await until(lambda: bridge.warm.waiting() == 1)
        warm = await ask(client, "first")  # a new session, served by the warm process
        assert bridge.warm.hits == 1 and bridge.warm.live_sessions() == 2
        again = await ask(client, "again", session_id=warm["session_id"])
        assert bridge.warm.live_hits == 1
    assert again["cost_usd"] == 0.1
    served = [r for r in fake_claude.records() if r["prompts"] == ["first", "again"]]
    assert len(served) == 1, "the warm process answered both of its session's questions"
