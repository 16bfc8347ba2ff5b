"""Every way a call can be stopped charges it right (issue 13, contracts 3, 6 and 7).

One test per stop path, each against a real HTTP bridge: the call's processes all end
(a grandchild that left the group with ``setsid`` and ignores SIGTERM included), the call
has exactly one settled ledger row, a call whose cost is unknown is charged its cap, one
whose child reported a cost is charged that, and the client gets an answer or a clear
error. (Recovery after ``kill -9`` is ``test_kill9.py``.)
"""

from __future__ import annotations

import signal
from typing import Any

import anyio
import mcp_types as types
from mcp import Client

from tests.faults.harness import (
    BridgeProcess,
    assert_all_end,
    assert_all_end_async,
    assert_ledger_sound,
    assert_no_traceback,
    call_pids,
    call_request,
    config_text,
    ledger_rows,
    readme_drain_outcome,
    start_client,
    start_http,
    start_stdio,
    wait_for_async,
    wait_spawned,
)

CAP = 0.5
DAILY = 5.0
REPORTED = 0.3


def config(**limits: Any) -> str:
    http = {"drain_timeout_s": limits.pop("drain_timeout_s", 30)}
    return config_text(
        budget={"daily_usd": DAILY, "per_call_usd": CAP},
        limits={"kill_grace_s": 1, "result_grace_s": 120, **limits},
        http=http, ledger={"store_prompts": True}, reload={"enabled": False},
        # a child that gave its result and runs on is a call in flight, not a live session
        warm={"live_sessions": 0})


def busy(*, reported: float | None = None, stubborn: bool = False,
         setsid: bool = False) -> list[dict]:
    """A call that leaks a sleeper in its group (and with ``setsid`` one that left it and
    ignores SIGTERM), then works forever (``stubborn``: ignoring SIGTERM); with
    ``reported``, it gives its result (and so its cost) first and then does not exit.

    Only the cancel test spawns the setsid grandchild (contract 7): elsewhere it would hide
    what the test is about behind the same failure."""
    steps: list[dict] = [{"init": {}}, {"spawn": "sleeper"}]
    if setsid:
        steps.append({"spawn": "setsid_sleeper"})
    steps.append({"text": "busy"})
    if reported is not None:
        steps.append({"result": {"result": "done", "total_cost_usd": reported}})
    steps.append({"hang": "ignore_term" if stubborn else True})
    return steps


class InFlight:
    """One ``agent_reviewer`` call from an in-process SDK client, in a task group; events
    for its progress ("wrote ..." and "finished ...")."""

    def __init__(self) -> None:
        self.wrote = anyio.Event()
        self.finished = anyio.Event()
        self.results: list[types.CallToolResult] = []

    async def on_progress(self, done: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("wrote"):
            self.wrote.set()
        if message and message.startswith("finished"):
            self.finished.set()

    async def call(self, client: Client, arguments: dict[str, Any]) -> None:
        self.results.append(await client.call_tool("agent_reviewer", arguments,
                                                   progress_callback=self.on_progress))


def serve(workspace, fake_claude, data_dir, bridges, script, **limits: Any) -> BridgeProcess:
    workspace.agent("reviewer")
    fake_claude.script(script)
    bridge = start_http(workspace, fake_claude, data_dir, config=config(**limits))
    bridges.append(bridge)
    return bridge


def stop_cleanly(bridge: BridgeProcess) -> None:
    bridge.signal(signal.SIGTERM)
    assert bridge.wait(timeout=20) == 0
    assert_no_traceback(bridge.stderr())


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error, result
    text = result.content[0].text
    assert text.strip(), "an error with no message"
    return text


async def test_a_cancelled_call_ends_its_setsid_grandchild_and_is_charged_its_cap(
        workspace, fake_claude, data_dir, bridges):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy(stubborn=True, setsid=True))
    call = InFlight()
    with anyio.fail_after(60):
        async with Client(bridge.url + "/mcp", mode="legacy") as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call.call, client, {"prompt": "go", "max_budget_usd": 0.4})
                await call.wrote.wait()
                pids = wait_spawned(fake_claude, calls=1, per_call=2)
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
            await assert_all_end_async(pids, why="after the client cancelled the call")
            assert (await client.list_tools()).tools  # the session lives on
    stop_cleanly(bridge)
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == "cancelled"
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: 0.4})


async def test_a_cancelled_call_that_reported_its_cost_is_charged_that_cost(
        workspace, fake_claude, data_dir, bridges):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy(reported=REPORTED))
    call = InFlight()
    with anyio.fail_after(60):
        async with Client(bridge.url + "/mcp", mode="legacy") as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call.call, client, {"prompt": "go"})
                await call.finished.wait()  # the result, with its cost, was read
                pids = wait_spawned(fake_claude, calls=1, per_call=1)
                tg.cancel_scope.cancel()
            await assert_all_end_async(pids, why="after the client cancelled the call")
    stop_cleanly(bridge)
    [row] = ledger_rows(data_dir)
    assert_ledger_sound([row], calls=1, reported=[REPORTED], budget_usd=DAILY,
                        caps={row["id"]: REPORTED})


async def test_a_client_that_disconnects_gets_its_call_ended_and_charged_its_cap(
        workspace, fake_claude, data_dir, bridges, clients):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy())
    client = start_client(bridge.url, ["go"])
    clients.append(client)
    client.read_until("wrote")
    pids = wait_spawned(fake_claude, calls=1, per_call=1)
    client.close()  # SIGKILL: no cancel notification, the connection just drops
    assert_all_end(pids, why="after the client's connection dropped")
    stop_cleanly(bridge)
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == "cancelled"
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: CAP})


async def test_a_call_that_outlives_the_drain_is_stopped_recorded_as_the_readme_says_and_charged(
        workspace, fake_claude, data_dir, bridges):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy(stubborn=True),
                   drain_timeout_s=0.5)
    call = InFlight()
    with anyio.fail_after(60):
        async with Client(bridge.url + "/mcp", mode="legacy") as client, \
                anyio.create_task_group() as tg:
            tg.start_soon(call.call, client, {"prompt": "go"})
            await call.wrote.wait()
            pids = wait_spawned(fake_claude, calls=1, per_call=1)
            bridge.signal(signal.SIGTERM)
    assert "shutting down" in error_text(call.results[0])
    assert bridge.wait(timeout=20) == 0
    assert_all_end(pids, why="after the drain stopped the call")
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == readme_drain_outcome()
    assert "shutting down" in row["error"]
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: CAP})
    assert_no_traceback(bridge.stderr())


async def test_a_second_signal_shuts_down_at_once_and_charges_the_stopped_call(
        workspace, fake_claude, data_dir, bridges):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy(stubborn=True),
                   drain_timeout_s=600)
    call = InFlight()
    with anyio.fail_after(60):
        async with Client(bridge.url + "/mcp", mode="legacy") as client, \
                anyio.create_task_group() as tg:
            tg.start_soon(call.call, client, {"prompt": "go"})
            await call.wrote.wait()
            pids = wait_spawned(fake_claude, calls=1, per_call=1)
            bridge.signal(signal.SIGTERM)
            await wait_for_async("the drain to begin", lambda: "shutting down" in bridge.stderr())
            bridge.signal(signal.SIGTERM)
    assert "shutting down" in error_text(call.results[0])
    assert bridge.wait(timeout=20) == 0
    assert_all_end(pids, why="after the second signal")
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == readme_drain_outcome()
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: CAP})
    assert_no_traceback(bridge.stderr())


async def test_a_call_past_its_timeout_is_ended_and_charged_its_cap(
        workspace, fake_claude, data_dir, bridges):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy(stubborn=True), timeout_s=2)
    with anyio.fail_after(60):
        async with Client(bridge.url + "/mcp", mode="legacy") as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert "time" in error_text(result).lower()
    assert_all_end(call_pids(fake_claude), why="after the call timed out")
    stop_cleanly(bridge)
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == "timeout"
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: CAP})


async def test_a_stalled_call_is_ended_and_charged_its_cap(
        workspace, fake_claude, data_dir, bridges):
    bridge = serve(workspace, fake_claude, data_dir, bridges, busy(stubborn=True), stall_s=2)
    with anyio.fail_after(60):
        async with Client(bridge.url + "/mcp", mode="legacy") as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert "stall" in error_text(result).lower()
    assert_all_end(call_pids(fake_claude), why="after the call stalled")
    stop_cleanly(bridge)
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == "error"  # the README: "ended with a 'stalled' error"
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: CAP})


def test_a_stdio_client_that_goes_away_ends_the_calls_and_they_are_charged_their_cap(
        workspace, fake_claude, data_dir, bridges):
    # stdin closing is the stdio client going away: the bridge stops its calls at once and
    # exits; there is nobody left to answer.
    workspace.agent("reviewer")
    fake_claude.script(busy(stubborn=True, setsid=True))
    bridge = start_stdio(workspace, fake_claude, data_dir, config=config())
    bridges.append(bridge)
    bridge.send(call_request(1, "agent_reviewer", {"prompt": "go"}))
    pids = wait_spawned(fake_claude, calls=1, per_call=2)
    assert bridge.proc.stdin is not None
    bridge.proc.stdin.close()
    assert bridge.wait(timeout=20) == 0
    assert_all_end(pids, why="after the stdio client went away")
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == readme_drain_outcome()
    assert_ledger_sound([row], calls=1, budget_usd=DAILY, caps={row["id"]: CAP})
    assert_no_traceback(bridge.stderr())
