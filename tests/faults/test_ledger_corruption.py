"""A ledger with a corrupt page (issue 13, contract 5): the bridge checks it at start-up,
says it is not ready and why, refuses calls with a clear message, and ``doctor`` says what
to do. No traceback anywhere."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx2
from mcp import Client

from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation, Settlement
from tests.faults.harness import (
    assert_no_traceback,
    config_text,
    run_cli,
    start_http,
)

PROBLEM = re.compile(r"corrupt|malformed|integrity", re.I)
WHAT_TO_DO = re.compile(r"move it aside|restore|back ?up|rename|delete|remove|recover", re.I)
CONFIG = config_text(reload={"enabled": False})


def ledger_with_rows(path: Path, rows: int = 300) -> None:
    """A ledger of settled calls spanning many pages, closed (its WAL checkpointed)."""
    at = datetime.now(UTC) - timedelta(hours=1)
    with Ledger.open(path) as ledger:
        for n in range(rows):
            start = CallStart("agent_reviewer", "agent", "reviewer.md", "0" * 64, "earlier",
                              f"prompt {n} " + "p" * 2000, store_prompt=True)
            reservation = ledger.reserve(start, 0.1, Budget(), Budget(), now=at)
            assert isinstance(reservation, Reservation)
            ledger.settle(reservation.call_id, Settlement("ok", 0.01, duration_ms=5), now=at)
    assert not path.with_name(path.name + "-wal").exists() or \
        path.with_name(path.name + "-wal").stat().st_size == 0


def corrupt_a_middle_page(path: Path, page_size: int = 4096) -> None:
    pages = path.stat().st_size // page_size
    assert pages > 20, f"only {pages} pages: the ledger is too small to corrupt in the middle"
    with path.open("r+b") as f:
        f.seek((pages // 2) * page_size)
        f.write(b"\xff" * page_size)


async def test_a_corrupt_ledger_page_is_found_at_start_and_calls_are_refused(
        workspace, fake_claude, data_dir, bridges):
    workspace.agent("reviewer")
    ledger = data_dir / "ledger.sqlite3"
    ledger_with_rows(ledger)
    corrupt_a_middle_page(ledger)
    bridge = start_http(workspace, fake_claude, data_dir, config=CONFIG)
    bridges.append(bridge)
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(base_url=bridge.url) as http:
            ready = await http.get("/ready")
        async with Client(bridge.url + "/mcp", mode="legacy") as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    body = ready.json()
    assert ready.status_code == 503 and body["ready"] is False, body
    assert any("ledger" in p and PROBLEM.search(p) for p in body["problems"]), body["problems"]
    assert result.is_error, result.content[0].text
    assert "ledger" in result.content[0].text and PROBLEM.search(result.content[0].text), \
        result.content[0].text
    assert fake_claude.records() == [], "a call ran on a corrupt ledger"
    assert_no_traceback(bridge.stderr())


def test_doctor_names_the_corrupt_ledger_and_what_to_do(workspace, fake_claude, data_dir):
    workspace.agent("reviewer")
    ledger = data_dir / "ledger.sqlite3"
    ledger_with_rows(ledger)
    corrupt_a_middle_page(ledger)
    done = run_cli(workspace, fake_claude, data_dir, "doctor", config=CONFIG)
    assert done.returncode != 0, done.stdout
    [line] = [line for line in done.stdout.splitlines() if "ledger:" in line]
    assert line.startswith("[fail] ledger:"), line
    assert str(ledger) in line and PROBLEM.search(line), line
    assert WHAT_TO_DO.search(line), f"doctor does not say what to do: {line}"
    assert_no_traceback(done.stdout, done.stderr)


def test_usage_on_a_corrupt_ledger_says_what_is_wrong_without_a_traceback(
        workspace, fake_claude, data_dir):
    workspace.agent("reviewer")
    ledger = data_dir / "ledger.sqlite3"
    ledger_with_rows(ledger)
    corrupt_a_middle_page(ledger)
    done = run_cli(workspace, fake_claude, data_dir, "usage", "--json", config=CONFIG)
    assert done.returncode != 0, done.stdout[:500]
    assert str(ledger) in done.stderr and PROBLEM.search(done.stderr), done.stderr
    assert_no_traceback(done.stderr)
