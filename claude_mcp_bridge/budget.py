"""Budget arithmetic: which caps apply to a call, what it must hold, which cap it would break.

Pure: no I/O. The ledger adds up what each period has spent and asks this module.

- Periods are UTC calendar days and months; a call counts in the period it started in.
- Money is compared in whole micro-dollars.
- A call with a cap reserves its cap. An uncapped call reserves everything left of its
  tightest budget, so uncapped calls against a budget run one at a time; with no budget
  at all it reserves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .outcomes import Refusal

Period = Literal["day", "month"]

MICROS = 1_000_000
_RESETS: dict[Period, str] = {"day": "00:00 UTC", "month": "on the 1st, 00:00 UTC"}


@dataclass(frozen=True)
class Budget:
    """One set of caps in USD; None means no cap. The ledger enforces the daily and monthly
    caps; ``per_call_usd`` is for whoever computes a call's cap."""

    per_call_usd: float | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None


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
        spent = (f"{self.budget}: {money(self.spent_usd)} of {money(self.limit_usd)} "
                 f"spent or reserved ({money(left)} left)")
        needs = (f", this call needs up to {money(self.requested_usd)}"
                 if self.requested_usd > 0 else ", nothing is left for an uncapped call")
        return f"{spent}{needs}; resets {self.resets}"

    def refusal(self) -> Refusal:
        return Refusal("budget", str(self))


@dataclass(frozen=True)
class Limit:
    """One cap that applies to a call: a tool's, a client's or the global one, per day or
    month. The ledger sums the calls of its ``tool`` or ``client`` (all calls: neither)."""

    name: str
    tool: str | None
    period: Period
    limit_usd: float
    client: str | None = None


@dataclass(frozen=True)
class Check:
    """A cap and what its period has spent or reserved so far."""

    limit: Limit
    spent_micros: int

    @property
    def left_micros(self) -> int:
        return max(0, micros(self.limit.limit_usd) - self.spent_micros)


def applicable_limits(tool: str, tool_budget: Budget, global_budget: Budget,
                      client: str | None = None, client_budget: Budget | None = None
                      ) -> list[Limit]:
    """The budgets that apply, in the order a refusal names them: the tool's, the
    client's, the global ones."""
    mine = client_budget if client is not None and client_budget is not None else Budget()
    candidates: tuple[tuple[str, str | None, str | None, Period, float | None], ...] = (
        (f"daily budget of {tool}", tool, None, "day", tool_budget.daily_usd),
        (f"monthly budget of {tool}", tool, None, "month", tool_budget.monthly_usd),
        (f"daily budget of client {client}", None, client, "day", mine.daily_usd),
        (f"monthly budget of client {client}", None, client, "month", mine.monthly_usd),
        ("daily budget", None, None, "day", global_budget.daily_usd),
        ("monthly budget", None, None, "month", global_budget.monthly_usd),
    )
    return [Limit(name, owner, period, limit, who)
            for name, owner, who, period, limit in candidates if limit is not None]


def requested_micros(cap_usd: float | None, checks: Sequence[Check]) -> int | None:
    """What a call holds: its cap, or (uncapped) all that is left of its tightest budget."""
    if cap_usd is not None:
        return micros(cap_usd)
    if not checks:
        return None
    return min(check.left_micros for check in checks)


def first_failing(checks: Iterable[Check], requested: int | None, *, uncapped: bool
                  ) -> Check | None:
    for check in checks:
        if uncapped and check.left_micros == 0:
            return check
        if check.spent_micros + (requested or 0) > micros(check.limit.limit_usd):
            return check
    return None


def budget_refusal(call_id: str, failed: Check, requested: int | None) -> BudgetRefusal:
    limit = failed.limit
    return BudgetRefusal(
        call_id=call_id, budget=limit.name, spent_usd=failed.spent_micros / MICROS,
        limit_usd=limit.limit_usd, requested_usd=(requested or 0) / MICROS,
        resets=_RESETS[limit.period])


def period_bounds(period: Period, at: datetime) -> tuple[datetime, datetime]:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return month, next_month


def micros(usd: float) -> int:
    return round(usd * MICROS)


def money(usd: float) -> str:
    if 0 < abs(usd) < 0.01:
        return "$" + f"{usd:.6f}".rstrip("0")
    return f"${usd:.2f}"
