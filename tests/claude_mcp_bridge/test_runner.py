"""The runner owns its child: events stream out, and no process outlives a run."""

import os
import subprocess
import sys
from pathlib import Path

import anyio
import psutil
import pytest

from claude_mcp_bridge.events import InitEvent, ResultEvent, TextEvent
from claude_mcp_bridge.processes import MARK, Identity, marked, marked_env
from claude_mcp_bridge.runner import Command, Limits, run
from tests.support import pid_alive

pytestmark = pytest.mark.anyio

LIMITS = Limits(timeout_s=30, kill_grace_s=2, result_grace_s=1)


def command(fake, prompt="hello", **env):
    return Command(argv=(str(fake.path), "-p", "--output-format", "stream-json", "--verbose"),
                   env={"PATH": os.environ["PATH"], **fake.env, **env}, cwd=Path.cwd(),
                   stdin=prompt.encode())


async def collect(fake, limits=LIMITS, prompt="hello"):
    events = []

    async def on_event(event):
        events.append(event)

    result = await run(command(fake, prompt), limits, on_event)
    return result, events


def assert_no_survivors(fake, result=None):
    pids = fake.spawned_pids() + [r["pid"] for r in fake.records()]
    survivors = [pid for pid in pids if pid_alive(pid)]
    assert survivors == [], f"processes outlived the run: {survivors}"


async def test_a_successful_run_streams_events_and_returns_the_result(fake_claude):
    fake_claude.script([{"init": {}}, {"text": "first"}, {"text": "second"},
                        {"result": {"total_cost_usd": 0.25}}])
    result, events = await collect(fake_claude)
    assert result.exit_code == 0
    assert isinstance(events[0], InitEvent)
    assert [e.text for e in events if isinstance(e, TextEvent)] == ["first", "second"]
    assert isinstance(result.result, ResultEvent)
    assert result.result.total_cost_usd == 0.25
    assert fake_claude.last()["stdin"] == "hello"


async def test_events_arrive_while_the_child_is_still_running(fake_claude):
    fake_claude.script([{"init": {}}, {"text": "early"}, {"hang": True}])
    seen_early = anyio.Event()

    async def on_event(event):
        if isinstance(event, TextEvent):
            seen_early.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, command(fake_claude), LIMITS, on_event)
        with anyio.fail_after(10):
            await seen_early.wait()
        tg.cancel_scope.cancel()
    assert_no_survivors(fake_claude)


async def test_a_timeout_ends_the_whole_process_group(fake_claude):
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"hang": True}])
    result, _ = await collect(fake_claude, Limits(timeout_s=1.5, kill_grace_s=2))
    assert result.timed_out
    assert fake_claude.spawned_pids(), "the fake should have spawned a grandchild"
    assert_no_survivors(fake_claude)


async def test_cancelling_the_caller_ends_the_child_and_its_grandchildren(fake_claude):
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "working"}, {"hang": True}])
    working = anyio.Event()

    async def on_event(event):
        if isinstance(event, TextEvent):
            working.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, command(fake_claude), LIMITS, on_event)
        with anyio.fail_after(10):
            await working.wait()
        tg.cancel_scope.cancel()
    assert_no_survivors(fake_claude)


async def test_a_child_that_ignores_sigterm_is_killed(fake_claude):
    fake_claude.script([{"init": {}}, {"hang": "ignore_term"}])
    result, _ = await collect(fake_claude, Limits(timeout_s=1, kill_grace_s=0.5))
    assert result.timed_out and result.killed
    assert result.exit_code == -9
    assert_no_survivors(fake_claude)


async def test_a_grandchild_left_behind_after_a_normal_exit_is_swept(fake_claude):
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "ok"}, {"result": {}}])
    result, _ = await collect(fake_claude)
    assert result.exit_code == 0 and result.result is not None
    assert_no_survivors(fake_claude)


async def test_a_child_that_gives_its_result_but_never_exits_is_ended(fake_claude):
    fake_claude.script([{"init": {}}, {"text": "done"}, {"result": {}}, {"hang": True}])
    result, _ = await collect(fake_claude, Limits(timeout_s=30, kill_grace_s=1, result_grace_s=0.3))
    assert not result.timed_out
    assert result.result is not None and not result.result.is_error
    assert_no_survivors(fake_claude)


async def test_a_crash_is_reported_with_its_signal_and_stderr(fake_claude):
    fake_claude.script([{"init": {}}, {"stderr": "boom: out of cheese"}, {"crash": "SIGSEGV"}])
    result, _ = await collect(fake_claude)
    assert result.exit_code == -11
    assert result.result is None
    assert "out of cheese" in result.stderr_tail


async def test_garbage_on_stdout_is_kept_aside_not_fatal(fake_claude):
    fake_claude.script([{"raw": "Warning: not json"}, {"init": {}}, {"text": "ok"}, {"result": {}}])
    result, _ = await collect(fake_claude)
    assert result.stray_lines == ("Warning: not json",)
    assert result.result is not None


async def test_a_missing_executable_is_a_start_error(tmp_path):
    cmd = Command(argv=(str(tmp_path / "nope"), "-p"), env={}, cwd=tmp_path, stdin=b"x")

    async def on_event(event):
        raise AssertionError("no events expected")

    result = await run(cmd, LIMITS, on_event)
    assert result.start_error and "nope" in result.start_error


async def test_an_overlong_line_is_a_protocol_error(fake_claude):
    fake_claude.script([{"raw": "x" * 5000}, {"hang": True}])
    limits = Limits(timeout_s=30, kill_grace_s=1, max_line_bytes=1000)
    result, _ = await collect(fake_claude, limits)
    assert result.protocol_error and "1000" in result.protocol_error
    assert not result.timed_out
    assert_no_survivors(fake_claude)


async def test_an_exception_in_the_event_callback_still_ends_the_child(fake_claude):
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "x"}, {"hang": True}])

    async def on_event(event):
        if isinstance(event, TextEvent):
            raise RuntimeError("callback broke")

    with pytest.raises(Exception) as caught:
        await run(command(fake_claude), LIMITS, on_event)
    assert "callback broke" in repr(caught.value) or caught.group_contains(RuntimeError)
    assert_no_survivors(fake_claude)


async def test_many_concurrent_runs_leave_nothing_behind(fake_claude):
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "ok"}, {"result": {}}])
    results = []

    async def one():
        results.append((await collect(fake_claude))[0])

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    assert all(r.exit_code == 0 for r in results)
    assert len(fake_claude.spawned_pids()) == 8
    assert_no_survivors(fake_claude)


async def test_a_silent_child_is_ended_as_stalled(fake_claude):
    fake_claude.script([{"init": {}}, {"text": "thinking"}, {"spawn": "sleeper"}, {"hang": True}])
    limits = Limits(timeout_s=30, kill_grace_s=1, stall_s=0.5)
    result, _ = await collect(fake_claude, limits)
    assert result.stalled and not result.timed_out
    assert result.duration_s < 30
    assert_no_survivors(fake_claude)


async def test_a_child_that_keeps_printing_is_not_stalled(fake_claude):
    # Printing for longer than stall_s, never silent for long: the silence is counted from
    # the start, so the child's own start-up must fit in stall_s too, loaded machine or not.
    steps = [{"init": {}}]
    for _ in range(12):
        steps += [{"sleep": 0.25}, {"text": "tick"}]
    fake_claude.script([*steps, {"result": {}}])
    result, _ = await collect(fake_claude, Limits(timeout_s=30, kill_grace_s=1, stall_s=2))
    assert not result.stalled
    assert result.result is not None and not result.result.is_error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the boot time moves on Linux")
def test_a_process_keeps_its_identity_when_the_clock_moves_the_boot_time(monkeypatch):
    # The kernel derives the boot time from the wall clock: while NTP sets the clock of a
    # fresh machine it moves, and psutil's create_time with it. A child registered before
    # must still be recognised (the watchdog once skipped such a tree after a crash).
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        before = Identity.of(child.pid)
        assert before is not None and before.process() is not None
        wall = psutil.Process(child.pid).create_time()
        moved = psutil.boot_time() + 1.0
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: moved)
        assert psutil.Process(child.pid).create_time() == pytest.approx(wall + 1.0)
        assert before.process() is not None
        assert Identity.of(child.pid) == before
    finally:
        child.communicate(b"")
    assert before.process() is None  # and a process that ended is still told apart


def test_the_watchdog_finds_what_a_call_left_by_the_mark_it_inherited():
    # A CLI exits when its stdin closes with a dead bridge; a daemon it left (setsid, its
    # parent gone) is no one's descendant any more, but it still carries the mark.
    marked_child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                    stdin=subprocess.PIPE, env=marked_env(dict(os.environ)),
                                    start_new_session=True)
    plain = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, start_new_session=True)
    try:
        found = {identity.pid for identity in marked(MARK)}
        assert marked_child.pid in found and plain.pid not in found
        assert os.getpid() not in found
    finally:
        marked_child.communicate(b"")
        plain.communicate(b"")
