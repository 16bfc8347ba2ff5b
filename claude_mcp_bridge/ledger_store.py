"""What the ledger needs from a database, whichever it is.

Two stores implement ``Store``: ``ledger_sqlite.SqliteStore`` (one file, the embedded
default) and ``ledger_postgres.PostgresStore`` (one database shared by bridges on many
hosts). ``ledger.py`` writes its SQL once, with ``?`` placeholders and the subset of SQL
both speak (``COALESCE(SUM(...), 0)``, ``ON CONFLICT ... DO UPDATE``); a store translates
what differs (placeholders, how a write transaction locks, where the schema version lives,
column types) and hands back rows as plain dicts.

What differs in behaviour, not only in dialect:

- which ``running`` rows belong to a bridge that is gone (``stale_running``): SQLite asks
  the process table of this host; PostgreSQL asks the bridges' leases;
- where kept answers live (``keeps_answers``): files beside a SQLite ledger, a table of a
  PostgreSQL one, so any bridge can serve any job's answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from .errors import LedgerError

Row = dict[str, Any]
"""One row, by column name."""


class Busy(Exception):
    """A transaction asked to start at once would have had to wait (``write_behind``)."""


class Session(Protocol):
    """Statements inside one transaction; SQL uses ``?`` placeholders."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a statement; returns how many rows it changed."""
        ...


class Store(Protocol):
    """A ledger's database: safe to share between the threads of one process."""

    where: str
    """The file, or the database URL without its password, for messages."""
    keeps_answers: bool
    """Kept answers belong in its ``answers`` table (else: files beside the ledger)."""
    lease_s: float | None
    """How long a bridge's lease lasts unrenewed (None: no leases; liveness is local)."""
    problem: str | None
    """Why the store must not be written (found when opened); None if fine."""

    def transaction(self) -> AbstractContextManager[Session]:
        """One write transaction, serialised with every other writer of this ledger
        (threads, processes, hosts) from its first statement to its commit."""
        ...

    def transaction_now(self) -> AbstractContextManager[Session]:
        """``transaction`` if it can start without waiting on anyone, else ``Busy`` before
        anything is written (``write_behind.at_once``)."""
        ...

    def checkpoint(self) -> None:
        """Housekeeping after many ``transaction_now`` writes (SQLite: copy its WAL into
        the file); none where there is nothing to keep."""
        ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a read-only query."""
        ...

    def stale_running(self, me: str) -> list[Row]:
        """``running`` rows (id, owner, child_pid, child_created) of bridges other than
        ``me`` that are certainly gone."""
        ...

    def hold_lease(self, session: Session, me: str) -> None:
        """Renew ``me``'s lease inside a write transaction (no-op without leases)."""
        ...

    def renew_lease(self, me: str) -> None:
        """Renew ``me``'s lease now, on a connection of its own (no-op without leases)."""
        ...

    def integrity(self, *, quick: bool = False) -> str:
        """"ok", or what the database found wrong with itself."""
        ...

    def explain(self, exc: BaseException) -> LedgerError:
        """A LedgerError naming the cause of ``exc`` and what to do."""
        ...

    def close(self, me: str) -> None:
        """Give up ``me``'s lease (its running rows are recoverable at once) and close."""
        ...


# -- values as both databases store them ----------------------------------------


def utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def storable(text: str | None) -> str | None:
    """Text both databases accept: lone surrogates (possible in JSON input) and NUL
    characters (PostgreSQL's text cannot hold them) become "?"."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")
