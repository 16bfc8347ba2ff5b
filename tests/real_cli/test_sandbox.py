"""The CLI's own sandbox around a call's Bash commands (Linux: bubblewrap + socat), with the real
CLI 2.1.332, the version the reference checked it on: a write outside the call's cwd fails, one
inside succeeds."""

from __future__ import annotations

import json

import pytest

from claude_mcp_bridge import sandbox
from tests.real_cli.support import bridge_settings, call

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

CHECKED_ON = "2.1.332"


async def test_a_sandboxed_bash_writes_inside_its_cwd_only(workspace, real_cli, cli_version,
                                                            tmp_path):
    if cli_version != CHECKED_ON:
        pytest.skip(f"the CLI's sandbox was checked on {CHECKED_ON}, not {cli_version}")
    if (unable := sandbox.problem()) is not None:
        pytest.skip(unable)
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace.agent("builder", "tools: Bash\n", body="You build things.")
    real_cli.server.add(
        {"tool_use": {"name": "Bash", "input": {"command": f"touch {outside}/escaped.txt",
                                                "description": "write outside"}}},
        {"tool_use": {"name": "Bash", "input": {"command": "touch inside.txt",
                                                "description": "write inside"}}},
        {"text": "Done."})
    settings = bridge_settings(workspace, real_cli, {"permissions": {"sandbox": {
        "enabled": True}}})
    result = await call(settings, real_cli, "agent_builder", prompt="build")
    assert not result.is_error, result.content[0].text
    assert not (outside / "escaped.txt").exists()
    assert (workspace.project / "inside.txt").exists()
    first = json.dumps(real_cli.server.turn_requests[1].tool_results)
    assert "Read-only file system" in first
    assert any(a.startswith("--settings=") for a in real_cli.last_argv())
