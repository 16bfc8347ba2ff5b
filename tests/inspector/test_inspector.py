"""The bridge through the MCP Inspector's CLI mode (`mcp-inspector --cli`): list tools, call one.

The Inspector is `$CLAUDE_MCP_BRIDGE_INSPECTOR`, else the version pinned in
`.ci/inspector-version` installed by `.ci/run` under `.cache/inspector/`; the tests skip with
that reason when it (or node) is absent. Calls run the strict fake `claude`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PINNED = (REPO / ".ci" / "inspector-version").read_text().strip()
BRIDGE = [sys.executable, "-m", "claude_mcp_bridge", "serve"]
# The Inspector gives a server 15 s to start and answer initialize, which a loaded machine
# can take; the bound on the whole run is the subprocess timeout.
CONNECT_TIMEOUT = ["--connect-timeout", "100000"]


def inspector_path() -> Path:
    configured = os.environ.get("CLAUDE_MCP_BRIDGE_INSPECTOR")
    if configured:
        return Path(configured)
    return REPO / ".cache" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(scope="module")
def inspector() -> Path:
    path = inspector_path()
    if shutil.which("node") is None:
        pytest.skip("node is not installed, so the MCP Inspector cannot run")
    if not path.exists():
        pytest.skip(f"the MCP Inspector is not installed at {path}: run .ci/run (npm install "
                    f"--prefix .cache/inspector @modelcontextprotocol/inspector@{PINNED}) or set "
                    "CLAUDE_MCP_BRIDGE_INSPECTOR")
    return path


def http_transport_available() -> bool:
    help_text = subprocess.run([*BRIDGE, "--help"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60).stdout
    return "http" in help_text


def bridge_env(workspace, fake) -> dict[str, str]:
    return {**workspace.cli_env(fake), "PYTHONPATH": str(REPO),
            "CLAUDE_MCP_BRIDGE_DATA_DIR": str(workspace.home / "data")}


def run_inspector(inspector: Path, workspace, *args: str) -> Any:
    """One Inspector CLI run; its stdout is the JSON result of the method."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workspace.home)}
    done = subprocess.run([str(inspector), "--cli", *CONNECT_TIMEOUT, *args],
                          capture_output=True, text=True, env=env, cwd=workspace.project,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def over_stdio(workspace, fake) -> list[str]:
    """Inspector arguments that start the bridge over stdio with the fake claude."""
    env_flags = [flag for key, value in bridge_env(workspace, fake).items()
                 for flag in ("-e", f"{key}={value}")]
    return [*env_flags, "--", *BRIDGE, "--project-dir", str(workspace.project)]


def definition_tools(inspector: Path, workspace, target: list[str]) -> list[str]:
    """The agent and skill tools in tools/list (the bridge may publish tools of its own)."""
    listed = run_inspector(inspector, workspace, "--method", "tools/list", *target)
    return [tool["name"] for tool in listed["tools"]
            if tool["name"].startswith(("agent_", "skill_"))]


def tools_call(inspector: Path, workspace, target: list[str], prompt: str) -> dict[str, Any]:
    return dict(run_inspector(inspector, workspace, "--method", "tools/call",
                              "--tool-name", "agent_reviewer", "--tool-arg", f"prompt={prompt}",
                              *target))


def test_the_inspector_lists_and_calls_over_stdio(inspector, workspace, fake_claude):
    workspace.agent("reviewer", "tools: Read\n")
    workspace.skill("changelog")
    fake_claude.script([{"init": {}}, {"text": "Looks right."},
                        {"result": {"total_cost_usd": 0.02}}])
    target = over_stdio(workspace, fake_claude)
    assert definition_tools(inspector, workspace, target) == ["agent_reviewer", "skill_changelog"]
    result = tools_call(inspector, workspace, target, "Review the parser")
    assert result["isError"] is False
    assert result["content"] == [{"type": "text", "text": "Looks right."}]
    assert result["structuredContent"]["cost_usd"] == 0.02
    assert fake_claude.last()["prompt"] == "Review the parser"


def test_every_output_schema_passes_the_inspectors_strict_check(inspector, workspace,
                                                                fake_claude):
    # the Inspector warned that outputSchema.permission_denials.items was {} (issue 15); both
    # catalog modes, so the agent and skill tools and every built-in tool are listed
    workspace.agent("reviewer", "tools: Read\n")
    workspace.skill("changelog")
    config = workspace.home / "both.toml"
    config.write_text('[catalog]\nmode = "both"\njobs = true\ntest_tool = true\n')
    env_flags = ["-e", f"CLAUDE_MCP_BRIDGE_CONFIG={config}"]
    target = over_stdio(workspace, fake_claude)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workspace.home)}
    done = subprocess.run([str(inspector), "--cli", *CONNECT_TIMEOUT, "--strict", "--method",
                           "tools/list", *env_flags, *target], capture_output=True, text=True,
                          env=env, cwd=workspace.project, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = json.loads(done.stdout)
    assert {t["name"] for t in listed["tools"]} >= {
        "agent_reviewer", "skill_changelog", "find_agent", "run_agent", "job_start",
        "job_status", "job_result", "job_cancel", "test_agent"}
    assert "schemaFindings" not in listed
    findings = [line for line in done.stderr.splitlines()
                if line.startswith(("Warning: tool", "Error: tool", "  Path:", "  Issue:"))]
    assert findings == []


def listening_url(log: Path) -> str | None:
    """The URL the server's JSON log says it listens on, once it says so (whole lines only:
    the server may be writing the next one)."""
    for line in log.read_text().split("\n")[:-1]:
        if '"http.listening"' in line:
            return str(json.loads(line)["url"])
    return None


@contextlib.contextmanager
def http_bridge(workspace, fake) -> Iterator[str]:
    """`serve --transport http` on a port the system picks; yields the /mcp URL once the server
    says it listens (a port picked here and bound later could be taken meanwhile)."""
    log = workspace.home / "http-bridge.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [*BRIDGE, "--transport", "http", "--host", "127.0.0.1", "--port", "0",
             "--log-format", "json", "--project-dir", str(workspace.project)],
            env=bridge_env(workspace, fake), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while (url := listening_url(log)) is None:  # another process's log: polled
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server never said it listens"
            time.sleep(0.05)
        yield f"{url}/mcp"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.skipif(not http_transport_available(),
                    reason="`claude-mcp-bridge serve` has no --transport http yet")
def test_the_inspector_lists_and_calls_over_streamable_http(inspector, workspace, fake_claude):
    workspace.agent("reviewer", "tools: Read\n")
    fake_claude.script([{"init": {}}, {"text": "Fine over HTTP."},
                        {"result": {"total_cost_usd": 0.03}}])
    with http_bridge(workspace, fake_claude) as url:
        target = ["--transport", "http", "--server-url", url]
        assert definition_tools(inspector, workspace, target) == ["agent_reviewer"]
        result = tools_call(inspector, workspace, target, "Review over HTTP")
    assert result["isError"] is False
    assert result["content"] == [{"type": "text", "text": "Fine over HTTP."}]
    assert result["structuredContent"]["cost_usd"] == 0.03
    assert fake_claude.last()["prompt"] == "Review over HTTP"
