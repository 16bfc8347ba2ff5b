"""Fixtures of the bridge's tests: the ledger on each of its databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ledger_backends import BACKENDS, ledger_target


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger's SQLite path or PostgreSQL URL (skipped without a server)."""
    with ledger_target(request.param, tmp_path) as opened:
        yield opened
