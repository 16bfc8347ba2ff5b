"""The scheduling demo's one command runs offline, end to end, and leaves the bookings it
describes in the calendar store."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.real_cli.support import EXAMPLE

pytestmark = pytest.mark.real_cli


def test_run_demo_books_moves_and_delegates(claude_bin):
    done = subprocess.run([sys.executable, str(EXAMPLE / "run_demo.py"), "--claude",
                           str(claude_bin)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "ERROR" not in out
    calendar = out.split("== the calendar store on", 1)[1]
    assert "room-a  12:00-13:00  Planning       confirmed  attendees: alice" in calendar, out
    assert "alice   14:00-14:30  Design review  confirmed  attendees: bob" in calendar
    # the booking made two bridges deep, and both bridges' calls in the shared ledger
    assert "[calendar-clerk] calls mcp__calendar__create_event" in out
    assert "create_event -> event 4 confirmed: 'Planning' on room-a" in out
    ledger = out.split("== the ledger both bridges share", 1)[1]
    assert "agent_calendar-clerk                  1" in ledger
    assert "agent_scheduler                       2" in ledger
