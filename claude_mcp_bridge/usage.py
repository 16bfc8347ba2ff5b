"""Usage analytics from the ledger, as a report for `usage`, `--json` and `bridge://usage`."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .ledger import Budget, Ledger

USAGE_URI = "bridge://usage"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime | None:
    """``7d`` / ``12h`` / ``30m`` -> the UTC moment that long ago; None if unreadable."""
    match = _SINCE.match(text)
    if match is None:
        return None
    amount, unit = float(match[1]), match[2]
    return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})


def usage_report(
    ledger: Ledger, budget: Budget, *, since: datetime, by: Literal["tool", "day"]
) -> dict[str, Any]:
    rows = [asdict(row) for row in ledger.usage(since=since, by=by)]
    return {
        "since": since.isoformat(timespec="seconds"),
        "by": by,
        "rows": [row for row in rows if row["key"] != "total"],
        "total": next((row for row in rows if row["key"] == "total"), None),
        "budget_left": ledger.budget_left(budget),
    }


def usage_resource(ledger: Ledger, budget: Budget) -> str:
    since = datetime.now(UTC) - timedelta(days=7)
    return json.dumps(usage_report(ledger, budget, since=since, by="tool"), indent=2)


def usage_text(report: dict[str, Any]) -> str:
    header = f"{report['by']:<32} {'calls':>6} {'ok %':>6} {'p50 s':>7} {'p95 s':>7} {'cost $':>9}"
    lines = [f"since {report['since']}", header]
    for row in [*report["rows"], *([report["total"]] if report["total"] else [])]:
        lines.append(
            f"{str(row['key'])[:32]:<32} {row['calls']:>6} {_pct(row['success_rate']):>6} "
            f"{_secs(row['p50_ms']):>7} {_secs(row['p95_ms']):>7} {row['cost_usd']:>9.4f}")
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
