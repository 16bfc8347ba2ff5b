"""Fault tests (issue 13): every test here is marked ``faults`` and cleans up after itself,
whatever the bridge under test left running."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import BridgeProcess, ClientProcess, call_pids, kill_leftovers

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)
            if inspect.iscoroutinefunction(getattr(item, "function", None)):
                item.add_marker(pytest.mark.anyio)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def bridges(fake_claude: Any) -> Iterator[list[BridgeProcess]]:
    """Bridges a test started: closed at the end, and every process of their calls killed."""
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        bridge.close()
    kill_leftovers(call_pids(fake_claude))


@pytest.fixture
def clients() -> Iterator[list[ClientProcess]]:
    started: list[ClientProcess] = []
    yield started
    for client in started:
        client.close()
