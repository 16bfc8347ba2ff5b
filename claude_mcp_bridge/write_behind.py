"""Writes nobody waits for, made in order by one thread, with a way to wait for them all.

A call's small writes (the child's identity, the cost it reported, the settlement) are
made ``at_once`` on the loop's thread when they can start without waiting; what cannot
(another thread or process holds the database, something is queued before it, or the
store is not SQLite) is queued here, and the call does not wait for it unless it must be
written before the answer (the reported cost). Every read and transaction of the ledger
first waits for what was queued before it (``AfterQueued``, the store the ledger uses), so
the next call's budget check, the usage resource and a test reading a row all see every
call that has answered.
Closing waits for the queue, so a clean shutdown loses nothing. A bridge killed between
the answer and the write leaves the row ``running`` with its reservation held (never an
overspend), which the next start settles ``interrupted``, charged the reported cost if
its note was written, else the reservation, as for a call killed mid-run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, TypeVar

from .errors import LedgerError
from .ledger_store import Busy, Row, Session, Store

logger = logging.getLogger(__name__)

T = TypeVar("T")

_AT_ONCE: ContextVar[bool] = ContextVar("ledger_at_once", default=False)
CHECKPOINT_EVERY = 200
"""At-once writes between two checkpoints of the WAL, made on the writer thread (a few pages
each: SQLite's own automatic checkpoint comes every 1,000 pages)."""


def at_once(write: Callable[[], T]) -> T:
    """Run ``write`` (one ledger transaction) on this thread if it can start without
    waiting: nothing is queued before it, no other thread or process holds the database,
    and the store can tell (SQLite); else raise ``Busy`` before anything is written. A
    small SQLite transaction takes some 20 microseconds, while handing it to a thread costs
    a millisecond or more on a busy machine: what a call's answer waits for is written so.
    """
    token = _AT_ONCE.set(True)
    try:
        return write()
    finally:
        _AT_ONCE.reset(token)


class WriteBehind:
    """One writer thread, FIFO, started on the first write."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._queued: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._writer: int | None = None
        """The writer thread's ident: waiting from it would wait for itself."""

    def submit(self, write: Callable[[], object]) -> Future[None]:
        """Queue ``write``; it must handle its own errors (an escaping one is logged). The
        future is done once it was made."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            future = self._executor.submit(self._run, write)
            self._queued.add(future)
        future.add_done_callback(self._done)
        return future

    def idle(self) -> bool:
        """Nothing queued is still to be written."""
        return not self._queued

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        if not self._queued or threading.get_ident() == self._writer:
            return True
        with self._lock:
            queued = list(self._queued)
        return not wait(queued, timeout_s).not_done

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _run(self, write: Callable[[], object]) -> None:
        self._writer = threading.get_ident()
        try:
            write()
        except Exception:
            logger.exception("a queued %s write failed", self._name)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._queued.discard(future)


class AfterQueued:
    """A ``Store`` whose transactions and reads first wait for the writes queued before
    them, so a budget check, the usage resource and a test reading a row see every call
    that has answered. The writer thread's own writes do not wait (for themselves)."""

    def __init__(self, store: Store, behind: WriteBehind) -> None:
        self._store = store
        self._behind = behind
        self._at_once = 0
        self.where = store.where
        self.keeps_answers = store.keeps_answers
        self.lease_s = store.lease_s

    @property
    def problem(self) -> str | None:
        return self._store.problem

    @problem.setter
    def problem(self, value: str | None) -> None:
        self._store.problem = value

    def transaction(self) -> AbstractContextManager[Session]:
        if _AT_ONCE.get():
            return self.transaction_now()
        self._behind.wait()
        return self._store.transaction()

    def transaction_now(self) -> AbstractContextManager[Session]:
        if not self._behind.idle():  # never ahead of a queued write
            raise Busy
        self._at_once += 1
        if self._at_once % CHECKPOINT_EVERY == 0:  # the at-once connection never does
            self._behind.submit(self._store.checkpoint)
        return self._store.transaction_now()

    def checkpoint(self) -> None:
        self._store.checkpoint()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._behind.wait()
        return self._store.rows(sql, params)

    def stale_running(self, me: str) -> list[Row]:
        self._behind.wait()
        return self._store.stale_running(me)

    def hold_lease(self, session: Session, me: str) -> None:
        self._store.hold_lease(session, me)

    def renew_lease(self, me: str) -> None:
        self._store.renew_lease(me)

    def integrity(self, *, quick: bool = False) -> str:
        self._behind.wait()
        return self._store.integrity(quick=quick)

    def explain(self, exc: BaseException) -> LedgerError:
        return self._store.explain(exc)

    def close(self, me: str) -> None:
        self._behind.close()
        self._store.close(me)
