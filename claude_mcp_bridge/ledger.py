"""SQLite ledger: budget reservations, one durable row per call, usage queries.

A call is admitted by ``reserve``: one ``BEGIN IMMEDIATE`` transaction adds up what
each applicable budget has spent or reserved in its UTC period and inserts the call's
row, ``running`` with its cap reserved, or ``refused``. ``settle`` replaces the
reservation with the real cost. Threads of one process share one connection behind a
lock; processes sharing the file rely on SQLite's write lock (``busy_timeout`` 10 s),
so no interleaving of calls, threads or servers can spend past a budget.

A process killed mid-call leaves ``running`` rows. The next ``open`` (in any process)
marks those whose owner process is gone ``interrupted`` and releases their reservation;
rows of live processes, of this process and of other hosts are left alone.

Decisions worth knowing:

- Times are ISO-8601 UTC text with microseconds (``2025-03-10T23:59:59.000000Z``), so
  text order is time order; periods are UTC calendar days and months; a call counts
  in the period it started in. Naive datetimes are taken as UTC.
- Money is stored as REAL dollars and compared in whole micro-dollars.
- A call with a cap reserves its cap, even when no budget applies. An uncapped call
  reserves everything left of its tightest budget, so uncapped calls against a budget
  run one at a time; with no budget at all it reserves nothing.
- ``usage`` ends with a row keyed ``"total"`` over all the rows before it.
- The schema version is ``PRAGMA user_version``; ``_MIGRATIONS`` holds one step per
  version and ``open`` applies the missing ones. Version 2 adds ``test_results``: one
  row per run of an agent-test case, with the definition's content hash.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from .errors import BridgeError

logger = logging.getLogger(__name__)

Outcome = Literal["running", "ok", "error", "timeout", "cancelled", "refused", "interrupted"]
Period = Literal["day", "month"]

BUSY_TIMEOUT_S = 10.0
_MICROS = 1_000_000
_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens")
_RESETS: dict[Period, str] = {"day": "00:00 UTC", "month": "on the 1st, 00:00 UTC"}
_ADJECTIVE: dict[Period, str] = {"day": "daily", "month": "monthly"}

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE calls (
            id TEXT PRIMARY KEY,
            tool TEXT NOT NULL,
            kind TEXT NOT NULL,
            definition_path TEXT NOT NULL,
            definition_sha256 TEXT NOT NULL,
            caller TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT NOT NULL,
            reserved_usd REAL,
            cost_usd REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_creation_input_tokens INTEGER,
            cache_read_input_tokens INTEGER,
            num_turns INTEGER,
            session_id TEXT,
            error TEXT,
            prompt_chars INTEGER NOT NULL,
            prompt_sha256 TEXT NOT NULL,
            prompt TEXT,
            duration_ms INTEGER,
            owner TEXT NOT NULL
        )""",
        "CREATE INDEX calls_started_at ON calls (started_at)",
        "CREATE INDEX calls_tool_started_at ON calls (tool, started_at)",
        "CREATE INDEX calls_outcome ON calls (outcome)",
    ),
    (
        # One row per run of one agent-test case (``claude-mcp-bridge test``); ``run_id``
        # groups the rows of one invocation, ``call_id`` points at the agent's call row.
        """CREATE TABLE test_results (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            definition_path TEXT NOT NULL,
            definition_sha256 TEXT NOT NULL,
            test_file TEXT NOT NULL,
            case_name TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            failed_check TEXT,
            message TEXT,
            judge_score REAL,
            cost_usd REAL,
            judge_cost_usd REAL,
            duration_ms INTEGER,
            num_turns INTEGER,
            call_id TEXT
        )""",
        "CREATE INDEX test_results_definition ON test_results (kind, name, recorded_at)",
        "CREATE INDEX test_results_run ON test_results (run_id)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class LedgerError(BridgeError):
    """The ledger file cannot be used; the message names the file and what to do."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Budget:
    """One set of caps in USD; None means no cap. The ledger enforces the daily and monthly
    caps; ``per_call_usd`` is for whoever computes a call's cap."""

    per_call_usd: float | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None


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


@dataclass(frozen=True)
class Reservation:
    call_id: str
    reserved_usd: float | None
    """The amount held against the budgets (None: no budget applied, nothing held)."""


@dataclass(frozen=True)
class BudgetRefusal:
    """The first budget a call would overspend; the call's row is recorded as refused."""

    call_id: str
    budget: str
    spent_usd: float
    """Settled cost plus live reservations in the budget's period."""
    limit_usd: float
    requested_usd: float
    """The call's cap, or 0 for an uncapped call that found nothing left."""
    resets: str

    def __str__(self) -> str:
        left = max(0.0, self.limit_usd - self.spent_usd)
        spent = (f"{self.budget}: {_money(self.spent_usd)} of {_money(self.limit_usd)} "
                 f"spent or reserved ({_money(left)} left)")
        needs = (f", this call needs up to {_money(self.requested_usd)}"
                 if self.requested_usd > 0 else ", nothing is left for an uncapped call")
        return f"{spent}{needs}; resets {self.resets}"


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


CaseStatus = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class CaseRecord:
    """One run of one agent-test case, as stored in ``test_results``."""

    run_id: str
    kind: str
    name: str
    """The definition's name (not the tool name)."""
    definition_path: str
    definition_sha256: str
    """The content hash of the definition file the case ran against."""
    test_file: str
    case_name: str
    attempt: int
    status: CaseStatus
    failed_check: str | None = None
    message: str | None = None
    judge_score: float | None = None
    cost_usd: float | None = None
    judge_cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    call_id: str | None = None
    recorded_at: str | None = None
    """Set by the ledger when the record is stored."""


_CASE_COLUMNS = ("run_id", "recorded_at", "kind", "name", "definition_path",
                 "definition_sha256", "test_file", "case_name", "attempt", "status",
                 "failed_check", "message", "judge_score", "cost_usd", "judge_cost_usd",
                 "duration_ms", "num_turns", "call_id")


@dataclass(frozen=True)
class UsageRow:
    """Calls grouped by tool or UTC day (``key``); the last row of ``usage`` is "total"."""

    key: str
    calls: int
    ok: int
    errors: int
    """error, timeout and interrupted calls."""
    refused: int
    cancelled: int
    success_rate: float | None
    """ok / (calls - refused); None when every call was refused."""
    p50_ms: int | None
    p95_ms: int | None
    """Nearest-rank percentiles of the durations of finished, non-refused calls."""
    cost_usd: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class _Limit:
    name: str
    tool: str | None
    period: Period
    limit_usd: float


@dataclass(frozen=True)
class _Check:
    limit: _Limit
    spent_micros: int

    @property
    def left_micros(self) -> int:
        return max(0, _micros(self.limit.limit_usd) - self.spent_micros)


class Ledger:
    """One SQLite file of calls; safe to share between threads and processes."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (or create) the ledger, bring its schema up to date, recover crashed calls."""
        connection = _connect(path)
        ledger = cls(connection, path)
        try:
            ledger._migrate()
            ledger.recover_interrupted()
        except BaseException:
            connection.close()
            raise
        return ledger

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
        *, now: datetime | None = None,
    ) -> Reservation | BudgetRefusal:
        """Hold ``cap_usd`` against every applicable budget, or refuse naming the first that
        would be overspent (tool daily, tool monthly, global daily, global monthly)."""
        at = _utc(now)
        limits = _limits(start.tool, tool_budget, global_budget)
        with self._transaction() as db:
            checks = [_Check(limit, _spent_micros(db, limit.tool, limit.period, at))
                      for limit in limits]
            requested = _requested_micros(cap_usd, checks)
            failed = _first_failing(checks, requested, uncapped=cap_usd is None)
            call_id = uuid.uuid4().hex
            if failed is not None:
                refusal = _refusal(call_id, failed, requested)
                _insert(db, call_id, start, at, "refused", None, str(refusal))
                return refusal
            reserved = None if requested is None else requested / _MICROS
            _insert(db, call_id, start, at, "running", reserved, None)
            return Reservation(call_id, reserved)

    def refuse(self, start: CallStart, reason: str, *, now: datetime | None = None) -> str:
        """Record a call refused for a reason other than budget; returns its id."""
        call_id = uuid.uuid4().hex
        with self._transaction() as db:
            _insert(db, call_id, start, _utc(now), "refused", None, reason)
        return call_id

    def settle(self, call_id: str, settlement: Settlement, *, now: datetime | None = None) -> None:
        """Record how a running call ended and release its reservation."""
        if settlement.outcome == "running":
            raise ValueError(f"call {call_id}: settle needs a final outcome, got 'running'")
        at = _utc(now)
        with self._transaction() as db:
            row = db.execute("SELECT outcome, started_at FROM calls WHERE id = ?",
                             (call_id,)).fetchone()
            if row is None or row["outcome"] != "running":
                _warn_not_running(call_id, row)
                return
            _update_settled(db, call_id, settlement, at, _parse_time(row["started_at"]))

    def recover_interrupted(self) -> int:
        """Mark ``running`` rows of dead processes (on this host) ``interrupted``; returns
        how many. Rows of live processes, of this process and of other hosts stay."""
        finder = _owner(os.getpid())
        with self._transaction() as db:
            rows = db.execute("SELECT id, owner FROM calls WHERE outcome = 'running'").fetchall()
            dead = [row for row in rows
                    if row["owner"] != finder and not _owner_alive(row["owner"])]
            for row in dead:
                db.execute(
                    "UPDATE calls SET outcome = 'interrupted', reserved_usd = 0, error = ? "
                    "WHERE id = ? AND outcome = 'running'",
                    (_interrupted_message(row["owner"], finder), row["id"]))
        if dead:
            logger.warning("%s: marked %d call(s) of ended bridge processes interrupted",
                           self._path, len(dead))
        return len(dead)

    def spent(self, *, tool: str | None, period: Period, now: datetime | None = None) -> float:
        """Settled cost plus live reservations in the UTC day or month of ``now``
        (all tools when ``tool`` is None)."""
        with self._lock:
            return _spent_micros(self._db, tool, period, _utc(now)) / _MICROS

    def budget_left(
        self, global_budget: Budget, *, now: datetime | None = None
    ) -> dict[str, float | None]:
        """{"daily": ..., "monthly": ...}: what is left of each global cap (None: no cap)."""
        return {
            "daily": self._left(global_budget.daily_usd, "day", now),
            "monthly": self._left(global_budget.monthly_usd, "month", now),
        }

    def usage(self, *, since: datetime, by: Literal["tool", "day"]) -> list[UsageRow]:
        """Calls started at or after ``since``, one row per tool or UTC day (in key order),
        then a row keyed "total"."""
        with self._lock:
            rows = self._db.execute(
                "SELECT tool, started_at, outcome, duration_ms, cost_usd, input_tokens, "
                "output_tokens FROM calls WHERE started_at >= ? ORDER BY started_at",
                (_format_time(_utc(since)),)).fetchall()
        groups: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            key = row["tool"] if by == "tool" else row["started_at"][:10]
            groups.setdefault(key, []).append(row)
        return [*(_usage_row(key, groups[key]) for key in sorted(groups)),
                _usage_row("total", rows)]

    def get(self, call_id: str) -> dict[str, Any] | None:
        """The call's row as a dict, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        return None if row is None else dict(row)

    def record_case(self, record: CaseRecord, *, now: datetime | None = None) -> None:
        """Store one run of one agent-test case."""
        values = {**{c: getattr(record, c) for c in _CASE_COLUMNS},
                  "recorded_at": _format_time(_utc(now)), "message": _storable(record.message)}
        with self._transaction() as db:
            db.execute(f"INSERT INTO test_results ({', '.join(_CASE_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(_CASE_COLUMNS))})",
                       tuple(values[c] for c in _CASE_COLUMNS))

    def case_records(self, run_id: str) -> list[CaseRecord]:
        """Every record of one test run, in the order they were stored."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM test_results WHERE run_id = ? ORDER BY id",
                                    (run_id,)).fetchall()
        return [_case_record(row) for row in rows]

    def last_run_of_other_version(self, kind: str, name: str, sha256: str) -> list[CaseRecord]:
        """The records of the latest test run of this definition while its content hash was
        not ``sha256`` (an earlier version); ``[]`` when there is none."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM test_results WHERE run_id = (SELECT run_id FROM test_results "
                "WHERE kind = ? AND name = ? AND definition_sha256 != ? "
                "ORDER BY recorded_at DESC, id DESC LIMIT 1) AND kind = ? AND name = ? "
                "ORDER BY id", (kind, name, sha256, kind, name)).fetchall()
        return [_case_record(row) for row in rows]

    def integrity(self) -> str:
        """``PRAGMA integrity_check``: "ok", or what SQLite found wrong."""
        with self._lock:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def _left(self, limit_usd: float | None, period: Period, now: datetime | None) -> float | None:
        if limit_usd is None:
            return None
        return max(0.0, limit_usd - self.spent(tool=None, period=period, now=now))

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise LedgerError(self._path, (
                    f"the ledger has schema version {version}, newer than this bridge knows "
                    f"({SCHEMA_VERSION}); upgrade claude-mcp-bridge or point it at another file"))
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own int.
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(path, f"cannot open the ledger ({exc}); check the path and its "
                                "permissions") from exc
    connection.row_factory = sqlite3.Row
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits,
        # a crash of the process loses nothing. Saves about a millisecond per call.
        connection.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        connection.close()
        raise LedgerError(path, f"cannot use the ledger ({exc}); is it an SQLite file? "
                                "Move it aside to start a new one") from exc
    return connection


def _limits(tool: str, tool_budget: Budget, global_budget: Budget) -> list[_Limit]:
    """The budgets that apply, in the order a refusal names them."""
    candidates: tuple[tuple[str, str | None, Period, float | None], ...] = (
        (f"daily budget of {tool}", tool, "day", tool_budget.daily_usd),
        (f"monthly budget of {tool}", tool, "month", tool_budget.monthly_usd),
        ("daily budget", None, "day", global_budget.daily_usd),
        ("monthly budget", None, "month", global_budget.monthly_usd),
    )
    return [_Limit(name, owner, period, limit)
            for name, owner, period, limit in candidates if limit is not None]


def _requested_micros(cap_usd: float | None, checks: Sequence[_Check]) -> int | None:
    if cap_usd is not None:
        return _micros(cap_usd)
    if not checks:
        return None
    return min(check.left_micros for check in checks)


def _first_failing(checks: Iterable[_Check], requested: int | None, *, uncapped: bool
                   ) -> _Check | None:
    for check in checks:
        if uncapped and check.left_micros == 0:
            return check
        if check.spent_micros + (requested or 0) > _micros(check.limit.limit_usd):
            return check
    return None


def _refusal(call_id: str, failed: _Check, requested: int | None) -> BudgetRefusal:
    limit = failed.limit
    return BudgetRefusal(
        call_id=call_id, budget=limit.name, spent_usd=failed.spent_micros / _MICROS,
        limit_usd=limit.limit_usd, requested_usd=(requested or 0) / _MICROS,
        resets=_RESETS[limit.period])


def _spent_micros(db: sqlite3.Connection, tool: str | None, period: Period, at: datetime) -> int:
    start, end = _period_bounds(period, at)
    query = ("SELECT TOTAL(COALESCE(cost_usd, 0) + COALESCE(reserved_usd, 0)) FROM calls "
             "WHERE started_at >= ? AND started_at < ?")
    params: tuple[str, ...] = (_format_time(start), _format_time(end))
    if tool is not None:
        query += " AND tool = ?"
        params += (tool,)
    return _micros(float(db.execute(query, params).fetchone()[0]))


def _period_bounds(period: Period, at: datetime) -> tuple[datetime, datetime]:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return month, next_month


def _insert(db: sqlite3.Connection, call_id: str, start: CallStart, at: datetime,
            outcome: Outcome, reserved_usd: float | None, error: str | None) -> None:
    started = _format_time(at)
    ended = None if outcome == "running" else started
    db.execute(
        "INSERT INTO calls (id, tool, kind, definition_path, definition_sha256, caller, "
        "started_at, ended_at, outcome, reserved_usd, error, prompt_chars, prompt_sha256, "
        "prompt, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (call_id, start.tool, start.kind, start.definition_path, start.definition_sha256,
         _storable(start.caller), started, ended, outcome, reserved_usd, _storable(error),
         len(start.prompt), _sha256(start.prompt),
         _storable(start.prompt) if start.store_prompt else None, _owner(os.getpid())))


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
        (settlement.outcome, settlement.cost_usd, _format_time(at), duration,
         settlement.num_turns, settlement.session_id, _storable(settlement.error),
         *(usage.get(column) for column in _TOKEN_COLUMNS), call_id))


def _warn_not_running(call_id: str, row: sqlite3.Row | None) -> None:
    if row is None:
        logger.warning("settle: no call %s in the ledger; nothing recorded", call_id)
    else:
        logger.warning("settle: call %s is already %s; the later settlement is ignored",
                       call_id, row["outcome"])


def _case_record(row: sqlite3.Row) -> CaseRecord:
    return CaseRecord(**{column: row[column] for column in _CASE_COLUMNS})


def _usage_row(key: str, rows: Sequence[sqlite3.Row]) -> UsageRow:
    outcomes = [row["outcome"] for row in rows]
    refused = outcomes.count("refused")
    ok = outcomes.count("ok")
    durations = sorted(row["duration_ms"] for row in rows
                       if row["duration_ms"] is not None
                       and row["outcome"] not in ("running", "refused"))
    answered = len(rows) - refused
    return UsageRow(
        key=key, calls=len(rows), ok=ok,
        errors=sum(outcomes.count(o) for o in ("error", "timeout", "interrupted")),
        refused=refused, cancelled=outcomes.count("cancelled"),
        success_rate=ok / answered if answered else None,
        p50_ms=_nearest_rank(durations, 50), p95_ms=_nearest_rank(durations, 95),
        cost_usd=sum(row["cost_usd"] or 0.0 for row in rows),
        input_tokens=sum(row["input_tokens"] or 0 for row in rows),
        output_tokens=sum(row["output_tokens"] or 0 for row in rows),
    )


def _nearest_rank(ordered: Sequence[int], percent: int) -> int | None:
    if not ordered:
        return None
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


@cache
def _owner(pid: int) -> str:
    """``host:pid:start time`` of a process; the start time tells a reused pid apart."""
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"


def _owner_alive(owner: str) -> bool:
    """False only when the owner ran on this host and has certainly ended."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # not an owner we wrote: leave the row alone
    host, pid_text, started = parts
    if host != socket.gethostname():
        return True
    pid = int(pid_text)
    if Path("/proc/self/stat").exists():
        current = _start_time(pid)
        return current is not None and (not started or current == started)
    return _pid_exists(pid)


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when the process
    is gone, a zombie, or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    if fields[0] == "Z":
        return None
    return fields[19]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _interrupted_message(owner: str, finder: str) -> str:
    return (f"interrupted: the bridge process that ran this call ({owner}) ended before "
            f"settling it; found by {finder}. Its reservation is released and its cost is "
            "unknown")


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _micros(usd: float) -> int:
    return round(usd * _MICROS)


def _money(usd: float) -> str:
    if 0 < abs(usd) < 0.01:
        return "$" + f"{usd:.6f}".rstrip("0")
    return f"${usd:.2f}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _storable(text: str | None) -> str | None:
    """Text SQLite accepts: lone surrogates (possible in JSON input) become "?"."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")
