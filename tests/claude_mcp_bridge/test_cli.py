"""The command line, run as a person would: a real process, real files."""

import json
import subprocess
import sys

import pytest


def bridge(workspace, fake, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "claude_mcp_bridge", *args],
                          env=workspace.cli_env(fake), cwd=workspace.project,
                          capture_output=True, text=True, timeout=timeout)


def test_list_shows_tools_and_rejected_files_with_reasons(workspace):
    workspace.agent("reviewer")
    workspace.skill("changelog")
    workspace.agent("broken", description="")
    done = bridge(workspace, None, "list")
    assert done.returncode == 0, done.stderr
    assert "agent_reviewer" in done.stdout and "skill_changelog" in done.stdout
    assert "1 rejected files" in done.stdout
    assert "broken.md: 'description' must be a non-empty string, got null" in done.stdout


def test_list_json_is_machine_readable(workspace):
    workspace.agent("reviewer", scope="user")
    workspace.agent("reviewer", body="project wins")
    (workspace.project / ".claude" / "agents" / "empty.md").write_text("no front matter")
    listing = json.loads(bridge(workspace, None, "list", "--json").stdout)
    [tool] = listing["tools"]
    assert tool["name"] == "agent_reviewer" and tool["scope"] == "project"
    assert [r["path"].endswith("empty.md") for r in listing["rejected"]] == [True]
    assert any("overridden" in w["reason"] for w in listing["warnings"])


def test_call_prints_progress_on_stderr_and_the_answer_on_stdout(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "The answer."}, {"result": {}}])
    done = bridge(workspace, fake_claude, "call", "agent_reviewer", "-x is a prompt, not a flag")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "The answer."
    assert "starting agent reviewer" in done.stderr
    assert fake_claude.last()["prompt"] == "-x is a prompt, not a flag"


def test_call_exits_non_zero_when_the_agent_fails(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"exit": 4}])
    done = bridge(workspace, fake_claude, "call", "agent_reviewer", "go")
    assert done.returncode == 1
    assert "exit code 4" in done.stdout


def test_call_json_prints_the_structured_result(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "x"}, {"result": {"total_cost_usd": 0.5}}])
    done = bridge(workspace, fake_claude, "call", "agent_reviewer", "go", "--json")
    assert json.loads(done.stdout)["cost_usd"] == 0.5


def test_call_of_an_unknown_tool_says_so(workspace, fake_claude):
    done = bridge(workspace, fake_claude, "call", "agent_nope", "go")
    assert done.returncode == 2
    assert "unknown tool 'agent_nope'" in done.stderr


def test_a_missing_mcp_config_stops_with_its_path(workspace):
    done = bridge(workspace, None, "list", "--mcp-config", "/no/such.json")
    assert done.returncode == 2
    assert "/no/such.json: MCP config file not found" in done.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["list"], ["call"]])
def test_every_command_explains_itself(workspace, command):
    done = bridge(workspace, None, *command, "--help")
    assert done.returncode == 0
    assert "usage: claude-mcp-bridge" in done.stdout
    assert len(done.stdout.splitlines()) > 5
