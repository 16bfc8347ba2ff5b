"""The SQLite store: one file, the embedded default.

A write transaction is ``BEGIN IMMEDIATE``: it takes the database's write lock at its
start, so no other thread, process or bridge sharing the file can interleave with it
(``busy_timeout`` 10 s). A ``running`` row is stale when its owner ran on this host and
its process is certainly gone (``processes.owner_alive``); rows of other hosts are left
to their own bridges. Kept answers are files beside the ledger (``answers.py``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import LedgerError
from .ledger_schema import connect, ledger_error, migrate
from .ledger_store import Busy, Row, Session
from .processes import owner_alive

logger = logging.getLogger(__name__)


class SqliteSession:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else dict(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(row) for row in self._db.execute(sql, params).fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount


class SqliteStore:
    keeps_answers = False
    lease_s: float | None = None

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.problem: str | None = None
        self._db = connection
        self._at_once: sqlite3.Connection | None = None
        """A second connection that never waits for the database (``transaction_now``)."""
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Open (or create) the file and bring its schema up to date; a damaged file is
        opened but never written (``problem`` says why)."""
        connection = connect(path)
        store = cls(connection, path)
        try:
            store.problem = store._damage()
            if store.problem is None:
                with store.transaction():
                    migrate(connection, path)
                store._at_once = connect(path, busy_timeout_s=0)
                # its commits never checkpoint (copy the WAL into the file, with fsyncs) on
                # the event loop: ``checkpoint`` does, on the writer thread
                store._at_once.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            connection.close()
            raise ledger_error(path, exc) from exc
        except BaseException:
            connection.close()
            raise
        return store

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteSession(self._db)
                self._db.commit()
            except BaseException:
                if self._db.in_transaction:
                    self._db.rollback()
                raise

    @contextmanager
    def transaction_now(self) -> Iterator[Session]:
        """``transaction``, or ``Busy`` at once when another thread or connection holds
        the database (or it cannot begin at all: the waiting path then reports why)."""
        db = self._at_once
        if db is None or not self._lock.acquire(blocking=False):
            raise Busy
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise Busy from exc
            try:
                yield SqliteSession(db)
                db.commit()
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise
        finally:
            self._lock.release()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as no reader needs it (``PASSIVE``)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return SqliteSession(self._db).all(sql, params)

    def stale_running(self, me: str) -> list[Row]:
        rows = self.rows("SELECT id, owner, child_pid, child_created FROM calls "
                         "WHERE outcome = 'running'")
        return [row for row in rows if row["owner"] != me and not owner_alive(row["owner"])]

    def hold_lease(self, session: Session, me: str) -> None:
        """No leases: a bridge's liveness is its process on this host."""

    def renew_lease(self, me: str) -> None:
        """No leases: a bridge's liveness is its process on this host."""

    def integrity(self, *, quick: bool = False) -> str:
        """``PRAGMA integrity_check`` (or the faster ``quick_check``)."""
        with self._lock:
            rows = self._db.execute(
                "PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def explain(self, exc: BaseException) -> LedgerError:
        return ledger_error(self.path, exc)

    def close(self, me: str) -> None:
        with self._lock:
            self._db.close()
            if self._at_once is not None:
                self._at_once.close()

    def _damage(self) -> str | None:
        """What ``PRAGMA quick_check`` finds wrong, as a message with what to do; None when
        the file is sound."""
        try:
            verdict = self.integrity(quick=True)
        except sqlite3.DatabaseError as exc:  # a page too damaged even to check
            verdict = str(exc)
        if verdict == "ok":
            return None
        logger.error("%s is damaged: %s", self.path, verdict)
        return (f"the ledger {self.path} is damaged (quick_check: {verdict[:300]}); calls are "
                "refused until it is repaired: stop the bridge, move the file aside (or "
                f"recover it: sqlite3 {self.path} .recover | sqlite3 repaired.sqlite3) and "
                "start again")
