"""``--compare``: this run of a definition against the last run of an earlier version.

An earlier version is a different content hash of the definition file. Only the cases
both runs have are compared. A metric is flagged when it got worse beyond the threshold:
pass rate or mean judge score down by more than ``threshold`` (0.1 = 10 points), cost
per run or p50 time up by more than ``threshold`` of the earlier value (0.1 = 10 %).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..ledger import Ledger
from . import DEFAULT_THRESHOLD
from .history import CaseRecord, last_run_of_other_version
from .summary import Summary, summarize

MetricName = Literal["pass rate", "mean score", "cost per run", "p50 time"]


@dataclass(frozen=True)
class Metric:
    name: MetricName
    before: float | None
    after: float | None
    worse: bool
    """Worse beyond the threshold."""


@dataclass(frozen=True)
class Comparison:
    kind: str
    name: str
    after_sha256: str
    before_sha256: str | None
    """None: no earlier version of this definition was tested."""
    before_at: str | None
    cases: tuple[str, ...]
    """The cases both runs have; the metrics cover only these."""
    metrics: tuple[Metric, ...]

    @property
    def regressed(self) -> bool:
        return any(metric.worse for metric in self.metrics)


def compare_with_earlier(
    ledger: Ledger, after: Sequence[CaseRecord], threshold: float = DEFAULT_THRESHOLD
) -> Comparison | None:
    """Compare ``after`` (one definition's records of this run) with the latest run of an
    earlier version; None when ``after`` is empty."""
    if not after:
        return None
    first = after[0]
    before = last_run_of_other_version(ledger, first.kind, first.name, first.definition_sha256)
    return compare(after, before, threshold)


def compare_each(
    ledger: Ledger, runs: Iterable[Sequence[CaseRecord]], threshold: float = DEFAULT_THRESHOLD
) -> list[Comparison]:
    """``compare_with_earlier`` for each definition's records of this run."""
    found = (compare_with_earlier(ledger, records, threshold) for records in runs)
    return [comparison for comparison in found if comparison is not None]


def compare(
    after: Sequence[CaseRecord], before: Sequence[CaseRecord], threshold: float
) -> Comparison:
    first = after[0]
    common = sorted({r.case_name for r in after} & {r.case_name for r in before})
    if not before or not common:
        return Comparison(first.kind, first.name, first.definition_sha256,
                          before[0].definition_sha256 if before else None,
                          before[0].recorded_at if before else None, (), ())
    now = summarize([r for r in after if r.case_name in common])
    then = summarize([r for r in before if r.case_name in common])
    return Comparison(first.kind, first.name, first.definition_sha256,
                      before[0].definition_sha256, before[0].recorded_at, tuple(common),
                      _metrics(then, now, threshold))


def _metrics(then: Summary, now: Summary, threshold: float) -> tuple[Metric, ...]:
    return (
        _lower_is_worse("pass rate", then.pass_rate, now.pass_rate, threshold),
        _lower_is_worse("mean score", then.mean_score, now.mean_score, threshold),
        _higher_is_worse("cost per run", then.cost_per_run_usd, now.cost_per_run_usd,
                         threshold),
        _higher_is_worse("p50 time", _float(then.p50_ms), _float(now.p50_ms), threshold),
    )


def _lower_is_worse(name: MetricName, before: float | None, after: float | None,
                    threshold: float) -> Metric:
    worse = before is not None and after is not None and before - after > threshold + 1e-9
    return Metric(name, before, after, worse)


def _higher_is_worse(name: MetricName, before: float | None, after: float | None,
                     threshold: float) -> Metric:
    worse = (before is not None and after is not None and before > 0
             and (after - before) / before > threshold + 1e-9)
    return Metric(name, before, after, worse)


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)
