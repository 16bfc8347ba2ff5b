"""The PostgreSQL store: one database that bridges on several hosts share.

Needs psycopg 3 (the ``postgres`` extra). A write transaction is ``BEGIN`` then
``pg_advisory_xact_lock`` on one key per schema, held until its commit: what SQLite's
``BEGIN IMMEDIATE`` does for a file, so a reservation adds up and inserts with no other
writer in between, on any host.

Liveness is a lease, because no bridge can see another host's processes: every bridge
keeps a row in ``bridges`` whose ``lease_until`` it renews (``renew_lease``, from
``ledger_lease.LeaseKeeper``, and inside every reservation). A ``running`` row is stale
when its owner has no lease or the lease ran out by the database's clock. Closing gives
the lease up, so a clean exit's leftovers are recovered at once.

A lost connection (server restart, network) surfaces as ``ConnectionError``, an
``OSError``, as a full disk does for SQLite: calls are refused, settles are retried, and
the next transaction connects again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from .errors import LedgerError
from .ledger_postgres_schema import MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE
from .ledger_store import Busy, Row, Session
from .processes import owner_host

logger = logging.getLogger(__name__)

LOCK_CLASS = 0x6C656467
"""First key of the ledger's advisory lock ("ledg"); the second is the schema's hash, so
ledgers in different schemas of one database do not wait on each other."""
CONNECT_TIMEOUT_S = 10

_Connection = psycopg.Connection[Row]

_RENEW = ("INSERT INTO bridges (owner, host, renewed_at, lease_until) "
          "VALUES (?, ?, now(), now() + ? * interval '1 second') ON CONFLICT (owner) DO UPDATE "
          "SET renewed_at = excluded.renewed_at, lease_until = excluded.lease_until")
_FORGET_EXPIRED = ("DELETE FROM bridges WHERE lease_until < now() AND NOT EXISTS ("
                   "SELECT 1 FROM calls WHERE calls.owner = bridges.owner "
                   "AND calls.outcome = 'running')")
_STALE = ("SELECT calls.id, calls.owner, calls.child_pid, calls.child_created FROM calls "
          "LEFT JOIN bridges ON bridges.owner = calls.owner WHERE calls.outcome = 'running' "
          "AND calls.owner <> ? AND (bridges.owner IS NULL OR bridges.lease_until < now())")


def _dialect(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def redacted(url: str) -> str:
    """The URL without its password (and without a query that might carry one)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[-1]}"
    query = "" if "password" in parts.query.lower() else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class PostgresSession:
    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(_dialect(sql), params)
        return self._cursor.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(_dialect(sql), params)
        return self._cursor.fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(_dialect(sql), params)
        return self._cursor.rowcount


class PostgresStore:
    keeps_answers = True
    problem: str | None = None

    def __init__(self, url: str, lease_s: float) -> None:
        self.url = url
        self.where = redacted(url)
        self.lease_s: float | None = lease_s
        self._db: _Connection | None = None
        self._lease_db: _Connection | None = None
        self._lock = threading.Lock()
        self._lease_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, lease_s: float, me: str) -> PostgresStore:
        """Connect, bring the schema up to date and take ``me``'s lease."""
        store = cls(url, lease_s)
        try:
            store._migrate()
            store.renew_lease(me)
        except (psycopg.Error, OSError) as exc:
            store.close(me)
            raise store.explain(exc) from exc
        except BaseException:
            store.close(me)
            raise
        return store

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._lock, self._unreachable():
            db = self._db = _live(self._db, self.url)
            with db.transaction(), db.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                               (LOCK_CLASS,))
                yield PostgresSession(cursor)

    def transaction_now(self) -> AbstractContextManager[Session]:
        """Never: a round trip to the server must not hold up the event loop."""
        raise Busy

    def checkpoint(self) -> None:
        """The server keeps its own write-ahead log."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock, self._unreachable():
            db = self._db = _live(self._db, self.url)
            with db.cursor() as cursor:
                return PostgresSession(cursor).all(sql, params)

    def stale_running(self, me: str) -> list[Row]:
        return self.rows(_STALE, (me,))

    def hold_lease(self, session: Session, me: str) -> None:
        session.run(_RENEW, (me, owner_host(me), self.lease_s))

    def renew_lease(self, me: str) -> None:
        """On a connection of its own, so a renewal never waits behind a transaction."""
        with self._lease_lock, self._unreachable():
            db = self._lease_db = _live(self._lease_db, self.url)
            with db.cursor() as cursor:
                session = PostgresSession(cursor)
                self.hold_lease(session, me)
                session.run(_FORGET_EXPIRED)

    def integrity(self, *, quick: bool = False) -> str:
        """"ok" when the database answers; the server guards its own pages."""
        self.rows("SELECT 1 AS ok")
        return "ok"

    def explain(self, exc: BaseException) -> LedgerError:
        if isinstance(exc, LedgerError):
            return exc
        if isinstance(exc, psycopg.OperationalError | ConnectionError):
            return LedgerError(self.where, (
                f"cannot reach the ledger database ({str(exc).strip()}); check [ledger] url, "
                "that the server runs and accepts this user (put a password in ~/.pgpass or "
                "PGPASSWORD, not in the config file)"))
        return LedgerError(self.where, f"cannot use the ledger database ({str(exc).strip()}); "
                                       "check [ledger] url and the user's privileges")

    def close(self, me: str) -> None:
        with self._lease_lock:
            try:
                if self._lease_db is not None and not self._lease_db.closed:
                    self._lease_db.execute("DELETE FROM bridges WHERE owner = %s", (me,))
            except psycopg.Error as exc:  # its lease runs out by itself
                logger.warning("%s: could not give up this bridge's lease (%s)", self.where,
                               exc)
            for db in (self._lease_db, self._db):
                if db is not None:
                    db.close()

    def _migrate(self) -> None:
        with self.transaction() as session:
            session.run(VERSION_TABLE)
            row = session.one("SELECT version FROM ledger_schema")
            version = 0 if row is None else int(row["version"])
            if version > SCHEMA_VERSION:
                raise LedgerError(self.where, (
                    f"the ledger has schema version {version}, newer than this bridge knows "
                    f"({SCHEMA_VERSION}); upgrade claude-mcp-bridge or point it at another "
                    "database"))
            for step in MIGRATIONS[version:]:
                for statement in step:
                    session.run(statement)
            session.run("DELETE FROM ledger_schema")
            session.run("INSERT INTO ledger_schema (version) VALUES (?)", (SCHEMA_VERSION,))

    @contextmanager
    def _unreachable(self) -> Iterator[None]:
        """A lost or refused connection as ``ConnectionError`` (an ``OSError``)."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise ConnectionError(f"{self.where}: {str(exc).strip()}") from exc


def _live(db: _Connection | None, url: str) -> _Connection:
    """``db``, or a new connection when there is none or it broke."""
    if db is not None and not db.closed and not db.broken:
        return db
    if db is not None:
        db.close()
    return psycopg.connect(url, autocommit=True, row_factory=dict_row,
                           connect_timeout=CONNECT_TIMEOUT_S)
