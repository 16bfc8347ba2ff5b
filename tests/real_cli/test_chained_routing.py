"""Chained routing for real: an MCP client calls the bridge, the bridge runs the real CLI as the
demo's `scheduler`, and that CLI starts the demo calendar server from the forwarded MCP config
and calls it. One level (scheduler -> calendar) and two (scheduler -> bridge -> calendar-clerk ->
calendar). The bridge is the real `claude-mcp-bridge serve` process, driven by the SDK's stdio
client; the assertions are on the calendar's SQLite store, the ledger and the recorded requests.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from claude_mcp_bridge.forwarding import forwarded_mcp
from claude_mcp_bridge.ledger import Ledger
from claude_mcp_bridge.usage import usage_rows
from tests.real_cli.support import (
    DEMO_MCP_SERVER,
    EXAMPLE,
    RealCli,
    bridge_settings,
    call,
    example_module,
)

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

DAY = "2026-03-10"
FIND = {"name": "mcp__calendar__find_slots",
        "input": {"calendars": ["alice", "bob"], "date": DAY, "duration_minutes": 30}}
CREATE = {"name": "mcp__calendar__create_event",
          "input": {"calendar": "alice", "title": "Design review", "start": f"{DAY}T09:30",
                    "duration_minutes": 30, "attendees": ["bob"]}}
BRIEF = "Book 'Design review', 30 minutes, alice with bob, on 2026-03-10, first free slot."


@pytest.fixture
def store(tmp_path):
    """The calendar store, with bob busy 09:00-09:30 so the first free slot is 09:30."""
    calendar_store = example_module("calendar_store")
    opened = calendar_store.CalendarStore.open(tmp_path / "calendar.sqlite3")
    opened.create("bob", "Standup", datetime(2026, 3, 10, 9, 0), 30)
    return opened


def serve_params(real: RealCli, tmp_path: Path, store, *extra: str) -> StdioServerParameters:
    env = real.env(CLAUDE_MCP_BRIDGE_CLAUDE_BIN=str(real.shim),
                   CLAUDE_MCP_BRIDGE_DATA_DIR=str(tmp_path / "data"),
                   CALENDAR_DB=str(store.path))
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "claude_mcp_bridge", "serve", "--project-dir", str(EXAMPLE),
              "--strict-mcp-config", *extra],
        env=env)


async def schedule(params: StdioServerParameters, real: RealCli):
    with anyio.fail_after(60):
        async with Client(params) as client:
            return await client.call_tool("agent_scheduler", {"prompt": BRIEF},
                                          progress_callback=real.on_progress)


def ledger_calls(tmp_path: Path) -> dict[str, int]:
    with Ledger.open(tmp_path / "data" / "ledger.sqlite3") as ledger:
        rows = usage_rows(ledger, since=datetime.now(UTC) - timedelta(hours=1), by="tool")
    return {row.key: row.ok for row in rows if row.key != "total"}


def the_booking(store) -> list[tuple[str, str, str, tuple[str, ...], str]]:
    return [(e.title, e.start, e.end, e.attendees, e.status)
            for e in store.events("alice", date(2026, 3, 10))]


async def test_the_scheduler_books_through_the_calendar_server_it_was_forwarded(
        real_cli, tmp_path, store):
    real_cli.server.add({"tool_use": FIND}, {"tool_use": CREATE},
                        {"text": "Booked: Design review, alice, 09:30-10:00."})
    every_event = tmp_path / "every-event.toml"  # the scripted model answers at once
    every_event.write_text("[limits]\nprogress_gap_s = 0\n")
    result = await schedule(serve_params(real_cli, tmp_path, store, "--config", str(every_event)),
                            real_cli)
    assert not result.is_error, result.content[0].text
    assert the_booking(store) == [("Design review", f"{DAY}T09:30", f"{DAY}T10:00", ("bob",),
                                   "confirmed")]
    journal = store.journal()
    assert [(j["tool"], j["ok"], j["depth"]) for j in journal] == [
        ("find_slots", True, "1"), ("create_event", True, "1")]
    # the model saw the real calendar's answer: bob's standup pushed the first slot to 09:30
    found = json.loads(real_cli.server.turn_requests[1].tool_results[0]["content"])
    assert found["slots"][0] == {"start": f"{DAY}T09:30", "end": f"{DAY}T10:00"}
    argv = real_cli.last_argv()
    assert "--agent=scheduler" in argv and "--strict-mcp-config" in argv
    assert "--allowedTools" not in argv  # the bridge allowed the declared MCP tool when asked
    assert "running tool mcp__calendar__create_event" in real_cli.progress
    assert ledger_calls(tmp_path) == {"agent_scheduler": 1}


async def test_the_scheduler_delegates_to_the_clerk_through_a_second_bridge(
        real_cli, tmp_path, store):
    real_cli.server.add(
        {"tool_use": {"name": "mcp__agents__agent_calendar-clerk", "input": {"prompt": BRIEF}}},
        {"tool_use": FIND}, {"tool_use": CREATE}, {"text": "CLERK: booked 09:30-10:00."},
        {"text": "The clerk booked Design review at 09:30."})
    params = serve_params(real_cli, tmp_path, store, "--mcp-config",
                          str(EXAMPLE / "delegate.mcp.json"))
    result = await schedule(params, real_cli)
    assert not result.is_error, result.content[0].text
    assert the_booking(store) == [("Design review", f"{DAY}T09:30", f"{DAY}T10:00", ("bob",),
                                   "confirmed")]
    # the calendar was called by a CLI two bridges deep
    assert [(j["tool"], j["depth"]) for j in store.journal()] == [
        ("find_slots", "2"), ("create_event", "2")]
    agents = [next(a for a in argv if a.startswith("--agent=")) for argv in real_cli.argvs()]
    assert agents == ["--agent=scheduler", "--agent=calendar-clerk"]
    turns = real_cli.server.turn_requests
    assert [("calendar clerk" in t.system_text, "haiku" in (t.model or "")) for t in turns] == [
        (False, False), (True, True), (True, True), (True, True), (False, False)]
    assert "mcp__agents__agent_calendar-clerk" in turns[0].tool_names
    assert "CLERK: booked 09:30-10:00." in turns[-1].message_text  # the clerk's answer came back
    assert ledger_calls(tmp_path) == {"agent_scheduler": 1, "agent_calendar-clerk": 1}


@pytest.mark.parametrize("where", [
    "project",
    "parent",
])
async def test_a_bridge_registered_next_to_the_project_never_starts_inside_a_child(
        workspace, real_cli, tmp_path, where):
    # A stand-in for this bridge: it serves `echo`, and its args name claude-mcp-bridge, which
    # is how the bridge recognises its own entries.
    entry = {"command": sys.executable, "args": [str(DEMO_MCP_SERVER), "claude-mcp-bridge"]}
    folder = workspace.project if where == "project" else workspace.project.parent
    (folder / ".mcp.json").write_text(json.dumps({"mcpServers": {"agents": entry}}))
    workspace.agent("helper")
    forwarded = forwarded_mcp([], workspace.project, strict=False)
    settings = bridge_settings(workspace, real_cli, mcp_configs=forwarded.configs,
                               strict_mcp_config=forwarded.strict)
    result = await call(settings, real_cli, "agent_helper", prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert "Read" in real_cli.server.last.tool_names
    assert "mcp__agents__echo" not in real_cli.server.last.tool_names
