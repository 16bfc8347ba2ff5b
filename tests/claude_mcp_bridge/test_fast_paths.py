"""The fast paths of a call (issue 18), and that each falls back instead of waiting.

- a ledger write the answer waits for is made at once on the calling thread when it can
  start without waiting (``write_behind.at_once``), and raises ``Busy`` otherwise: another
  connection holds the database, something is queued before it, or the store cannot tell;
- a call's child is watched through a pidfd on the event loop, with no thread per child
  (``pidfd_process``), and anyio's own processes are used where pidfds are not.
"""

from __future__ import annotations

import gc
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from claude_mcp_bridge import pidfd_process, platform, write_behind
from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation
from claude_mcp_bridge.ledger_store import Busy
from claude_mcp_bridge.settle import now_or_later, promptly
from claude_mcp_bridge.write_behind import AfterQueued, WriteBehind, at_once

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
START = CallStart("agent_reviewer", "agent", "reviewer.md", "0" * 64, "test", "hi")
ECHO = [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]


def _reserve(ledger: Ledger) -> Reservation:
    reservation = ledger.reserve(START, 0.5, Budget(), Budget(daily_usd=5.0), now=NOW)
    assert isinstance(reservation, Reservation)
    return reservation


def _ledger_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ledger")]


def test_a_write_that_can_start_is_made_at_once_on_the_calling_thread(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        reservation = at_once(lambda: _reserve(ledger))
        assert _ledger_threads() == []  # no writer thread was woken for it
        [row] = ledger.rows("SELECT id, outcome, reserved_usd FROM calls")
        assert row == {"id": reservation.call_id, "outcome": "running", "reserved_usd": 0.5}


def test_at_once_gives_up_at_once_while_another_connection_writes(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as ledger:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another bridge sharing the file, mid-write
        outcome: list[object] = []
        attempt = threading.Thread(target=lambda: outcome.append(_busy(ledger)), daemon=True)
        attempt.start()
        attempt.join(timeout=5)  # the busy timeout is 10 s: waiting would still be waiting
        assert outcome == [True]
        assert ledger.rows("SELECT COUNT(*) AS n FROM calls") == [{"n": 0}]
        other.execute("ROLLBACK")
        other.close()
        # the slow path waits for the database as ever, with its busy timeout restored
        assert isinstance(_reserve(ledger), Reservation)


def _busy(ledger: Ledger) -> bool:
    try:
        at_once(lambda: _reserve(ledger))
    except Busy:
        return True
    return False


def test_at_once_never_overtakes_a_queued_write(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        release = threading.Event()
        first = ledger.later(release.wait)  # a write queued before, still being made
        with pytest.raises(Busy):
            at_once(lambda: _reserve(ledger))
        release.set()
        first.result(timeout=10)
        assert isinstance(at_once(lambda: _reserve(ledger)), Reservation)


def test_a_store_that_cannot_start_at_once_is_never_written_at_once():
    postgres = pytest.importorskip("claude_mcp_bridge.ledger_postgres")
    opened: list[str] = []
    store = postgres.PostgresStore.__new__(postgres.PostgresStore)  # no server needed
    store.where, store.lease_s = "postgresql://db", 30.0
    store.transaction = lambda: opened.append("waited")  # the waiting kind
    with pytest.raises(Busy):
        at_once(lambda: AfterQueued(store, WriteBehind("test")).transaction())
    assert opened == []


@pytest.mark.anyio
async def test_promptly_falls_back_to_a_thread_and_writes_once(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as ledger:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        async with anyio.create_task_group() as tg:
            done: list[Reservation] = []

            async def reserve() -> None:
                done.append(await promptly(lambda: _reserve(ledger)))
            tg.start_soon(reserve)
            await anyio.wait_all_tasks_blocked()
            assert done == []  # waiting in its thread for the other connection
            other.execute("ROLLBACK")
        other.close()
        assert len(done) == 1
        assert ledger.rows("SELECT COUNT(*) AS n FROM calls") == [{"n": 1}]


@pytest.mark.anyio
@pytest.mark.skipif(not pidfd_process.available(), reason="this kernel gives no pidfds")
async def test_a_childs_exit_is_seen_through_a_pidfd_with_no_thread(tmp_path: Path):
    before = {t.ident for t in threading.enumerate()}
    process = await platform.start_tree_root(ECHO, cwd=tmp_path, env={"PATH": "/usr/bin"})
    assert isinstance(process, pidfd_process.PidfdProcess)
    try:  # asyncio's own watcher starts a thread for every child
        assert {t.ident for t in threading.enumerate()} - before == set()
    finally:
        await _echoes(process)


@pytest.mark.anyio
async def test_without_pidfds_anyio_starts_the_child(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(pidfd_process, "available", lambda: False)
    process = await platform.start_tree_root(ECHO, cwd=tmp_path, env={"PATH": "/usr/bin"})
    assert not isinstance(process, pidfd_process.PidfdProcess)
    await _echoes(process)


async def _echoes(process: anyio.abc.Process) -> None:
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.send(b"hello")
    await process.stdin.aclose()
    with anyio.fail_after(30):
        out = b"".join([chunk async for chunk in process.stdout])
        assert await process.wait() == 0
    assert out == b"HELLO" and process.returncode == 0
    await process.aclose()


def test_a_settlement_that_fails_otherwise_is_queued_never_raised(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        def broken() -> None:
            raise ValueError("a row the ledger cannot read")
        queued = now_or_later(ledger, broken, "settling call 12345678")
        assert queued is not None  # the writer thread logs it, as it logs any write
        queued.result(timeout=10)


def test_the_at_once_connection_never_checkpoints_the_writer_thread_does(tmp_path, monkeypatch):
    monkeypatch.setattr(write_behind, "CHECKPOINT_EVERY", 3)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        store = ledger._store._store  # type: ignore[attr-defined]
        checkpoints: list[str] = []
        checkpoint = store.checkpoint
        monkeypatch.setattr(store, "checkpoint", lambda: (
            checkpoints.append(threading.current_thread().name), checkpoint())[-1])
        for _ in range(6):
            try:
                at_once(lambda: _reserve(ledger))
            except Busy:  # the checkpoint was queued and not yet made: the slow path
                _reserve(ledger)
        ledger.rows("SELECT 1")  # waits for the queue
        assert len(checkpoints) == 2
        assert all(name.startswith("ledger") for name in checkpoints)


@pytest.mark.anyio
@pytest.mark.skipif(not pidfd_process.available(), reason="this kernel gives no pidfds")
async def test_a_start_that_fails_between_its_pipes_leaves_nothing_open(tmp_path, monkeypatch):
    connect = pidfd_process._Output.connect
    calls: list[int] = []

    async def second_fails(pipe: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the loop refused the pipe")
        return await connect(pipe)
    monkeypatch.setattr(pidfd_process._Output, "connect", second_fails)
    with pytest.raises(OSError, match="refused"):
        await platform.start_tree_root(ECHO, cwd=tmp_path, env={"PATH": "/usr/bin"})
    monkeypatch.undo()
    gc.collect()  # an unclosed transport would warn here (an error in this suite)
    process = await platform.start_tree_root(ECHO, cwd=tmp_path, env={"PATH": "/usr/bin"})
    await _echoes(process)  # its pipes are read: no stale entry of a reused descriptor
