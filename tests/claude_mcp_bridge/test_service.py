"""`service install|status|uninstall|wait-ready` with a temporary HOME: the systemd unit
and the launchd agent run the right command with the right restart policy, and nothing is
installed on this machine (systemctl is a recording fake)."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from claude_mcp_bridge.cli import main
from claude_mcp_bridge.service import LABEL, UNIT


@pytest.fixture
def home(workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = workspace.home
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLAUDE_MCP_BRIDGE_CLAUDE_BIN", sys.executable)
    monkeypatch.delenv("CLAUDE_MCP_BRIDGE_CONFIG", raising=False)
    return home


def unit_entries(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values, the way systemd reads a unit (a key may repeat)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        assert key and _, f"not a key=value line: {line!r}"
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


def install(home: Path, project: Path, platform: str, *extra: str) -> int:
    return main(["service", "install", "--platform", platform, "--port", "8799",
                 "--project-dir", str(project), *extra])


def test_the_systemd_unit_serves_http_restarts_on_failure_and_waits_for_ready(
        home, workspace) -> None:
    assert install(home, workspace.project, "linux") == 0
    path = home / ".config" / "systemd" / "user" / UNIT
    entries = unit_entries(path.read_text())
    [start_line] = entries["Service.ExecStart"]
    argv = shlex.split(start_line)
    assert argv[:3] == [sys.executable, "-m", "claude_mcp_bridge"]
    assert argv[3:9] == ["serve", "--transport", "http", "--host", "127.0.0.1", "--port"]
    assert "--project-dir" in argv and str(workspace.project) in argv
    [post] = entries["Service.ExecStartPost"]
    assert "service wait-ready --url http://127.0.0.1:8799" in post
    assert entries["Service.Restart"] == ["on-failure"]
    assert entries["Service.RestartSec"] == ["5"]
    assert entries["Unit.StartLimitBurst"] == ["5"]
    assert entries["Service.KillMode"] == ["mixed"]
    assert f"CLAUDE_MCP_BRIDGE_CLAUDE_BIN={sys.executable}" in entries["Service.Environment"]
    assert entries["Install.WantedBy"] == ["default.target"]
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", str(path)],
                                  capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0, verified.stderr


def test_the_launchd_agent_keeps_alive_only_after_a_crash_and_logs_to_library_logs(
        home, workspace) -> None:
    assert install(home, workspace.project, "darwin") == 0
    path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    with path.open("rb") as file:
        agent = plistlib.load(file)
    assert agent["Label"] == LABEL
    assert agent["ProgramArguments"][:4] == [sys.executable, "-m", "claude_mcp_bridge", "serve"]
    assert agent["ProgramArguments"][4:6] == ["--transport", "http"]
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["ThrottleInterval"] == 10
    log = home / "Library" / "Logs" / "claude-mcp-bridge" / "bridge.log"
    assert agent["StandardErrorPath"] == agent["StandardOutPath"] == str(log)
    assert agent["EnvironmentVariables"]["CLAUDE_MCP_BRIDGE_CLAUDE_BIN"] == sys.executable


def test_start_status_and_uninstall_drive_systemctl(home, workspace, tmp_path,
                                                    monkeypatch, capsys) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert install(home, workspace.project, "linux", "--start") == 0
    assert main(["service", "status", "--platform", "linux"]) == 0
    assert main(["service", "uninstall", "--platform", "linux"]) == 0
    assert not (home / ".config" / "systemd" / "user" / UNIT).exists()
    assert main(["service", "status", "--platform", "linux"]) == 3
    assert calls.read_text().splitlines() == [
        "--user daemon-reload", f"--user enable --now {UNIT}",
        f"--user status --no-pager {UNIT}", f"--user disable --now {UNIT}",
        "--user daemon-reload"]


def test_the_units_own_commands_start_a_bridge_see_it_ready_and_stop_cleanly(
        home, workspace) -> None:
    workspace.agent("reviewer")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["service", "install", "--platform", "linux", "--port", str(port),
                 "--project-dir", str(workspace.project)]) == 0
    entries = unit_entries((home / ".config" / "systemd" / "user" / UNIT).read_text())
    env = {"HOME": str(home), "CLAUDE_MCP_BRIDGE_DATA_DIR": str(home / "data"),
           **dict(line.split("=", 1) for line in entries["Service.Environment"])}
    serve = subprocess.Popen(shlex.split(entries["Service.ExecStart"][0]), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = subprocess.run(shlex.split(entries["Service.ExecStartPost"][0]), env=env,
                               capture_output=True, text=True, timeout=90)
        assert ready.returncode == 0, ready.stderr
        assert ready.stdout.startswith("ready (200)")
    finally:
        serve.terminate()
        code = serve.wait(timeout=30)
    assert code == 0  # a clean stop: Restart=on-failure leaves it stopped
    assert main(["service", "wait-ready", "--url", f"http://127.0.0.1:{port}",
                 "--wait", "0.5"]) == 1
