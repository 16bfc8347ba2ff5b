"""Slots admit at most N calls at once, queue up to Q more in order, and refuse the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from claude_mcp_bridge.slots import QueueFull, Slots

pytestmark = pytest.mark.anyio


class Calls:
    """Calls holding slots until released one by one, with what each saw."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.started: list[str] = []
        self.positions: dict[str, list[int]] = {}
        self.refused: dict[str, QueueFull] = {}
        self.cancelled: list[str] = []
        self._release: dict[str, anyio.Event] = {}
        self.done: dict[str, anyio.Event] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.running_now = 0
        self.most_at_once = 0

    def queued(self, name: str) -> Callable[[int], Awaitable[None]]:
        async def on_queued(position: int) -> None:
            self.positions.setdefault(name, []).append(position)
        return on_queued

    async def call(self, name: str, tool: str = "agent_a", limit: int | None = None) -> None:
        self._release[name] = anyio.Event()
        self.done[name] = anyio.Event()
        with anyio.CancelScope() as scope:
            self.scopes[name] = scope
            try:
                async with self.slots.slot(tool, limit, self.queued(name)):
                    self.started.append(name)
                    self.running_now += 1
                    self.most_at_once = max(self.most_at_once, self.running_now)
                    try:
                        await self._release[name].wait()
                    finally:
                        self.running_now -= 1
            except QueueFull as exc:
                self.refused[name] = exc
        if scope.cancelled_caught:
            self.cancelled.append(name)
        self.done[name].set()

    def release(self, name: str) -> None:
        self._release[name].set()


async def start(tg: anyio.abc.TaskGroup, calls: Calls, name: str, tool: str = "agent_a",
                limit: int | None = None) -> None:
    """Start one call and let it get as far as it can, so arrival order is start order."""
    tg.start_soon(calls.call, name, tool, limit)
    await anyio.wait_all_tasks_blocked()


async def release(calls: Calls, name: str) -> None:
    calls.release(name)
    await anyio.wait_all_tasks_blocked()


async def test_at_most_max_concurrency_calls_run_at_once_and_the_rest_wait() -> None:
    calls = Calls(Slots(max_concurrency=2, max_queue=10))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(6):
                await start(tg, calls, f"c{i}")
            assert calls.started == ["c0", "c1"]
            assert (calls.slots.running, calls.slots.waiting) == (2, 4)
            for i in range(6):
                await release(calls, f"c{i}")
    assert calls.most_at_once == 2
    assert len(calls.started) == 6
    assert (calls.slots.running, calls.slots.waiting) == (0, 0)


async def test_waiting_calls_start_in_the_order_they_arrived() -> None:
    calls = Calls(Slots(max_concurrency=1, max_queue=10))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name in ["first", "second", "third", "fourth"]:
                await start(tg, calls, name)
            for name in ["first", "second", "third", "fourth"]:
                assert calls.started[-1] == name
                await release(calls, name)
    assert calls.started == ["first", "second", "third", "fourth"]


async def test_a_waiting_call_is_told_its_position_each_time_the_queue_moves() -> None:
    calls = Calls(Slots(max_concurrency=1, max_queue=10))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(4):
                await start(tg, calls, f"c{i}")
            assert calls.positions == {"c1": [1], "c2": [2], "c3": [3]}
            for i in range(4):
                await release(calls, f"c{i}")
    assert "c0" not in calls.positions  # it never waited
    assert calls.positions == {"c1": [1], "c2": [2, 1], "c3": [3, 2, 1]}


async def test_a_call_beyond_max_queue_is_refused_at_once() -> None:
    calls = Calls(Slots(max_concurrency=1, max_queue=2))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name in ["running", "waits1", "waits2", "refused"]:
                await start(tg, calls, name)
            assert list(calls.refused) == ["refused"]
            assert (calls.slots.running, calls.slots.waiting) == (1, 2)
            for name in ["running", "waits1", "waits2"]:
                await release(calls, name)
    refusal = calls.refused["refused"]
    assert (refusal.running, refusal.waiting) == (1, 2)
    assert "1 calls running and 2 waiting (the queue is full)" in str(refusal)
    assert "max_queue" in str(refusal)
    assert "refused" not in calls.started and "refused" not in calls.positions


async def test_with_no_queue_a_free_slot_still_runs_and_a_busy_one_refuses() -> None:
    calls = Calls(Slots(max_concurrency=1, max_queue=0))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start(tg, calls, "runs")
            await start(tg, calls, "refused")
            assert calls.started == ["runs"]
            await release(calls, "runs")
            await start(tg, calls, "runs later")
            await release(calls, "runs later")
    assert list(calls.refused) == ["refused"]
    assert calls.started == ["runs", "runs later"]


async def test_a_tool_with_its_own_max_concurrency_waits_while_other_tools_run() -> None:
    calls = Calls(Slots(max_concurrency=4, max_queue=10))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start(tg, calls, "a1", "agent_a", 1)
            await start(tg, calls, "a2", "agent_a", 1)
            await start(tg, calls, "b1", "agent_b", None)
            await start(tg, calls, "b2", "agent_b", None)
            assert calls.started == ["a1", "b1", "b2"]
            await release(calls, "a1")
            assert calls.started[-1] == "a2"
            for name in ["a2", "b1", "b2"]:
                await release(calls, name)
    assert calls.positions == {"a2": [1]}


async def test_a_call_waiting_for_its_tool_counts_against_max_queue() -> None:
    calls = Calls(Slots(max_concurrency=4, max_queue=1))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start(tg, calls, "a1", "agent_a", 1)
            await start(tg, calls, "a2", "agent_a", 1)
            assert calls.slots.waiting == 1
            await start(tg, calls, "a3", "agent_a", 1)
            assert list(calls.refused) == ["a3"]
            await release(calls, "a1")
            await release(calls, "a2")
    assert calls.positions == {"a2": [1]}
    assert calls.started == ["a1", "a2"]


async def test_positions_count_calls_waiting_for_either_limit_in_arrival_order() -> None:
    calls = Calls(Slots(max_concurrency=2, max_queue=10))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start(tg, calls, "a1", "agent_a", 1)
            await start(tg, calls, "b1", "agent_b", None)
            await start(tg, calls, "a2", "agent_a", 1)  # waits for its tool
            await start(tg, calls, "b2", "agent_b", None)  # waits for the bridge
            assert calls.positions == {"a2": [1], "b2": [2]}
            calls.scopes["a2"].cancel()
            await calls.done["a2"].wait()
            await anyio.wait_all_tasks_blocked()
            assert calls.positions["b2"] == [2, 1]
            await release(calls, "b1")
            assert calls.started == ["a1", "b1", "b2"]
            await release(calls, "a1")
            await release(calls, "b2")
    assert calls.cancelled == ["a2"]


async def test_a_cancelled_waiter_leaves_the_queue_and_the_others_move_up() -> None:
    calls = Calls(Slots(max_concurrency=1, max_queue=3))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name in ["running", "w1", "w2", "w3"]:
                await start(tg, calls, name)
            calls.scopes["w2"].cancel()
            await calls.done["w2"].wait()
            await anyio.wait_all_tasks_blocked()
            assert calls.cancelled == ["w2"]
            assert (calls.slots.running, calls.slots.waiting) == (1, 2)
            assert calls.positions["w3"] == [3, 2]
            await start(tg, calls, "w4")  # the freed place in the queue can be taken
            assert not calls.refused
            for name in ["running", "w1", "w3", "w4"]:
                await release(calls, name)
    assert calls.started == ["running", "w1", "w3", "w4"]
    assert (calls.slots.running, calls.slots.waiting) == (0, 0)


async def test_a_call_cancelled_while_waiting_for_the_bridge_gives_back_its_tool_slot() -> None:
    calls = Calls(Slots(max_concurrency=1, max_queue=5))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await start(tg, calls, "b1", "agent_b", None)
            await start(tg, calls, "a1", "agent_a", 1)  # holds agent_a's slot, waits for one
            calls.scopes["a1"].cancel()
            await calls.done["a1"].wait()
            await release(calls, "b1")
            await start(tg, calls, "a2", "agent_a", 1)
            assert calls.started == ["b1", "a2"]
            await release(calls, "a2")
    assert calls.cancelled == ["a1"]
    assert "a2" not in calls.positions  # it started at once: a1 left nothing behind


async def test_a_failing_call_gives_its_slot_back() -> None:
    slots = Slots(max_concurrency=1, max_queue=0)

    async def noop(position: int) -> None:
        raise AssertionError("never queued")

    with pytest.raises(RuntimeError, match="boom"):
        async with slots.slot("agent_a", 1, noop):
            raise RuntimeError("boom")
    async with slots.slot("agent_a", 1, noop):
        assert slots.running == 1
    assert (slots.running, slots.waiting) == (0, 0)
