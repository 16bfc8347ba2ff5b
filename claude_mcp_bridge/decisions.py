"""The ledger's record of permission decisions: one row per prompt a child made, and the
counts per tool that ``usage`` shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .approvals import DecisionRecord
from .ledger import Ledger, format_time, storable, utc


def record_decision(ledger: Ledger, tool: str, record: DecisionRecord) -> None:
    ledger.write(
        "INSERT INTO decisions (call_id, tool, decided_at, tool_name, summary, decider, "
        "decision, reason, question_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.call_id, tool, format_time(datetime.now(UTC)), record.tool_name,
         storable(record.summary) or "", record.decider, record.decision,
         storable(record.reason), record.question_id))


def call_decisions(ledger: Ledger, call_id: str) -> list[dict[str, Any]]:
    rows = ledger.rows(
        "SELECT tool_name, summary, decider, decision, reason FROM decisions "
        "WHERE call_id = ? ORDER BY id", (call_id,))
    return [dict(row) for row in rows]


def decision_counts(ledger: Ledger, *, since: datetime) -> dict[str, dict[str, int]]:
    """Per tool: allowed, denied, and how many each decider made."""
    rows = ledger.rows(
        "SELECT tool, decider, decision, count(*) AS n FROM decisions WHERE decided_at >= ? "
        "GROUP BY tool, decider, decision ORDER BY tool", (format_time(utc(since)),))
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        tool = counts.setdefault(row["tool"], {"allow": 0, "deny": 0})
        tool[row["decision"]] = tool.get(row["decision"], 0) + row["n"]
        tool[f"by_{row['decider']}"] = tool.get(f"by_{row['decider']}", 0) + row["n"]
    return counts
