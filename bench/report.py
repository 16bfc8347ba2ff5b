"""Figures -> Markdown: percentiles, one table per benchmark, and the verdict on its target."""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def p95(samples: Sequence[float]) -> float:
    return percentile(samples, 95)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


@dataclass
class Table:
    """One benchmark's results: a title, a Markdown table and what it was held to."""

    title: str
    header: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def target(self, name: str, met: bool, figure: str) -> None:
        self.verdicts.append(f"{'met' if met else 'MISSED'}: {name} ({figure})")

    def markdown(self) -> str:
        lines = [f"### {self.title}", "",
                 "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines.append("")
        lines += [f"- {verdict}" for verdict in self.verdicts]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def machine() -> str:
    import os

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs "
            f"(load average {load} at the end), "
            f"Python {platform.python_version()}, mcp {version('mcp')}, "
            f"claude-mcp-bridge {version('claude-mcp-bridge')}")
