"""Progress to a client, at most one notification per ``[limits] progress_gap_s``: of a
burst the last message goes out once the gap has passed, and one still waiting when the call
ends is dropped (its answer says more)."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge.bridge import open_bridge
from claude_mcp_bridge.progress import Progress
from claude_mcp_bridge.server import create_server

pytestmark = pytest.mark.anyio

GAP_S = 1.0  # wide, so that a slow machine cannot space a burst's messages that far apart


class Sent:
    """What reached the client, and a way to wait for the n-th message."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._arrived = anyio.Event()

    async def say(self, message: str) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def count(self, n: int) -> list[str]:
        with anyio.fail_after(30):
            while len(self.messages) < n:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        return self.messages


async def test_a_burst_is_narrated_by_its_first_and_then_its_last_message():
    sent = Sent()
    progress = Progress(sent.say, GAP_S)
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.heartbeat, 3600.0, 0.0)
        for message in ("starting", "started", "wrote 2 words", "finished"):
            await progress.say(message)
        assert await sent.count(2) == ["starting", "finished"]
        tg.cancel_scope.cancel()


async def test_a_message_still_waiting_when_the_call_ends_is_dropped():
    sent = Sent()
    progress = Progress(sent.say, GAP_S)
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.heartbeat, 3600.0, 0.0)
        await progress.say("starting")
        await progress.say("finished")
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()  # the call ended: its answer goes out instead
    assert sent.messages == ["starting"]


async def test_without_a_gap_every_message_goes_out_at_once():
    sent = Sent()
    progress = Progress(sent.say)
    for message in ("starting", "started", "finished"):
        await progress.say(message)
    assert sent.messages == ["starting", "started", "finished"]


async def test_the_heartbeat_still_beats_and_says_the_last_activity():
    sent = Sent()
    progress = Progress(sent.say, 0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.heartbeat, 0.2, 0.0)
        await progress.say("running tool Bash")
        messages = await sent.count(2)
        tg.cancel_scope.cancel()
    assert messages[0] == "running tool Bash"
    assert messages[1].startswith("still working") and messages[1].endswith("running tool Bash")


async def test_by_default_a_client_gets_fewer_notifications_than_a_fast_child_has_events(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "Looks good."}, {"result": {}}])
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    with open_bridge(workspace.settings(fake_claude)) as bridge:
        async with Client(create_server(bridge)) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"},
                                            progress_callback=on_progress)
    assert not result.is_error and result.content[0].text == "Looks good."
    assert progress[0] == "starting agent reviewer"
    # 4 with progress_gap_s = 0 (starting, started, wrote, finished): the last three come
    # from the child at once, so one of them at most goes out before the answer
    assert len(progress) <= 2 and not any(m.startswith("finished") for m in progress)


async def test_queue_positions_go_out_at_once_while_no_heartbeat_runs():
    sent = Sent()
    progress = Progress(sent.say, GAP_S)
    await progress.queued(2)
    await progress.queued(1)  # waiting for a slot: the heartbeat starts only with the run
    assert sent.messages == ["queued, position 2", "queued, position 1"]
