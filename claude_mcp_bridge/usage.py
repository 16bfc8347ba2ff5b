"""Usage analytics from the ledger's call rows: a report for `usage`, `--json` and
`bridge://usage`, and the per-tool history that nudges the router."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .budget import Budget
from .decisions import decision_counts
from .ledger import Ledger, format_time, utc

USAGE_URI = "bridge://usage"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


Grouping = Literal["tool", "day", "client"]
NO_CLIENT = "(owner)"
"""The ``--by client`` key of calls made without a client token (stdio, the single token)."""


@dataclass(frozen=True)
class UsageRow:
    """Calls grouped by tool, UTC day or client (``key``); the last row of ``usage`` is
    "total"."""

    key: str
    calls: int
    ok: int
    errors: int
    """error, timeout and interrupted calls."""
    refused: int
    cancelled: int
    success_rate: float | None
    """ok / (calls - refused); None when every call was refused."""
    wall_p50_ms: int | None
    wall_p95_ms: int | None
    """Nearest-rank percentiles of the wall times (start to answer, the queue and the CLI's
    start-up included) of finished, non-refused calls; a row from before ledger version 4
    counts with its ``duration_ms``."""
    cost_usd: float
    input_tokens: int
    output_tokens: int


def usage_rows(ledger: Ledger, *, since: datetime, by: Grouping,
               client: str | None = None) -> list[UsageRow]:
    """Calls started at or after ``since`` (only ``client``'s, when given), one row per
    tool, UTC day or client (in key order), then a row keyed "total"."""
    query = ("SELECT tool, started_at, outcome, COALESCE(wall_ms, duration_ms) AS wall_ms, "
             "cost_usd, input_tokens, "
             "output_tokens, client FROM calls WHERE started_at >= ?")
    params: tuple[str, ...] = (format_time(utc(since)),)
    if client is not None:
        query, params = query + " AND client = ?", (*params, client)
    rows = ledger.rows(query + " ORDER BY started_at", params)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_key(row, by), []).append(row)
    return [*(_usage_row(key, groups[key]) for key in sorted(groups)),
            _usage_row("total", rows)]


def _key(row: Mapping[str, Any], by: Grouping) -> str:
    if by == "client":
        return str(row["client"] or NO_CLIENT)
    return str(row["tool"] if by == "tool" else row["started_at"][:10])


def tool_history(ledger: Ledger, *, days: int = 30) -> dict[str, tuple[int, int]]:
    """(successful, finished) calls per tool over the last ``days`` days."""
    since = datetime.now(UTC) - timedelta(days=days)
    return {row.key: (row.ok, row.calls - row.refused)
            for row in usage_rows(ledger, since=since, by="tool") if row.key != "total"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime | None:
    """``7d`` / ``12h`` / ``30m`` -> the UTC moment that long ago; None if unreadable."""
    match = _SINCE.match(text)
    if match is None:
        return None
    amount, unit = float(match[1]), match[2]
    return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})


def usage_report(
    ledger: Ledger, budget: Budget, *, since: datetime, by: Grouping,
    client: str | None = None,
) -> dict[str, Any]:
    rows = [asdict(row) for row in usage_rows(ledger, since=since, by=by, client=client)]
    return {
        "since": since.isoformat(timespec="seconds"),
        "by": by,
        "rows": [row for row in rows if row["key"] != "total"],
        "total": next((row for row in rows if row["key"] == "total"), None),
        "budget_left": ledger.budget_left(budget),
        "permissions": decision_counts(ledger, since=since),
    }


def usage_resource(ledger: Ledger, budget: Budget, client: str | None = None) -> str:
    """``bridge://usage``: the last 7 days per tool; a client sees only its own calls."""
    since = datetime.now(UTC) - timedelta(days=7)
    return json.dumps(usage_report(ledger, budget, since=since, by="tool", client=client),
                      indent=2)


def usage_text(report: dict[str, Any]) -> str:
    header = (f"{report['by']:<32} {'calls':>6} {'ok %':>6} {'wall p50 s':>10} "
              f"{'wall p95 s':>10} {'cost $':>9}")
    lines = [f"since {report['since']}", header]
    for row in [*report["rows"], *([report["total"]] if report["total"] else [])]:
        lines.append(
            f"{str(row['key'])[:32]:<32} {row['calls']:>6} {_pct(row['success_rate']):>6} "
            f"{_secs(row['wall_p50_ms']):>10} {_secs(row['wall_p95_ms']):>10} "
            f"{row['cost_usd']:>9.4f}")
    for tool, counts in report.get("permissions", {}).items():
        who = ", ".join(f"{k[3:]} {v}" for k, v in sorted(counts.items()) if k.startswith("by_"))
        lines.append(f"permissions {tool}: allowed {counts['allow']}, denied {counts['deny']} "
                     f"({who})")
    left = report["budget_left"]
    lines.append("budget left: today " + _money(left.get("daily")) +
                 ", this month " + _money(left.get("monthly")))
    return "\n".join(lines)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}"


def _secs(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"


def _money(amount: float | None) -> str:
    return "no cap" if amount is None else f"${amount:.2f}"


def _usage_row(key: str, rows: Sequence[Mapping[str, Any]]) -> UsageRow:
    outcomes = [row["outcome"] for row in rows]
    refused = outcomes.count("refused")
    ok = outcomes.count("ok")
    durations = sorted(row["wall_ms"] for row in rows
                       if row["wall_ms"] is not None
                       and row["outcome"] not in ("running", "refused"))
    answered = len(rows) - refused
    return UsageRow(
        key=key, calls=len(rows), ok=ok,
        errors=sum(outcomes.count(o) for o in ("error", "timeout", "interrupted")),
        refused=refused, cancelled=outcomes.count("cancelled"),
        success_rate=ok / answered if answered else None,
        wall_p50_ms=_nearest_rank(durations, 50), wall_p95_ms=_nearest_rank(durations, 95),
        cost_usd=sum(row["cost_usd"] or 0.0 for row in rows),
        input_tokens=sum(row["input_tokens"] or 0 for row in rows),
        output_tokens=sum(row["output_tokens"] or 0 for row in rows),
    )


def _nearest_rank(ordered: Sequence[int], percent: int) -> int | None:
    if not ordered:
        return None
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]
