"""Records of case runs -> the numbers a report shows and a comparison weighs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .history import CaseRecord


@dataclass(frozen=True)
class Summary:
    runs: int
    passed: int
    failed: int
    errors: int
    pass_rate: float | None
    """passed / runs; None without runs."""
    mean_score: float | None
    """Mean judge score over the runs that were judged."""
    cost_usd: float
    """What the agent cost over all runs (judging not included)."""
    judge_cost_usd: float
    cost_per_run_usd: float | None
    p50_ms: int | None
    """Nearest-rank median duration of the runs that ran."""


def summarize(records: Sequence[CaseRecord]) -> Summary:
    statuses = [r.status for r in records]
    scores = [r.judge_score for r in records if r.judge_score is not None]
    cost = sum(r.cost_usd or 0.0 for r in records)
    durations = sorted(r.duration_ms for r in records if r.duration_ms is not None)
    return Summary(
        runs=len(records),
        passed=statuses.count("passed"),
        failed=statuses.count("failed"),
        errors=statuses.count("error"),
        pass_rate=statuses.count("passed") / len(records) if records else None,
        mean_score=sum(scores) / len(scores) if scores else None,
        cost_usd=cost,
        judge_cost_usd=sum(r.judge_cost_usd or 0.0 for r in records),
        cost_per_run_usd=cost / len(records) if records else None,
        p50_ms=durations[max(1, math.ceil(len(durations) / 2)) - 1] if durations else None,
    )
