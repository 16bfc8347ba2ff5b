"""Claude Code 2.1.332 connects the servers of a project's ``.mcp.json`` (and the user's) in the
background: its first model turn starts without a server that has not answered yet (issue 15).
The bridge answers ``initialize`` before it builds anything; ``"alwaysLoad": true`` makes the
CLI wait. Checked on the latest CLI only (2.1.197 waits for every server), tool search off,
``MCP_CONNECTION_NONBLOCKING`` unset. (Servers given with ``--mcp-config`` are awaited by the
CLI whatever their start-up takes: checked with a server started 6 s late.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.messages_api import RecordedRequest, scripted_model
from tests.real_cli.support import LATEST_VERSION, REPO, install_hint, real_claude_path

pytestmark = pytest.mark.real_cli
BRIDGE_TOOLS = {"mcp__agents__agent_reviewer", "mcp__agents__skill_changelog"}


@pytest.fixture
def latest_claude() -> Path:
    claude = real_claude_path(LATEST_VERSION)
    if not (claude.is_file() and os.access(claude, os.X_OK)):
        pytest.skip(f"the real claude CLI {LATEST_VERSION} is not installed at {claude}: "
                    f"{install_hint(LATEST_VERSION)}")
    return claude


def first_turn(claude: Path, workspace: Any, tmp_path: Path, **entry_extra: Any
               ) -> tuple[RecordedRequest, dict[str, Any]]:
    """The first model request of a `claude -p` run in a project whose .mcp.json registers
    the bridge, and the bridge's entry in the init event."""
    workspace.agent("reviewer")
    workspace.skill("changelog")
    entry = {"command": sys.executable,
             "args": ["-m", "claude_mcp_bridge", "serve", "--project-dir",
                      str(workspace.project)],
             "env": {"PYTHONPATH": str(REPO),
                     "CLAUDE_MCP_BRIDGE_DATA_DIR": str(tmp_path / "data")},
             **entry_extra}
    (workspace.project / ".mcp.json").write_text(json.dumps({"mcpServers": {"agents": entry}}))
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    with scripted_model([{"text": "hello"}]) as model:
        env = {"PATH": os.environ.get("PATH", ""), **model.cli_env(str(home))}
        env.pop("MCP_CONNECTION_NONBLOCKING", None)
        assert env["ENABLE_TOOL_SEARCH"] == "false"  # MCP tools go to the model directly
        done = subprocess.run(
            [str(claude), "-p", "--output-format", "stream-json", "--verbose"],
            input="hi", capture_output=True, text=True, env=env, cwd=workspace.project,
            timeout=120, start_new_session=True)
        assert done.returncode == 0, done.stderr
        [init] = [json.loads(line) for line in done.stdout.splitlines()
                  if '"subtype":"init"' in line.replace(" ", "")]
        [server] = [s for s in init["mcp_servers"] if s["name"] == "agents"]
        return model.turn_requests[0], server


@pytest.mark.xfail(strict=False, reason=(
    "a race the bridge cannot always win: the CLI's first turn starts about as soon as a "
    "bare `import mcp.server` ends; on a loaded 2-CPU machine even the minimal SDK server "
    "made the first turn in about half the runs. Register with alwaysLoad (next test)."))
def test_without_always_load_the_first_request_carries_the_bridge_tools(
        latest_claude, workspace, tmp_path):
    request, server = first_turn(latest_claude, workspace, tmp_path)
    assert server["status"] == "connected"
    assert set(request.tool_names) >= BRIDGE_TOOLS


def test_with_always_load_the_first_request_carries_the_bridge_tools(
        latest_claude, workspace, tmp_path):
    request, server = first_turn(latest_claude, workspace, tmp_path, alwaysLoad=True)
    assert server == {"name": "agents", "status": "connected", "source": "project"}
    assert set(request.tool_names) >= BRIDGE_TOOLS
