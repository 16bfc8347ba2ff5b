"""The ledger admits calls against budgets atomically and keeps a durable row of every call.

Tests that take ``target`` or ``ledger`` run on SQLite and on PostgreSQL (skipped, with the
reason, when no server is reachable); those that take ``path`` are about the SQLite file."""

import hashlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from claude_mcp_bridge.budget import Budget, BudgetRefusal
from claude_mcp_bridge.errors import LedgerError
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation, Settlement
from claude_mcp_bridge.ledger_schema import SCHEMA_VERSION
from claude_mcp_bridge.usage import UsageRow, usage_rows
from tests.ledger_backends import expire_leases, hold_lease, on_postgres

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
NO_BUDGET = Budget()
TOOL = "agent_reviewer"

# A bridge process: opens the ledger, reserves argv[2] dollars against a $5.00 daily budget
# at argv[3], prints the call id, then holds the reservation until stdin closes.
HOLDING_CHILD = """
import sys
from datetime import datetime
from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger
ledger = Ledger.open(sys.argv[1])
start = CallStart("agent_reviewer", "agent", "reviewer.md", "0" * 64, "child", "hi")
reservation = ledger.reserve(start, float(sys.argv[2]), Budget(), Budget(daily_usd=5.0),
                             now=datetime.fromisoformat(sys.argv[3]))
print(reservation.call_id, flush=True)
sys.stdin.read()
ledger.close()
"""

# A bridge process: opens the ledger, says "ready", waits for a line, then makes argv[2]
# concurrent $0.05 reservations against a $1.00 daily budget, prints how many were admitted,
# and holds them until stdin closes.
RESERVING_CHILD = """
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation
ledger = Ledger.open(sys.argv[1])
start = CallStart("agent_reviewer", "agent", "reviewer.md", "0" * 64, "child", "hi")
now = datetime.fromisoformat(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
def reserve(_):
    return ledger.reserve(start, 0.05, Budget(), Budget(daily_usd=1.0), now=now)
with ThreadPoolExecutor(max_workers=int(sys.argv[2])) as pool:
    results = list(pool.map(reserve, range(int(sys.argv[2]))))
print(sum(isinstance(r, Reservation) for r in results), flush=True)
sys.stdin.read()
ledger.close()
"""


def call(tool: str = TOOL, prompt: str = "review this diff", *, store_prompt: bool = False
         ) -> CallStart:
    return CallStart(tool=tool, kind="agent", definition_path=".claude/agents/reviewer.md",
                     definition_sha256="0" * 64, caller="stdio/claude-code 2.1.0",
                     prompt=prompt, store_prompt=store_prompt)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ledger.sqlite3"


@pytest.fixture
def ledger(target: str) -> Iterator[Ledger]:
    with Ledger.open(target) as opened:
        yield opened


def admitted(result: Reservation | BudgetRefusal) -> Reservation:
    assert isinstance(result, Reservation), f"expected admission, got refusal: {result}"
    return result


def refused(result: Reservation | BudgetRefusal) -> BudgetRefusal:
    assert isinstance(result, BudgetRefusal), f"expected a refusal, got {result}"
    return result


def spend(ledger, usd, *, tool=TOOL, now=NOW, outcome="ok", wall_ms=1000, **settled):
    """A finished call that cost ``usd``, admitted with no budget; returns its id."""
    reservation = admitted(ledger.reserve(call(tool), usd, NO_BUDGET, NO_BUDGET, now=now))
    settlement = Settlement(outcome=outcome, cost_usd=usd, wall_ms=wall_ms, **settled)
    ledger.settle(reservation.call_id, settlement, now=now)
    return reservation.call_id


def raw(path: Path) -> "closing[sqlite3.Connection]":
    return closing(sqlite3.connect(path))


def spawn(stack: ExitStack, code: str, *args: str) -> "subprocess.Popen[str]":
    """A child python that imports this checkout; killed and reaped when the stack closes."""
    proc = stack.enter_context(subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    stack.callback(lambda: proc.poll() is None and proc.kill())
    return proc


def first_line(proc: "subprocess.Popen[str]") -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, f"the child exited (code {proc.wait(timeout=10)}) before answering; see stderr"
    return line


# --- admission is atomic -------------------------------------------------------------------


def test_fifty_concurrent_threads_against_a_nearly_spent_budget_admit_exactly_two(ledger):
    spend(ledger, 0.90)
    daily = Budget(daily_usd=1.00)
    barrier = threading.Barrier(50)

    def reserve(_: int) -> Reservation | BudgetRefusal:
        barrier.wait(timeout=10)
        return ledger.reserve(call(), 0.05, NO_BUDGET, daily, now=NOW)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(reserve, range(50)))

    assert sum(isinstance(r, Reservation) for r in results) == 2
    assert sum(isinstance(r, BudgetRefusal) for r in results) == 48
    assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(1.00)
    assert all(r.spent_usd <= 1.00 + 1e-9 for r in results if isinstance(r, BudgetRefusal))


def test_fifty_concurrent_reservations_from_five_processes_admit_exactly_two(target):
    with Ledger.open(target) as ledger:
        spend(ledger, 0.90)
    with ExitStack() as stack:
        children = [spawn(stack, RESERVING_CHILD, target, "10", NOW.isoformat())
                    for _ in range(5)]
        assert [first_line(child) for child in children] == ["ready"] * 5
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        admissions = [int(first_line(child)) for child in children]

        with Ledger.open(target) as ledger:
            outcomes = {row["outcome"]: row["n"] for row in ledger.rows(
                "SELECT outcome, COUNT(*) AS n FROM calls GROUP BY outcome")}
            assert outcomes == {"ok": 1, "running": 2, "refused": 48}
            assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(1.00)
        for child in children:
            child.communicate(input="", timeout=30)
            assert child.returncode == 0
    assert sum(admissions) == 2


def test_settling_releases_the_rest_of_a_reservation(ledger):
    spend(ledger, 0.90)
    daily = Budget(daily_usd=1.00)
    first, second = (admitted(ledger.reserve(call(), 0.05, NO_BUDGET, daily, now=NOW))
                     for _ in range(2))
    refused(ledger.reserve(call(), 0.05, NO_BUDGET, daily, now=NOW))

    for reservation in (first, second):
        ledger.settle(reservation.call_id, Settlement("ok", cost_usd=0.01), now=NOW)

    assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(0.92)
    admitted(ledger.reserve(call(), 0.05, NO_BUDGET, daily, now=NOW))
    admitted(ledger.reserve(call(), 0.03, NO_BUDGET, daily, now=NOW))  # exactly $1.00
    refused(ledger.reserve(call(), 0.01, NO_BUDGET, daily, now=NOW))


# --- which budget refuses, and what it says --------------------------------------------------


def test_a_refusal_says_what_is_spent_what_the_call_needs_and_when_it_resets(ledger):
    spend(ledger, 4.98)
    refusal = refused(ledger.reserve(call(), 0.50, NO_BUDGET, Budget(daily_usd=5.00), now=NOW))
    assert str(refusal) == ("daily budget: $4.98 of $5.00"
                            " spent or reserved ($0.02 left), this call needs up "
                            "to $0.50; resets 00:00 UTC")
    assert (refusal.spent_usd, refusal.limit_usd, refusal.requested_usd) == (4.98, 5.00, 0.50)


def test_a_tool_budget_is_named_before_the_global_one_when_both_are_spent(ledger):
    spend(ledger, 0.98)
    refusal = refused(ledger.reserve(call(), 0.05, Budget(daily_usd=1.00),
                                     Budget(daily_usd=1.00), now=NOW))
    assert str(refusal) == ("daily budget of agent_reviewer: $0.98 of $1.00"
                            " spent or reserved ($0.02 left), "
                            "this call needs up to $0.05; resets 00:00 UTC")


def test_other_tools_spend_counts_against_the_global_budget_but_not_the_tool_budget(ledger):
    spend(ledger, 4.00, tool="agent_other")
    tool_budget, global_budget = Budget(daily_usd=1.00), Budget(daily_usd=4.50)
    admitted(ledger.reserve(call(), 0.40, tool_budget, global_budget, now=NOW))
    refusal = refused(ledger.reserve(call(), 0.40, tool_budget, global_budget, now=NOW))
    assert refusal.budget == "daily budget"
    assert refusal.spent_usd == pytest.approx(4.40)
    assert ledger.spent(tool=TOOL, period="day", now=NOW) == pytest.approx(0.40)


def test_a_monthly_budget_counts_earlier_days_and_resets_on_the_first(ledger):
    spend(ledger, 0.90, now=NOW - timedelta(days=5))
    tool_budget = Budget(daily_usd=1.00, monthly_usd=1.00)
    refusal = refused(ledger.reserve(call(), 0.20, tool_budget, NO_BUDGET, now=NOW))
    assert str(refusal) == ("monthly budget of agent_reviewer: $0.90 of $1.00"
                            " spent or reserved ($0.10 left), "
                            "this call needs up to $0.20; resets on the 1st, 00:00 UTC")


def test_amounts_under_a_cent_are_shown_with_their_digits(ledger):
    spend(ledger, 0.998)
    refusal = refused(ledger.reserve(call(), 0.004, NO_BUDGET, Budget(daily_usd=1.00), now=NOW))
    assert "this call needs up to $0.004;" in str(refusal)


# --- what is reserved ------------------------------------------------------------------------


def test_an_uncapped_call_reserves_all_that_is_left_and_blocks_the_next(ledger):
    spend(ledger, 0.30)
    daily = Budget(daily_usd=1.00)
    uncapped = admitted(ledger.reserve(call(), None, NO_BUDGET, daily, now=NOW))
    assert uncapped.reserved_usd == pytest.approx(0.70)

    refused(ledger.reserve(call(), 0.01, NO_BUDGET, daily, now=NOW))
    refusal = refused(ledger.reserve(call(), None, NO_BUDGET, daily, now=NOW))
    assert str(refusal) == ("daily budget: $1.00 of $1.00"
                            " spent or reserved ($0.00 left), nothing is left for "
                            "an uncapped call; resets 00:00 UTC")

    ledger.settle(uncapped.call_id, Settlement("ok", cost_usd=0.20), now=NOW)
    assert admitted(ledger.reserve(call(), None, NO_BUDGET, daily, now=NOW)
                    ).reserved_usd == pytest.approx(0.50)


def test_an_uncapped_call_reserves_what_is_left_of_the_tightest_budget(ledger):
    reservation = admitted(ledger.reserve(call(), None, Budget(monthly_usd=0.25),
                                          Budget(daily_usd=1.00), now=NOW))
    assert reservation.reserved_usd == pytest.approx(0.25)


def test_without_any_budget_an_uncapped_call_reserves_nothing_and_a_capped_one_its_cap(ledger):
    uncapped = admitted(ledger.reserve(call(), None, NO_BUDGET, NO_BUDGET, now=NOW))
    capped = admitted(ledger.reserve(call(), 0.50, NO_BUDGET, NO_BUDGET, now=NOW))
    assert uncapped.reserved_usd is None
    assert ledger.get(uncapped.call_id)["reserved_usd"] is None
    assert capped.reserved_usd == 0.50
    assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(0.50)


# --- every call leaves a row -----------------------------------------------------------------


def test_budget_refusals_and_other_refusals_are_recorded(ledger):
    spend(ledger, 1.00)
    refusal = refused(ledger.reserve(call(), 0.05, NO_BUDGET, Budget(daily_usd=1.00), now=NOW))
    other = ledger.refuse(call(), "the bridge is busy: 4 calls running", now=NOW)

    budget_row, other_row = ledger.get(refusal.call_id), ledger.get(other)
    assert budget_row["outcome"] == "refused"
    assert budget_row["error"] == str(refusal)
    assert budget_row["reserved_usd"] is None
    assert other_row["outcome"] == "refused"
    assert other_row["error"] == "the bridge is busy: 4 calls running"
    assert other_row["tool"] == TOOL and other_row["caller"] == "stdio/claude-code 2.1.0"
    assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(1.00)


def test_settle_records_cost_tokens_turns_session_and_duration(ledger):
    reservation = admitted(ledger.reserve(call(), 0.50, NO_BUDGET, NO_BUDGET, now=NOW))
    usage = {"input_tokens": 10, "output_tokens": 20, "cache_creation_input_tokens": 30,
             "cache_read_input_tokens": 40, "server_tool_use": 1}
    ledger.settle(reservation.call_id,
                  Settlement("error", cost_usd=0.12, num_turns=3, session_id="sess-1",
                             usage=usage, error="max turns reached"),
                  now=NOW + timedelta(seconds=2.5))
    row = ledger.get(reservation.call_id)
    assert row is not None
    assert {k: row[k] for k in ("outcome", "cost_usd", "reserved_usd", "num_turns", "session_id",
                                "error", "wall_ms", "duration_ms", "started_at", "ended_at")} == {
        "outcome": "error", "cost_usd": 0.12, "reserved_usd": 0, "num_turns": 3,
        "session_id": "sess-1", "error": "max turns reached", "wall_ms": 2500,
        "duration_ms": None,
        "started_at": "2025-03-10T12:00:00.000000Z", "ended_at": "2025-03-10T12:00:02.500000Z"}
    assert [row[k] for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                             "cache_read_input_tokens")] == [10, 20, 30, 40]


def test_settling_an_unknown_or_settled_call_changes_nothing_and_warns(ledger, caplog):
    call_id = spend(ledger, 0.10)
    ledger.settle(call_id, Settlement("error", cost_usd=9.99), now=NOW)
    ledger.settle("f" * 32, Settlement("ok", cost_usd=1.00), now=NOW)

    assert ledger.get(call_id)["outcome"] == "ok"
    assert ledger.get(call_id)["cost_usd"] == 0.10
    assert ledger.get("f" * 32) is None
    assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(0.10)
    messages = [r.getMessage() for r in caplog.records]
    assert any("already ok" in m for m in messages)
    assert any("no call " + "f" * 32 in m for m in messages)


def test_the_prompt_is_stored_only_as_length_and_hash_unless_asked(ledger):
    prompt = "review the diff in src/ — carefully"
    hidden = ledger.refuse(call(prompt=prompt), "test", now=NOW)
    kept = ledger.refuse(call(prompt=prompt, store_prompt=True), "test", now=NOW)

    digest = hashlib.sha256(prompt.encode()).hexdigest()
    assert ledger.get(hidden)["prompt"] is None
    assert (ledger.get(hidden)["prompt_chars"], ledger.get(hidden)["prompt_sha256"]) == (
        len(prompt), digest)
    assert ledger.get(kept)["prompt"] == prompt


def test_a_prompt_with_a_lone_surrogate_is_still_recorded(ledger):
    call_id = ledger.refuse(call(prompt="bad \ud800 text", store_prompt=True), "test", now=NOW)
    assert ledger.get(call_id)["prompt"] == "bad ? text"


# --- UTC periods -----------------------------------------------------------------------------


def test_the_daily_budget_resets_at_midnight_utc(ledger):
    daily = Budget(daily_usd=1.00)
    last_second = datetime(2025, 3, 10, 23, 59, 59, tzinfo=UTC)
    spend(ledger, 0.90, now=last_second)
    refused(ledger.reserve(call(), 0.50, NO_BUDGET, daily, now=last_second))
    one_am_in_berlin_summer = datetime(2025, 3, 11, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    refused(ledger.reserve(call(), 0.50, NO_BUDGET, daily, now=one_am_in_berlin_summer))

    admitted(ledger.reserve(call(), 0.50, NO_BUDGET, daily, now=datetime(2025, 3, 11, tzinfo=UTC)))


def test_the_monthly_budget_resets_on_the_first_utc_including_at_new_year(ledger):
    monthly = Budget(monthly_usd=1.00)
    for last_minute, first in ((datetime(2025, 1, 31, 23, 59, tzinfo=UTC),
                                datetime(2025, 2, 1, tzinfo=UTC)),
                               (datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
                                datetime(2026, 1, 1, tzinfo=UTC))):
        spend(ledger, 0.90, now=last_minute)
        refused(ledger.reserve(call(), 0.50, NO_BUDGET, monthly, now=last_minute))
        admitted(ledger.reserve(call(), 0.50, NO_BUDGET, monthly, now=first))
        assert ledger.spent(tool=None, period="month", now=last_minute) == pytest.approx(0.90)
        assert ledger.spent(tool=None, period="month", now=first) == pytest.approx(0.50)


def test_budget_left_reports_each_global_cap_or_none(ledger):
    spend(ledger, 0.25)
    spend(ledger, 1.00, now=NOW - timedelta(days=3))
    left = ledger.budget_left(Budget(daily_usd=1.00), now=NOW)
    assert left == {"daily": pytest.approx(0.75), "monthly": None}
    assert ledger.budget_left(Budget(daily_usd=0.10, monthly_usd=2.00), now=NOW) == {
        "daily": 0.0, "monthly": pytest.approx(0.75)}


# --- crash recovery --------------------------------------------------------------------------


def test_a_call_of_a_killed_process_is_marked_interrupted_and_charged_its_reservation(target):
    with ExitStack() as stack:
        child = spawn(stack, HOLDING_CHILD, target, "0.50", NOW.isoformat())
        call_id = first_line(child)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL

    with Ledger.open(target) as ledger:  # SQLite: its process is gone, recovered at open
        expire_leases(ledger)  # PostgreSQL: once its lease runs out
        assert ledger.recover_interrupted() == (1 if on_postgres(ledger) else 0)
        row = ledger.get(call_id)
        assert row is not None
        assert row["outcome"] == "interrupted"
        assert row["reserved_usd"] == 0
        assert row["cost_usd"] == pytest.approx(0.50)  # its child may have spent up to it
        assert "ended before settling it" in row["error"]
        assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(0.50)
        assert ledger.integrity() == "ok"


def test_running_calls_of_a_live_process_are_left_alone(target):
    with ExitStack() as stack:
        child = spawn(stack, HOLDING_CHILD, target, "0.50", NOW.isoformat())
        call_id = first_line(child)
        with Ledger.open(target) as ledger:
            assert ledger.recover_interrupted() == 0
            assert ledger.get(call_id)["outcome"] == "running"
            assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(0.50)
        child.communicate(input="", timeout=30)  # the child ends without settling
        assert child.returncode == 0

    with Ledger.open(target) as ledger:  # (a clean exit gives its lease up)
        assert ledger.get(call_id)["outcome"] == "interrupted"


def test_recovery_never_touches_this_process_or_live_other_hosts_but_catches_reused_pids(
        ledger):
    ids = {name: admitted(ledger.reserve(call(), 0.10, NO_BUDGET, NO_BUDGET, now=NOW)).call_id
           for name in ("mine", "other host", "reused pid")}
    host = socket.gethostname()
    elsewhere = f"elsewhere.example:{os.getpid()}:1"
    ledger.write("UPDATE calls SET owner = ? WHERE id = ?", (elsewhere, ids["other host"]))
    ledger.write("UPDATE calls SET owner = ? WHERE id = ?",
                 (f"{host}:{os.getppid()}:999999999999", ids["reused pid"]))
    hold_lease(ledger, elsewhere)  # PostgreSQL: the other host's bridge keeps its lease

    assert ledger.recover_interrupted() == 1
    assert {name: ledger.get(i)["outcome"] for name, i in ids.items()} == {
        "mine": "running", "other host": "running", "reused pid": "interrupted"}


# --- schema ----------------------------------------------------------------------------------


def test_opening_an_existing_ledger_again_keeps_its_rows_and_records_the_schema_version(path):
    with Ledger.open(path) as ledger:
        call_id = spend(ledger, 0.10)
    with Ledger.open(path) as ledger:
        assert ledger.get(call_id)["cost_usd"] == 0.10
        assert ledger.integrity() == "ok"
    with raw(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' "
            "AND name NOT LIKE 'sqlite_%'")}
    assert indexes == {"calls_started_at", "calls_tool_started_at", "calls_outcome",
                       "calls_session_id", "calls_client_started_at"}


def test_a_ledger_from_a_newer_bridge_is_refused_with_what_to_do(path):
    Ledger.open(path).close()
    with raw(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(LedgerError, match=r"schema version 99, newer .* upgrade claude-mcp-bridge"):
        Ledger.open(path)


def test_a_file_that_is_not_a_database_is_refused_with_its_path(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match=re.escape(f"{path}: not a usable SQLite ledger")):
        Ledger.open(path)


def test_a_path_under_a_file_is_refused_with_what_to_check(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    path = tmp_path / "not-a-folder" / "ledger.sqlite3"
    with pytest.raises(LedgerError, match=r"cannot use the ledger .* check the path"):
        Ledger.open(path)


# --- usage -----------------------------------------------------------------------------------


@pytest.fixture
def history(ledger: Ledger) -> Ledger:
    day1, day2 = NOW, NOW + timedelta(days=1)
    tokens = {"input_tokens": 100, "output_tokens": 10}
    spend(ledger, 5.00, now=NOW - timedelta(days=9))  # before `since`
    spend(ledger, 0.10, now=day1, wall_ms=100, usage=tokens)
    spend(ledger, 0.20, now=day1, wall_ms=200, usage=tokens)
    spend(ledger, 0.05, now=day1, wall_ms=300, outcome="error")
    spend(ledger, 0.30, now=day1, wall_ms=1000, outcome="timeout")
    ledger.refuse(call(), "queue full", now=day1)
    spend(ledger, 0.01, tool="agent_b", now=day2, wall_ms=50)
    spend(ledger, 0.02, tool="agent_b", now=day2, wall_ms=400, outcome="cancelled")
    ledger.reserve(call("agent_b"), 0.50, NO_BUDGET, NO_BUDGET, now=day2)  # still running
    return ledger


def test_usage_by_tool_gives_success_rate_percentiles_cost_and_a_total(history):
    rows = {row.key: row for row in usage_rows(history, since=NOW - timedelta(days=1), by="tool")}
    assert list(rows) == ["agent_b", TOOL, "total"]

    reviewer, b, total = rows[TOOL], rows["agent_b"], rows["total"]
    assert (reviewer.calls, reviewer.ok, reviewer.errors, reviewer.refused) == (5, 2, 2, 1)
    assert reviewer.success_rate == 0.5
    assert (reviewer.wall_p50_ms, reviewer.wall_p95_ms) == (200, 1000)
    assert reviewer.cost_usd == pytest.approx(0.65)
    assert (reviewer.input_tokens, reviewer.output_tokens) == (200, 20)
    assert (b.calls, b.ok, b.cancelled, b.success_rate) == (3, 1, 1, pytest.approx(1 / 3))
    assert (b.wall_p50_ms, b.wall_p95_ms, b.cost_usd) == (50, 400, pytest.approx(0.03))
    assert (total.calls, total.ok, total.refused, total.success_rate) == (8, 3, 1, 3 / 7)
    assert (total.wall_p50_ms, total.wall_p95_ms, total.cost_usd) == (
        200, 1000, pytest.approx(0.68))


def test_usage_by_day_groups_calls_by_their_utc_start_date(history):
    rows = usage_rows(history, since=NOW - timedelta(days=1), by="day")
    assert [(r.key, r.calls, round(r.cost_usd, 2)) for r in rows] == [
        ("2025-03-10", 5, 0.65), ("2025-03-11", 3, 0.03), ("total", 8, 0.68)]


def test_usage_of_only_refused_calls_has_no_success_rate_or_percentiles(ledger):
    ledger.refuse(call(), "depth", now=NOW)
    (row, total) = usage_rows(ledger, since=NOW - timedelta(hours=1), by="tool")
    assert (row.calls, row.refused, row.success_rate, row.wall_p50_ms,
            row.wall_p95_ms) == (
        1, 1, None, None, None)
    assert total.key == "total"
    assert usage_rows(ledger, since=NOW + timedelta(hours=1), by="day") == [
        UsageRow("total", 0, 0, 0, 0, 0, None, None, None, 0.0, 0, 0)]


def test_a_call_keeps_its_wall_time_and_the_cli_duration_apart(ledger):
    # issue 15: a call logged "ok in 729 ms" was stored as the CLI's own 148 ms
    spend(ledger, 0.01, wall_ms=729, duration_ms=148)
    [row] = ledger.rows("SELECT wall_ms, duration_ms FROM calls")
    assert (row["wall_ms"], row["duration_ms"]) == (729, 148)
    [reviewer, _] = usage_rows(ledger, since=NOW - timedelta(hours=1), by="tool")
    assert (reviewer.wall_p50_ms, reviewer.wall_p95_ms) == (729, 729)


def test_usage_counts_a_row_from_before_wall_times_with_its_duration(ledger):
    spend(ledger, 0.01, duration_ms=300)
    ledger.write("UPDATE calls SET wall_ms = NULL", ())  # as a ledger before wall times left it
    [reviewer, _] = usage_rows(ledger, since=NOW - timedelta(hours=1), by="tool")
    assert reviewer.wall_p50_ms == 300


# --- writes made later (settlements after the answer) ----------------------------------------

def test_a_read_sees_every_settlement_queued_before_it(ledger):
    ids = [admitted(ledger.reserve(call(), 0.5, NO_BUDGET, NO_BUDGET, now=NOW)).call_id
           for _ in range(200)]
    for call_id in ids:
        ledger.later(lambda call_id=call_id: ledger.settle(
            call_id, Settlement(outcome="ok", cost_usd=0.01), now=NOW))
    assert ledger.spent(tool=None, period="day", now=NOW) == pytest.approx(2.0)
    assert ledger.get(ids[-1])["outcome"] == "ok"


def test_a_reservation_waits_for_the_settlements_queued_before_it(ledger):
    daily = Budget(daily_usd=1.0)
    held = [admitted(ledger.reserve(call(), 0.009, NO_BUDGET, daily, now=NOW)).call_id
            for _ in range(100)]  # $0.90 held
    for call_id in held:
        ledger.later(lambda call_id=call_id: ledger.settle(
            call_id, Settlement(outcome="ok", cost_usd=0.001), now=NOW))
    admitted(ledger.reserve(call(), 0.5, NO_BUDGET, daily, now=NOW))  # $0.10 spent, not 0.90


def test_closing_the_ledger_writes_everything_queued(path):
    with Ledger.open(path) as ledger:
        ids = [admitted(ledger.reserve(call(), 0.5, NO_BUDGET, NO_BUDGET, now=NOW)).call_id
               for _ in range(50)]
        for call_id in ids:
            ledger.later(lambda call_id=call_id: ledger.settle(
                call_id, Settlement(outcome="ok", cost_usd=0.01), now=NOW))
    with raw(path) as db:
        outcomes = {row[0] for row in db.execute("SELECT outcome FROM calls")}
    assert outcomes == {"ok"}


def test_a_queued_write_that_fails_is_logged_and_the_next_ones_still_run(ledger, caplog):
    ok = admitted(ledger.reserve(call(), 0.5, NO_BUDGET, NO_BUDGET, now=NOW)).call_id

    def broken() -> None:
        raise RuntimeError("boom")

    ledger.later(broken)
    ledger.later(lambda: ledger.settle(ok, Settlement(outcome="ok", cost_usd=0.2), now=NOW))
    assert ledger.get(ok)["outcome"] == "ok"
    assert "a queued ledger write failed" in caplog.text
