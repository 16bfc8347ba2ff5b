"""The ledger: budget reservations, one durable row per call, crash recovery.

It lives in a SQLite file (the embedded default) or a PostgreSQL database that bridges on
several hosts share; ``ledger_store.py`` says what differs and ``ledger_sqlite.py`` /
``ledger_postgres.py`` implement it. This module's SQL is written once for both.

A call is admitted by ``reserve``: one write transaction, serialised with every other
writer of the ledger (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory transaction
lock), adds up what each applicable budget has spent or reserved in its UTC period and
inserts the call's row, ``running`` with its cap reserved, or ``refused`` (the arithmetic
is ``budget.py``'s). ``settle`` replaces the reservation with the real cost. No
interleaving of calls, threads, processes or hosts can spend past a budget.

A bridge killed mid-call leaves ``running`` rows. ``recover_interrupted`` (at ``open``, and
every few seconds on a shared ledger) marks those of bridges that are certainly gone
``interrupted``, charged what their child reported, else their reservation. Gone means:
for SQLite, an owner process of this host that has ended (rows of other hosts are left
alone); for PostgreSQL, an owner whose lease ran out. A child left running is ended only
when its owner ran on this host and its pid and creation time still match.

Reports over the rows live beside their users: ``usage.py`` (calls per tool or day)
and ``agent_tests/history.py`` (agent-test results, table ``test_results``).

Decisions worth knowing:

- Times are ISO-8601 UTC text with microseconds (``2025-03-10T23:59:59.000000Z``), so
  text order is time order. Naive datetimes are taken as UTC.
- Money is stored as REAL (DOUBLE PRECISION) dollars and compared in whole micro-dollars.
- The schemas and their migrations are ``ledger_schema.py``'s (SQLite) and
  ``ledger_postgres_schema.py``'s (PostgreSQL).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from .budget import (
    MICROS,
    Budget,
    BudgetRefusal,
    Check,
    Period,
    applicable_limits,
    budget_refusal,
    first_failing,
    micros,
    period_bounds,
    requested_micros,
)
from .errors import LedgerError
from .ledger_lease import LeaseKeeper
from .ledger_sqlite import SqliteStore
from .ledger_store import Row, Session, Store, parse_time, sha256
from .ledger_store import format_time as format_time  # re-exported for the reports
from .ledger_store import storable as storable
from .ledger_store import utc as utc
from .outcomes import Outcome
from .processes import Identity, end_trees_now, owner, owner_host
from .write_behind import AfterQueued, WriteBehind

logger = logging.getLogger(__name__)

_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens")
DEFAULT_LEASE_S = 15.0
"""How long a bridge's lease on a shared (PostgreSQL) ledger lasts unrenewed."""

@dataclass(frozen=True)
class CallStart:
    """What the ledger records about a call before it runs."""

    tool: str
    kind: str
    definition_path: str
    definition_sha256: str
    caller: str
    prompt: str
    store_prompt: bool = False
    """Keep the prompt text; otherwise only its length and sha256 are stored."""
    client: str | None = None
    """The ``[clients.<name>]`` entry making the call (None: the owner)."""


@dataclass(frozen=True)
class Reservation:
    call_id: str
    reserved_usd: float | None
    """The amount held against the budgets (None: no budget applied, nothing held)."""


@dataclass(frozen=True)
class Settlement:
    """How a call ended; replaces the call's reservation with ``cost_usd``."""

    outcome: Outcome
    cost_usd: float | None
    num_turns: int | None = None
    session_id: str | None = None
    usage: Mapping[str, int] | None = None
    """Token counts: input_tokens, output_tokens, cache_creation_input_tokens,
    cache_read_input_tokens; other keys are ignored."""
    error: str | None = None
    duration_ms: int | None = None
    """The CLI's own ``duration_ms``; None when it reported none."""
    wall_ms: int | None = None
    """The call's wall time, from its start to its answer; None: the time since its row was
    started."""


class Ledger:
    """One ledger of calls; safe to share between threads, processes and (on PostgreSQL)
    hosts."""

    def __init__(self, store: Store) -> None:
        self._behind = WriteBehind("ledger")
        self._store: Store = AfterQueued(store, self._behind)
        self._me = owner(os.getpid())
        self._keeper: LeaseKeeper | None = None

    @classmethod
    def open(cls, target: Path | str, *, lease_s: float = DEFAULT_LEASE_S) -> Ledger:
        """Open (or create) the ledger, bring its schema up to date, recover crashed calls.
        ``target`` is a SQLite file, or a ``postgresql://`` URL (the ``postgres`` extra)."""
        ledger = cls(_open_store(target, lease_s))
        try:
            if ledger.problem is None:  # never write to a damaged file
                ledger.recover_interrupted()
        except BaseException as exc:
            ledger.close()
            if isinstance(exc, Exception) and not isinstance(exc, LedgerError):
                raise ledger.explain(exc) from exc
            raise
        if ledger._store.lease_s is not None:
            ledger._keeper = LeaseKeeper(lambda: ledger._store.renew_lease(ledger._me),
                                         ledger.recover_interrupted,
                                         ledger._store.lease_s).start()
        return ledger

    @property
    def problem(self) -> str | None:
        """Why the ledger cannot be used (damaged), found when it was opened; None if fine."""
        return self._store.problem

    @property
    def where(self) -> str:
        """The file, or the database URL without its password."""
        return self._store.where

    @property
    def keeps_answers(self) -> bool:
        """Kept answers belong in the ledger's ``answers`` table (PostgreSQL), so every
        bridge sharing it can serve them; else they are files beside it."""
        return self._store.keeps_answers

    def explain(self, exc: BaseException) -> LedgerError:
        """A LedgerError naming the cause of a failed ledger operation and what to do."""
        return self._store.explain(exc)

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()
        self._store.close(self._me)  # after every queued write

    def later(self, write: Callable[[], object]) -> Future[None]:
        """Queue ``write`` (a settlement, a note) to be made in order without waiting for
        it; every read and transaction after waits for it (``write_behind.py``)."""
        return self._behind.submit(write)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def reserve(
        self, start: CallStart, cap_usd: float | None, tool_budget: Budget, global_budget: Budget,
        *, client_budget: Budget | None = None, now: datetime | None = None,
    ) -> Reservation | BudgetRefusal:
        """Hold ``cap_usd`` against every applicable budget, or refuse naming the first that
        would be overspent (tool, then client, then global; daily before monthly)."""
        at = utc(now)
        limits = applicable_limits(start.tool, tool_budget, global_budget, start.client,
                                   client_budget)
        with self._store.transaction() as db:
            self._store.hold_lease(db, self._me)
            checks = [Check(limit, _micros(db.one(*_spent_sql(limit.tool, limit.period, at,
                                                               limit.client))))
                      for limit in limits]
            requested = requested_micros(cap_usd, checks)
            failed = first_failing(checks, requested, uncapped=cap_usd is None)
            call_id = uuid.uuid4().hex
            if failed is not None:
                refusal = budget_refusal(call_id, failed, requested)
                _insert(db, call_id, start, at, "refused", None, str(refusal), self._me)
                return refusal
            reserved = None if requested is None else requested / MICROS
            _insert(db, call_id, start, at, "running", reserved, None, self._me)
            return Reservation(call_id, reserved)

    def refuse(self, start: CallStart, reason: str, *, now: datetime | None = None) -> str:
        """Record a call refused for a reason other than budget; returns its id."""
        call_id = uuid.uuid4().hex
        with self._store.transaction() as db:
            _insert(db, call_id, start, utc(now), "refused", None, reason, self._me)
        return call_id

    def settle(self, call_id: str, settlement: Settlement, *, now: datetime | None = None) -> None:
        """Record how a running call ended and release its reservation."""
        if settlement.outcome == "running":
            raise ValueError(f"call {call_id}: settle needs a final outcome, got 'running'")
        at = utc(now)
        with self._store.transaction() as db:
            row = db.one("SELECT outcome, started_at FROM calls WHERE id = ?", (call_id,))
            if row is None or row["outcome"] != "running":
                _warn_not_running(call_id, row)
                return
            _update_settled(db, call_id, settlement, at, parse_time(row["started_at"]))

    def note_child(self, call_id: str, child: Identity) -> None:
        """Record the running call's child, for recovery if this bridge dies."""
        with self._store.transaction() as db:
            db.run("UPDATE calls SET child_pid = ?, child_created = ? WHERE id = ? "
                   "AND outcome = 'running'", (child.pid, child.created, call_id))

    def note_cost(self, call_id: str, cost_usd: float) -> None:
        """Record the cost the running call's child reported, for recovery if this bridge
        dies before settling it."""
        with self._store.transaction() as db:
            db.run("UPDATE calls SET reported_usd = ? WHERE id = ? AND outcome = 'running'",
                   (cost_usd, call_id))

    def recover_interrupted(self, *, grace_s: float = 3.0) -> int:
        """Settle ``running`` rows of bridges that are gone ``interrupted``; returns how
        many. Gone: a process of this host that ended (SQLite), an owner whose lease ran
        out (PostgreSQL). Such a call is charged the cost its child reported, if it did,
        else its reservation: its child may have spent up to it. A child left alive is
        ended first, only when its owner ran on this host and its pid and creation time
        still match. Rows of this process are never touched."""
        stale = self._store.stale_running(self._me)
        if not stale:
            return 0
        here = socket.gethostname()
        children = [Identity(row["child_pid"], row["child_created"]) for row in stale
                    if row["child_pid"] is not None and row["child_created"] is not None
                    and owner_host(row["owner"]) == here]
        ended = end_trees_now(children, grace_s)
        settled = 0
        with self._store.transaction() as db:
            for row in stale:
                settled += db.run(
                    "UPDATE calls SET outcome = 'interrupted', "
                    "cost_usd = COALESCE(cost_usd, reported_usd, reserved_usd), reserved_usd = 0, "
                    "ended_at = ?, error = ? WHERE id = ? AND outcome = 'running'",
                    (format_time(utc(None)), _interrupted_message(row["owner"], self._me),
                     row["id"]))
        if settled:
            logger.warning("%s: settled %d call(s) of ended bridge processes as interrupted, "
                           "charged their reported cost or reservation; ended %d child "
                           "process tree(s) they left running", self.where, settled, ended)
        return settled

    def spent(self, *, tool: str | None, period: Period, now: datetime | None = None) -> float:
        """Settled cost plus live reservations in the UTC day or month of ``now``
        (all tools when ``tool`` is None)."""
        rows = self._store.rows(*_spent_sql(tool, period, utc(now)))
        return _micros(rows[0] if rows else None) / MICROS

    def budget_left(
        self, global_budget: Budget, *, now: datetime | None = None
    ) -> dict[str, float | None]:
        """{"daily": ..., "monthly": ...}: what is left of each global cap (None: no cap)."""
        return {
            "daily": self._left(global_budget.daily_usd, "day", now),
            "monthly": self._left(global_budget.monthly_usd, "month", now),
        }

    def get(self, call_id: str) -> dict[str, Any] | None:
        """The call's row as a dict, or None."""
        rows = self._store.rows("SELECT * FROM calls WHERE id = ?", (call_id,))
        return rows[0] if rows else None

    def session_tool(self, session_id: str) -> str | None:
        """The tool whose call first reported ``session_id``, or None when none did."""
        rows = self._store.rows(
            "SELECT tool FROM calls WHERE session_id = ? ORDER BY started_at LIMIT 1",
            (session_id,))
        return str(rows[0]["tool"]) if rows else None

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a read-only query (``?`` placeholders), for the reports beside the
        ledger."""
        return self._store.rows(query, params)

    def write(self, statement: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own write transaction, for the reports' own tables; returns
        how many rows it changed."""
        with self._store.transaction() as db:
            return db.run(statement, params)

    def integrity(self, *, quick: bool = False) -> str:
        """"ok", or what the database found wrong (SQLite: ``PRAGMA integrity_check``, or
        the faster ``quick_check``)."""
        return self._store.integrity(quick=quick)

    def _left(self, limit_usd: float | None, period: Period, now: datetime | None) -> float | None:
        if limit_usd is None:
            return None
        return max(0.0, limit_usd - self.spent(tool=None, period=period, now=now))


def _open_store(target: Path | str, lease_s: float) -> Store:
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        try:
            from .ledger_postgres import PostgresStore  # psycopg only when it is used
        except ImportError as exc:
            raise LedgerError(target.split("@")[-1], (
                f"a PostgreSQL ledger needs psycopg ({exc}); install the extra: pip install "
                "'claude-mcp-bridge[postgres]'")) from exc
        return PostgresStore.open(target, lease_s, owner(os.getpid()))
    return SqliteStore.open(Path(target))


def _spent_sql(tool: str | None, period: Period, at: datetime,
               client: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The query of what is spent or reserved (column ``spent``) in the period of ``at``."""
    start, end = period_bounds(period, at)
    query = ("SELECT COALESCE(SUM(COALESCE(cost_usd, 0) + COALESCE(reserved_usd, 0)), 0) "
             "AS spent FROM calls WHERE started_at >= ? AND started_at < ?")
    params: tuple[str, ...] = (format_time(start), format_time(end))
    for column, value in (("tool", tool), ("client", client)):
        if value is not None:
            query += f" AND {column} = ?"  # a column name of ours, never input
            params += (value,)
    return query, params


def _micros(row: Row | None) -> int:
    return micros(float(row["spent"])) if row else 0


def _insert(db: Session, call_id: str, start: CallStart, at: datetime, outcome: Outcome,
            reserved_usd: float | None, error: str | None, me: str) -> None:
    started = format_time(at)
    ended = None if outcome == "running" else started
    db.run(
        "INSERT INTO calls (id, tool, kind, definition_path, definition_sha256, caller, "
        "started_at, ended_at, outcome, reserved_usd, error, prompt_chars, prompt_sha256, "
        "prompt, owner, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (call_id, start.tool, start.kind, start.definition_path, start.definition_sha256,
         storable(start.caller), started, ended, outcome, reserved_usd, storable(error),
         len(start.prompt), sha256(start.prompt),
         storable(start.prompt) if start.store_prompt else None, me, start.client))


def _update_settled(db: Session, call_id: str, settlement: Settlement, at: datetime,
                    started: datetime) -> None:
    usage = settlement.usage or {}
    wall = settlement.wall_ms
    if wall is None:
        wall = max(0, round((at - started).total_seconds() * 1000))
    db.run(
        "UPDATE calls SET outcome = ?, cost_usd = ?, reserved_usd = 0, ended_at = ?, "
        "wall_ms = ?, duration_ms = ?, num_turns = ?, session_id = ?, error = ?, "
        + ", ".join(f"{column} = ?" for column in _TOKEN_COLUMNS) + " WHERE id = ?",
        (settlement.outcome, settlement.cost_usd, format_time(at), wall, settlement.duration_ms,
         settlement.num_turns, settlement.session_id, storable(settlement.error),
         *(usage.get(column) for column in _TOKEN_COLUMNS), call_id))


def _warn_not_running(call_id: str, row: Row | None) -> None:
    if row is None:
        logger.warning("settle: no call %s in the ledger; nothing recorded", call_id)
    else:
        logger.warning("settle: call %s is already %s; the later settlement is ignored",
                       call_id, row["outcome"])


def _interrupted_message(owner: str, finder: str) -> str:
    return (f"interrupted: the bridge process that ran this call ({owner}) ended before "
            "settling it (its process is gone, or its lease on a shared ledger ran out); "
            f"found by {finder}. It is charged the cost its child reported, or, "
            "when none was reported, its reservation (its cap, or what was left of the budget)")
