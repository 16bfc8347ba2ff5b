"""The SQLite ledger: budget reservations, one durable row per call, crash recovery.

A call is admitted by ``reserve``: one ``BEGIN IMMEDIATE`` transaction adds up what
each applicable budget has spent or reserved in its UTC period and inserts the call's
row, ``running`` with its cap reserved, or ``refused`` (the arithmetic is
``budget.py``'s). ``settle`` replaces the reservation with the real cost. Threads of
one process share one connection behind a lock; processes sharing the file rely on
SQLite's write lock (``busy_timeout`` 10 s), so no interleaving of calls, threads or
servers can spend past a budget.

A process killed mid-call leaves ``running`` rows. The next ``open`` (in any process)
marks those whose owner process is gone ``interrupted`` and releases their reservation;
rows of live processes, of this process and of other hosts are left alone
(``processes.owner_alive``).

Reports over the rows live beside their users: ``usage.py`` (calls per tool or day)
and ``agent_tests/history.py`` (agent-test results, table ``test_results``).

Decisions worth knowing:

- Times are ISO-8601 UTC text with microseconds (``2025-03-10T23:59:59.000000Z``), so
  text order is time order. Naive datetimes are taken as UTC.
- Money is stored as REAL dollars and compared in whole micro-dollars.
- The schema and its migrations are ``ledger_schema.py``'s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
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
from .ledger_schema import connect, ledger_error, migrate
from .outcomes import Outcome
from .processes import Identity, end_trees_now, owner, owner_alive

logger = logging.getLogger(__name__)

_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens")


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
    """The run's duration; None: the wall-clock time since the call started."""


class Ledger:
    """One SQLite file of calls; safe to share between threads and processes."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._path = path
        self._lock = threading.Lock()
        self.problem: str | None = None
        """Why the ledger cannot be used (damaged), found when it was opened; None if fine."""

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (or create) the ledger, bring its schema up to date, recover crashed calls."""
        connection = connect(path)
        ledger = cls(connection, path)
        try:
            ledger.problem = ledger._damage()
            if ledger.problem is None:  # never write to a damaged file
                ledger._migrate()
                ledger.recover_interrupted()
        except sqlite3.Error as exc:
            connection.close()
            raise ledger_error(path, exc) from exc
        except BaseException:
            connection.close()
            raise
        return ledger

    def _damage(self) -> str | None:
        """What ``PRAGMA quick_check`` finds wrong, as a message with what to do; None when
        the file is sound."""
        try:
            verdict = self.integrity(quick=True)
        except sqlite3.DatabaseError as exc:  # a page too damaged even to check
            verdict = str(exc)
        if verdict == "ok":
            return None
        logger.error("%s is damaged: %s", self._path, verdict)
        return (f"the ledger {self._path} is damaged (quick_check: {verdict[:300]}); calls are "
                "refused until it is repaired: stop the bridge, move the file aside (or "
                f"recover it: sqlite3 {self._path} .recover | sqlite3 repaired.sqlite3) and "
                "start again")

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
        with self._transaction() as db:
            checks = [Check(limit, _spent_micros(db, limit.tool, limit.period, at, limit.client))
                      for limit in limits]
            requested = requested_micros(cap_usd, checks)
            failed = first_failing(checks, requested, uncapped=cap_usd is None)
            call_id = uuid.uuid4().hex
            if failed is not None:
                refusal = budget_refusal(call_id, failed, requested)
                _insert(db, call_id, start, at, "refused", None, str(refusal))
                return refusal
            reserved = None if requested is None else requested / MICROS
            _insert(db, call_id, start, at, "running", reserved, None)
            return Reservation(call_id, reserved)

    def refuse(self, start: CallStart, reason: str, *, now: datetime | None = None) -> str:
        """Record a call refused for a reason other than budget; returns its id."""
        call_id = uuid.uuid4().hex
        with self._transaction() as db:
            _insert(db, call_id, start, utc(now), "refused", None, reason)
        return call_id

    def settle(self, call_id: str, settlement: Settlement, *, now: datetime | None = None) -> None:
        """Record how a running call ended and release its reservation."""
        if settlement.outcome == "running":
            raise ValueError(f"call {call_id}: settle needs a final outcome, got 'running'")
        at = utc(now)
        with self._transaction() as db:
            row = db.execute("SELECT outcome, started_at FROM calls WHERE id = ?",
                             (call_id,)).fetchone()
            if row is None or row["outcome"] != "running":
                _warn_not_running(call_id, row)
                return
            _update_settled(db, call_id, settlement, at, _parse_time(row["started_at"]))

    def note_child(self, call_id: str, child: Identity) -> None:
        """Record the running call's child, for recovery if this bridge dies."""
        with self._transaction() as db:
            db.execute("UPDATE calls SET child_pid = ?, child_created = ? WHERE id = ? "
                       "AND outcome = 'running'", (child.pid, child.created, call_id))

    def note_cost(self, call_id: str, cost_usd: float) -> None:
        """Record the cost the running call's child reported, for recovery if this bridge
        dies before settling it."""
        with self._transaction() as db:
            db.execute("UPDATE calls SET reported_usd = ? WHERE id = ? AND outcome = 'running'",
                       (cost_usd, call_id))

    def recover_interrupted(self, *, grace_s: float = 3.0) -> int:
        """Settle ``running`` rows of dead bridge processes (on this host) ``interrupted``;
        returns how many. A child such a call left alive is ended first (matched by pid and
        creation time), and the call is charged the cost its child reported, if it did,
        else its reservation: its child may have spent up to it. Rows of live processes,
        of this process and of other hosts stay."""
        finder = owner(os.getpid())
        with self._lock:
            rows = self._db.execute(
                "SELECT id, owner, child_pid, child_created FROM calls "
                "WHERE outcome = 'running'").fetchall()
        dead = [row for row in rows if row["owner"] != finder and not owner_alive(row["owner"])]
        if not dead:
            return 0
        children = [Identity(row["child_pid"], row["child_created"]) for row in dead
                    if row["child_pid"] is not None and row["child_created"] is not None]
        ended = end_trees_now(children, grace_s)
        with self._transaction() as db:
            for row in dead:
                db.execute(
                    "UPDATE calls SET outcome = 'interrupted', "
                    "cost_usd = COALESCE(cost_usd, reported_usd, reserved_usd), reserved_usd = 0, "
                    "ended_at = ?, error = ? WHERE id = ? AND outcome = 'running'",
                    (format_time(utc(None)), _interrupted_message(row["owner"], finder),
                     row["id"]))
        logger.warning("%s: settled %d call(s) of ended bridge processes as interrupted, "
                       "charged their reservations; ended %d child process tree(s) they "
                       "left running", self._path, len(dead), ended)
        return len(dead)

    def spent(self, *, tool: str | None, period: Period, now: datetime | None = None) -> float:
        """Settled cost plus live reservations in the UTC day or month of ``now``
        (all tools when ``tool`` is None)."""
        with self._lock:
            return _spent_micros(self._db, tool, period, utc(now)) / MICROS

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
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        return None if row is None else dict(row)

    def session_tool(self, session_id: str) -> str | None:
        """The tool whose call first reported ``session_id``, or None when none did."""
        with self._lock:
            row = self._db.execute(
                "SELECT tool FROM calls WHERE session_id = ? ORDER BY started_at LIMIT 1",
                (session_id,)).fetchone()
        return None if row is None else str(row["tool"])

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query, for the reports beside the ledger."""
        with self._lock:
            return self._db.execute(query, params).fetchall()

    def write(self, statement: str, params: tuple[Any, ...]) -> None:
        """One statement in its own write transaction, for the reports' own tables."""
        with self._transaction() as db:
            db.execute(statement, params)

    def integrity(self, *, quick: bool = False) -> str:
        """``PRAGMA integrity_check`` (or the faster ``quick_check``): "ok", or what SQLite
        found wrong."""
        with self._lock:
            rows = self._db.execute(
                "PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def _left(self, limit_usd: float | None, period: Period, now: datetime | None) -> float | None:
        if limit_usd is None:
            return None
        return max(0.0, limit_usd - self.spent(tool=None, period=period, now=now))

    def _migrate(self) -> None:
        with self._transaction() as db:
            migrate(db, self._path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database write lock from its start."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.commit()
            except BaseException:
                if self._db.in_transaction:
                    self._db.rollback()
                raise


def _spent_micros(db: sqlite3.Connection, tool: str | None, period: Period, at: datetime,
                  client: str | None = None) -> int:
    start, end = period_bounds(period, at)
    query = ("SELECT TOTAL(COALESCE(cost_usd, 0) + COALESCE(reserved_usd, 0)) FROM calls "
             "WHERE started_at >= ? AND started_at < ?")
    params: tuple[str, ...] = (format_time(start), format_time(end))
    for column, value in (("tool", tool), ("client", client)):
        if value is not None:
            query += f" AND {column} = ?"  # a column name of ours, never input
            params += (value,)
    return micros(float(db.execute(query, params).fetchone()[0]))


def _insert(db: sqlite3.Connection, call_id: str, start: CallStart, at: datetime,
            outcome: Outcome, reserved_usd: float | None, error: str | None) -> None:
    started = format_time(at)
    ended = None if outcome == "running" else started
    db.execute(
        "INSERT INTO calls (id, tool, kind, definition_path, definition_sha256, caller, "
        "started_at, ended_at, outcome, reserved_usd, error, prompt_chars, prompt_sha256, "
        "prompt, owner, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (call_id, start.tool, start.kind, start.definition_path, start.definition_sha256,
         storable(start.caller), started, ended, outcome, reserved_usd, storable(error),
         len(start.prompt), _sha256(start.prompt),
         storable(start.prompt) if start.store_prompt else None, owner(os.getpid()),
         start.client))


def _update_settled(db: sqlite3.Connection, call_id: str, settlement: Settlement, at: datetime,
                    started: datetime) -> None:
    usage = settlement.usage or {}
    duration = settlement.duration_ms
    if duration is None:
        duration = max(0, round((at - started).total_seconds() * 1000))
    db.execute(
        "UPDATE calls SET outcome = ?, cost_usd = ?, reserved_usd = 0, ended_at = ?, "
        "duration_ms = ?, num_turns = ?, session_id = ?, error = ?, "
        + ", ".join(f"{column} = ?" for column in _TOKEN_COLUMNS) + " WHERE id = ?",
        (settlement.outcome, settlement.cost_usd, format_time(at), duration,
         settlement.num_turns, settlement.session_id, storable(settlement.error),
         *(usage.get(column) for column in _TOKEN_COLUMNS), call_id))


def _warn_not_running(call_id: str, row: sqlite3.Row | None) -> None:
    if row is None:
        logger.warning("settle: no call %s in the ledger; nothing recorded", call_id)
    else:
        logger.warning("settle: call %s is already %s; the later settlement is ignored",
                       call_id, row["outcome"])


def _interrupted_message(owner: str, finder: str) -> str:
    return (f"interrupted: the bridge process that ran this call ({owner}) ended before "
            f"settling it; found by {finder}. It is charged the cost its child reported, or, "
            "when none was reported, its reservation (its cap, or what was left of the budget)")


def utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def storable(text: str | None) -> str | None:
    """Text SQLite accepts: lone surrogates (possible in JSON input) become "?"."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")
