"""What a benchmark run was asked for: quick or full, a config to pass through, the real CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .workspace import REPO

REAL_CLAUDE_VAR = "CLAUDE_MCP_BRIDGE_REAL_CLAUDE"
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Options:
    quick: bool = False
    """Fewer samples: the whole suite in under a minute, for a smoke check."""
    config: Path | None = None
    """A config file for the bridges of the call-latency benchmark (e.g. with ``[warm]``)."""
    baseline: str | None = None
    """A git revision whose bridge is measured beside this one (latency, scale)."""

    def count(self, full: N, quick: N) -> N:
        """``quick`` with --quick, else ``full`` (a number of samples, a duration...)."""
        return quick if self.quick else full


def real_claude() -> Path | None:
    """The real CLI: ``$CLAUDE_MCP_BRIDGE_REAL_CLAUDE``, else the copy ``.ci/run`` installs."""
    configured = os.environ.get(REAL_CLAUDE_VAR)
    path = Path(configured) if configured else (
        REPO / ".cache" / "claude-cli" / "node_modules" / ".bin" / "claude")
    return path if path.is_file() and os.access(path, os.X_OK) else None
