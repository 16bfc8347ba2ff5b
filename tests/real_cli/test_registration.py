"""The registrations the repo ships: `.mcp.json` at the root (Claude Code) and the Claude Desktop
snippet. Claude Code here is the real CLI started at the repo root, as a user would start it."""

from __future__ import annotations

import json
import subprocess
from datetime import date

import pytest

from claude_mcp_bridge.forwarding import is_bridge_entry
from tests.real_cli.support import REPO, example_module

BRIEF = "Book 'Design review', 30 minutes, alice with bob, on 2026-03-10."
# The bridge's entry in the init event; 2.1.332 adds where the server came from.
INIT_ENTRY = {"2.1.197": {"name": "agents", "status": "connected"},
              "2.1.332": {"name": "agents", "status": "connected", "source": "project"}}


def test_the_shipped_configs_start_this_bridge():
    for path in (REPO / ".mcp.json", REPO / "examples" / "claude_desktop_config.json"):
        [entry] = json.loads(path.read_text())["mcpServers"].values()
        assert is_bridge_entry(entry), path
        assert entry["args"][0] == "serve"
        # a child of the bridge would otherwise load this file again (claude -p reads the
        # .mcp.json of every parent directory) and start the bridge inside itself
        assert "--strict-mcp-config" in entry["args"]


@pytest.mark.real_cli
def test_claude_code_at_the_repo_root_reaches_the_calendar_through_the_bridge(
        real_cli, claude_bin, cli_version, tmp_path):
    store = example_module("calendar_store").CalendarStore.open(tmp_path / "calendar.sqlite3")
    real_cli.server.add(
        {"tool_use": {"name": "mcp__agents__agent_scheduler", "input": {"prompt": BRIEF}}},
        {"tool_use": {"name": "mcp__calendar__create_event",
                      "input": {"calendar": "alice", "title": "Design review",
                                "start": "2026-03-10T09:00", "duration_minutes": 30,
                                "attendees": ["bob"]}}},
        {"text": "Booked event 1."}, {"text": "The scheduler booked it."})
    env = real_cli.env(CLAUDE_MCP_BRIDGE_CLAUDE_BIN=str(real_cli.shim),
                       CLAUDE_MCP_BRIDGE_DATA_DIR=str(tmp_path / "data"),
                       CALENDAR_DB=str(store.path))
    done = subprocess.run(
        [str(claude_bin), "-p", "--output-format", "stream-json", "--verbose",
         "--allowedTools", "mcp__agents__agent_scheduler"],
        input="Book the design review", capture_output=True, text=True, env=env, cwd=REPO,
        timeout=90, start_new_session=True)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert INIT_ENTRY[cli_version] in events[0]["mcp_servers"]
    assert events[-1]["is_error"] is False
    assert [(e.title, e.start) for e in store.events("alice", date(2026, 3, 10))] == [
        ("Design review", "2026-03-10T09:00")]
    assert [(j["tool"], j["depth"]) for j in store.journal()] == [("create_event", "1")]
