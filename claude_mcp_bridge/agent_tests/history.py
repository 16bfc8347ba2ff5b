"""Agent-test history: one ledger row per run of one case (table ``test_results``), and
the queries ``--compare`` needs: a run's records, and the last run of an earlier version
of a definition (by content hash)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..ledger import Ledger, format_time, storable, utc

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


def record_case(ledger: Ledger, record: CaseRecord, *, now: datetime | None = None) -> None:
    """Store one run of one agent-test case."""
    values = {**{c: getattr(record, c) for c in _CASE_COLUMNS},
              "recorded_at": format_time(utc(now)), "message": storable(record.message)}
    ledger.write(f"INSERT INTO test_results ({', '.join(_CASE_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(_CASE_COLUMNS))})",
                 tuple(values[c] for c in _CASE_COLUMNS))


def case_records(ledger: Ledger, run_id: str) -> list[CaseRecord]:
    """Every record of one test run, in the order they were stored."""
    rows = ledger.rows("SELECT * FROM test_results WHERE run_id = ? ORDER BY id", (run_id,))
    return [_case_record(row) for row in rows]


def last_run_of_other_version(ledger: Ledger, kind: str, name: str,
                              sha256: str) -> list[CaseRecord]:
    """The records of the latest test run of this definition while its content hash was
    not ``sha256`` (an earlier version); ``[]`` when there is none."""
    rows = ledger.rows(
        "SELECT * FROM test_results WHERE run_id = (SELECT run_id FROM test_results "
        "WHERE kind = ? AND name = ? AND definition_sha256 != ? "
        "ORDER BY recorded_at DESC, id DESC LIMIT 1) AND kind = ? AND name = ? "
        "ORDER BY id", (kind, name, sha256, kind, name))
    return [_case_record(row) for row in rows]


def _case_record(row: Mapping[str, Any]) -> CaseRecord:
    return CaseRecord(**{column: row[column] for column in _CASE_COLUMNS})
