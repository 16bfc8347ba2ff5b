"""A ledger shared through PostgreSQL: bridges in several processes (and hosts) share
budgets exactly, recover each other's calls only when a lease runs out, and serve each
other's kept answers. Skipped, with the reason, when no server is reachable."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from claude_mcp_bridge.answers import LedgerAnswers, kept_answers
from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation
from claude_mcp_bridge.outcomes import Reply
from claude_mcp_bridge.processes import Identity
from tests.ledger_backends import expire_leases, hold_lease, postgres_schema
from tests.support import pid_alive

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 3.0

# A bridge: opens the ledger, says "ready", waits for "go", then runs argv[2] callers at once,
# each making 10 calls (cap $0.05) against a $0.50 daily budget and settling every admitted
# one at a cost between $0.01 and $0.05; prints "<charged> <admitted> <refused>".
CALLING_BRIDGE = """
import random, sys, threading
from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation, Settlement
ledger = Ledger.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
charged, admitted, refused, lock = [], [], [], threading.Lock()
def caller(n):
    rng = random.Random(n)
    for i in range(10):
        start = CallStart("agent_reviewer", "agent", "r.md", "0" * 64, f"caller {n}", "hi")
        r = ledger.reserve(start, 0.05, Budget(), Budget(daily_usd=0.50))
        if not isinstance(r, Reservation):
            with lock: refused.append(r)
            continue
        cost = round(rng.uniform(0.01, 0.05), 4)
        ledger.settle(r.call_id, Settlement("ok", cost))
        with lock: charged.append(cost); admitted.append(r)
threads = [threading.Thread(target=caller, args=(sys.argv[3] + str(n),))
           for n in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
print(sum(charged), len(admitted), len(refused), flush=True)
ledger.close()
"""

# A bridge on another host (its host name says so): reserves $0.50, starts a child, records
# it and a reported cost of $0.20, prints "<call id> <child pid>", then holds the call.
BRIDGE_ELSEWHERE = """
import socket, subprocess, sys
socket.gethostname = lambda: "other-host.example"
from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger
from claude_mcp_bridge.processes import Identity
ledger = Ledger.open(sys.argv[1], lease_s=float(sys.argv[2]))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
start = CallStart("agent_reviewer", "agent", "r.md", "0" * 64, "elsewhere", "hi")
reservation = ledger.reserve(start, 0.50, Budget(), Budget(daily_usd=5.0))
ledger.note_child(reservation.call_id, Identity.of(child.pid))
ledger.note_cost(reservation.call_id, 0.20)
print(reservation.call_id, child.pid, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_schema() as opened:
        yield opened


def spawn(stack: ExitStack, code: str, *args: str) -> "subprocess.Popen[str]":
    proc = stack.enter_context(subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    stack.callback(lambda: proc.poll() is None and proc.kill())
    return proc


def line(proc: "subprocess.Popen[str]") -> str:
    assert proc.stdout is not None
    text = proc.stdout.readline().strip()
    assert text, f"the bridge exited (code {proc.wait(timeout=10)}) before answering"
    return text


def sleeper(stack: ExitStack) -> Identity:
    proc = stack.enter_context(subprocess.Popen([sys.executable, "-c",
                                                 "import time; time.sleep(300)"]))
    stack.callback(lambda: proc.poll() is None and proc.kill())
    identity = Identity.of(proc.pid)
    assert identity is not None
    return identity


def start() -> CallStart:
    return CallStart("agent_reviewer", "agent", "r.md", "0" * 64, "test", "hi")


def test_two_bridges_with_five_callers_never_charge_past_one_daily_budget(url):
    with ExitStack() as stack:
        bridges = [spawn(stack, CALLING_BRIDGE, url, "3", "a"),
                   spawn(stack, CALLING_BRIDGE, url, "2", "b")]
        assert [line(b) for b in bridges] == ["ready", "ready"]
        for bridge in bridges:
            assert bridge.stdin is not None
            bridge.stdin.write("go\n")
            bridge.stdin.flush()
        results = [line(b).split() for b in bridges]
        for bridge in bridges:
            assert bridge.wait(timeout=30) == 0

    charged = sum(float(r[0]) for r in results)
    assert sum(int(r[1]) + int(r[2]) for r in results) == 50
    assert sum(int(r[2]) for r in results) > 0, "the budget never bound: the test proves nothing"
    with Ledger.open(url) as ledger:
        assert ledger.spent(tool=None, period="day") == pytest.approx(charged, abs=1e-9)
        assert charged <= 0.50 + 1e-9
        outcomes = {r["outcome"]: r["n"] for r in ledger.rows(
            "SELECT outcome, COUNT(*) AS n FROM calls GROUP BY outcome")}
    assert sum(outcomes.values()) == 50 and "running" not in outcomes


def test_a_killed_bridge_on_another_host_is_recovered_by_another_once_its_lease_runs_out(url):
    with ExitStack() as stack, Ledger.open(url, lease_s=LEASE_S) as survivor:
        elsewhere = spawn(stack, BRIDGE_ELSEWHERE, url, str(LEASE_S))
        call_id, child_pid = line(elsewhere).split()
        stack.callback(lambda: pid_alive(int(child_pid)) and os.kill(int(child_pid), 9))
        time.sleep(LEASE_S * 1.5)  # longer than one lease: only renewals keep it
        assert survivor.recover_interrupted() == 0
        assert survivor.get(call_id)["outcome"] == "running"

        elsewhere.send_signal(signal.SIGKILL)
        assert elsewhere.wait(timeout=10) == -signal.SIGKILL
        assert survivor.recover_interrupted() == 0  # its lease has not run out yet

        deadline = time.monotonic() + LEASE_S * 4
        while survivor.get(call_id)["outcome"] == "running":  # the survivor's lease thread
            assert time.monotonic() < deadline, "not recovered after the lease ran out"
            time.sleep(0.1)
        row = survivor.get(call_id)
        assert row["outcome"] == "interrupted"
        assert (row["cost_usd"], row["reserved_usd"]) == (pytest.approx(0.20), 0)
        assert "other-host.example" in row["error"]
        assert pid_alive(int(child_pid)), "a child on another host must never be signalled"
        assert survivor.spent(tool=None, period="day") == pytest.approx(0.20)


def test_a_live_lease_protects_a_same_host_owner_whose_pid_looks_gone(url):
    with Ledger.open(url) as ledger:
        reservation = ledger.reserve(start(), 0.30, Budget(), Budget())
        assert isinstance(reservation, Reservation)
        owner = f"{socket.gethostname()}:999999999:1.00"  # no such pid here
        ledger.write("UPDATE calls SET owner = ? WHERE id = ?", (owner, reservation.call_id))
        hold_lease(ledger, owner)
        assert ledger.recover_interrupted() == 0  # a shared ledger trusts leases, not pids
        expire_leases(ledger)
        assert ledger.recover_interrupted() == 1
        assert ledger.get(reservation.call_id)["cost_usd"] == pytest.approx(0.30)


def test_recovery_ends_a_same_host_child_only_when_its_identity_matches(url):
    with ExitStack() as stack, Ledger.open(url) as ledger:
        matching, reused = sleeper(stack), sleeper(stack)
        ids = []
        for child in (matching, Identity(reused.pid, reused.created + 100)):
            reservation = ledger.reserve(start(), 0.10, Budget(), Budget())
            assert isinstance(reservation, Reservation)
            ledger.note_child(reservation.call_id, child)
            ledger.write("UPDATE calls SET owner = ? WHERE id = ?",
                         (f"{socket.gethostname()}:999999999:1.00", reservation.call_id))
            ids.append(reservation.call_id)
        assert ledger.recover_interrupted(grace_s=5) == 2  # no lease at all: gone
        assert not pid_alive(matching.pid)
        assert pid_alive(reused.pid)
        assert {ledger.get(i)["outcome"] for i in ids} == {"interrupted"}


def test_any_bridge_serves_the_answers_another_kept(url, tmp_path):
    with Ledger.open(url) as first, Ledger.open(url) as second:
        kept = kept_answers(first, tmp_path / "unused")
        assert isinstance(kept, LedgerAnswers)
        kept.keep_reply("job1", Reply("the answer", {"n": 1}, is_error=False))
        assert kept.keep_text("call1", "whole \x00 text") == "bridge://results/call1"
        other = kept_answers(second, tmp_path / "unused")
        assert other.reply("job1") == Reply("the answer", {"n": 1}, False)
        assert other.full_text("call1") == "whole ? text"
        assert other.reply("call1") is None and other.full_text("job1") is None
    assert not (tmp_path / "unused").exists()


def test_both_schemas_have_the_same_tables_and_columns(url, tmp_path):
    Ledger.open(tmp_path / "ledger.sqlite3").close()
    with Ledger.open(url) as ledger:
        pg = {(r["table_name"], r["column_name"]) for r in ledger.rows(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name IN ('calls', 'test_results')")}
    with closing(sqlite3.connect(tmp_path / "ledger.sqlite3")) as db:
        lite = {(table, row[1]) for table in ("calls", "test_results")
                for row in db.execute(f"PRAGMA table_info({table})")}
    assert pg == lite
