"""`usage`, `doctor` and crash recovery, run as a person would: real processes, real files."""

import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from claude_mcp_bridge.budget import Budget
from claude_mcp_bridge.ledger import CallStart, Ledger, Reservation, Settlement
from tests.support import path_without, pid_alive, survivors

CONFIG = """
[budget]
daily_usd = 5
monthly_usd = 50
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(workspace, fake_claude, data_dir, tmp_path) -> dict[str, str]:
    config = tmp_path / "bridge.toml"
    config.write_text(CONFIG)
    return {**workspace.cli_env(fake_claude), "CLAUDE_MCP_BRIDGE_DATA_DIR": str(data_dir),
            "CLAUDE_MCP_BRIDGE_CONFIG": str(config)}


def bridge(workspace, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "claude_mcp_bridge", *args, "--log-level",
                           "WARNING"], env=env, cwd=workspace.project, capture_output=True,
                          text=True, timeout=60)


def usage_json(workspace, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = bridge(workspace, env, "usage", "--json", *args)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def record(ledger_path: Path, tool: str, outcome: Any, cost: float, at: datetime,
           wall_ms: int = 1000) -> None:
    """A call settled at ``at``, as an earlier bridge run would have left it."""
    with Ledger.open(ledger_path) as ledger:
        start = CallStart(tool, "agent", f"{tool}.md", "0" * 64, "earlier", "x")
        reservation = ledger.reserve(start, cost or None, Budget(), Budget(), now=at)
        assert isinstance(reservation, Reservation)
        ledger.settle(reservation.call_id, Settlement(outcome=outcome, cost_usd=cost,
                                                      wall_ms=wall_ms), now=at)


def test_usage_after_calls_shows_calls_success_cost_and_budget_left(workspace, fake_claude,
                                                                     env, data_dir):
    workspace.agent("reviewer")
    fake_claude.script({
        "ok": [{"init": {}}, {"text": "fine"}, {"result": {"total_cost_usd": 0.25}}],
        "fail": [{"init": {}}, {"result": {"is_error": True, "subtype": "success",
                                           "result": "Not logged in", "total_cost_usd": 0.05}}]})
    assert bridge(workspace, env, "call", "agent_reviewer", "ok").returncode == 0
    assert bridge(workspace, env, "call", "agent_reviewer", "fail").returncode == 1
    record(data_dir / "ledger.sqlite3", "agent_writer", "ok", 0.2, datetime.now(UTC))
    report = usage_json(workspace, env)
    assert [row["key"] for row in report["rows"]] == ["agent_reviewer", "agent_writer"]
    reviewer = report["rows"][0]
    assert (reviewer["calls"], reviewer["ok"], reviewer["errors"]) == (2, 1, 1)
    assert reviewer["success_rate"] == 0.5
    assert reviewer["cost_usd"] == pytest.approx(0.3)
    assert reviewer["wall_p50_ms"] is not None
    total = report["total"]
    assert (total["calls"], total["ok"]) == (3, 2)
    assert total["cost_usd"] == pytest.approx(0.5)
    assert report["budget_left"]["daily"] == pytest.approx(4.5)
    assert report["budget_left"]["monthly"] == pytest.approx(49.5)
    assert report["by"] == "tool"


def test_usage_as_text_has_a_row_per_tool_a_total_and_the_budget_left(workspace, env, data_dir):
    now = datetime.now(UTC)
    record(data_dir / "ledger.sqlite3", "agent_reviewer", "ok", 1.25, now, wall_ms=2000)
    record(data_dir / "ledger.sqlite3", "agent_reviewer", "error", 0.25, now, wall_ms=4000)
    done = bridge(workspace, env, "usage")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("since ")
    assert lines[1].split() == ["tool", "calls", "ok", "%", "wall", "p50", "s", "wall", "p95",
                                "s", "cost", "$"]
    assert lines[2].split() == ["agent_reviewer", "2", "50", "2.0", "4.0", "1.5000"]
    assert lines[3].split() == ["total", "2", "50", "2.0", "4.0", "1.5000"]
    assert lines[4] == "budget left: today $3.50, this month $48.50"


def test_usage_since_leaves_out_older_calls(workspace, env, data_dir):
    now = datetime.now(UTC)
    ledger = data_dir / "ledger.sqlite3"
    record(ledger, "agent_reviewer", "ok", 0.1, now)
    record(ledger, "agent_reviewer", "ok", 0.2, now - timedelta(hours=30))
    record(ledger, "agent_old", "ok", 0.4, now - timedelta(days=10))
    assert usage_json(workspace, env, "--since", "1d")["total"]["calls"] == 1
    week = usage_json(workspace, env)  # the default is 7 days
    assert [row["key"] for row in week["rows"]] == ["agent_reviewer"]
    assert week["total"]["cost_usd"] == pytest.approx(0.3)
    assert usage_json(workspace, env, "--since", "30d")["total"]["calls"] == 3


def test_usage_by_day_has_a_row_per_utc_day(workspace, env, data_dir):
    now = datetime.now(UTC)
    ledger = data_dir / "ledger.sqlite3"
    record(ledger, "agent_reviewer", "ok", 0.1, now)
    record(ledger, "agent_writer", "ok", 0.2, now)
    record(ledger, "agent_reviewer", "ok", 0.4, now - timedelta(days=2))
    report = usage_json(workspace, env, "--by", "day")
    assert report["by"] == "day"
    today, before = now.date().isoformat(), (now - timedelta(days=2)).date().isoformat()
    assert [(row["key"], row["calls"]) for row in report["rows"]] == [(before, 1), (today, 2)]
    assert report["rows"][1]["cost_usd"] == pytest.approx(0.3)


def test_usage_with_an_unreadable_since_says_what_to_write(workspace, env):
    done = bridge(workspace, env, "usage", "--since", "last week")
    assert done.returncode == 2
    assert "--since 'last week': use a number of days or hours such as 7d or 12h" in done.stderr


DOCTOR_LINE = re.compile(r"^\[(?: ok |warn|fail)\] [a-z ]+: .+$")


def doctor(workspace, env: dict[str, str]) -> tuple[int, dict[str, str]]:
    done = bridge(workspace, env, "doctor")
    lines = done.stdout.splitlines()
    assert lines and all(DOCTOR_LINE.match(line) for line in lines), done.stdout
    checks = {line[7:].split(": ", 1)[0]: line for line in lines}
    assert len(checks) == len(lines)  # one line per check
    return done.returncode, checks


def test_doctor_with_a_working_claude_passes_every_check(workspace, env, data_dir):
    workspace.agent("reviewer")
    code, checks = doctor(workspace, env)
    assert code == 0
    assert {"claude", "claude version", "claude flags", "definitions", "ledger",
            "config"} <= set(checks)
    assert all(line.startswith("[ ok ]") for line in checks.values())
    assert "2.1.197" in checks["claude version"]
    assert "1 agents, 0 skills" in checks["definitions"]
    assert f"{data_dir / 'ledger.sqlite3'} (integrity: ok)" in checks["ledger"]
    assert "bridge.toml: valid" in checks["config"] and "daily_usd $5" in checks["config"]


def test_doctor_fails_when_claude_is_missing_and_says_what_to_set(workspace, env):
    env["CLAUDE_MCP_BRIDGE_CLAUDE_BIN"] = str(workspace.home / "no-claude")
    code, checks = doctor(workspace, env)
    assert code == 1
    assert checks["claude"].startswith("[fail] claude: the claude executable was not found")
    assert "set CLAUDE_MCP_BRIDGE_CLAUDE_BIN" in checks["claude"]
    assert checks["ledger"].startswith("[ ok ]")  # the other checks still run


def test_doctor_fails_when_claude_lacks_a_flag_the_bridge_uses(workspace, env, tmp_path):
    old = tmp_path / "old-claude"
    old.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo '0.9.0 (Claude Code)'; "
                   "else echo 'Usage: claude [options]  --print --model'; fi\n")
    old.chmod(0o755)
    env["CLAUDE_MCP_BRIDGE_CLAUDE_BIN"] = str(old)
    code, checks = doctor(workspace, env)
    assert code == 1
    assert checks["claude version"].startswith(
        "[warn] claude version: 0.9.0 (Claude Code) is not a version this bridge was tested with "
        "(2.1.197, 2.1.332)")
    assert checks["claude flags"].startswith("[fail] claude flags: this claude lacks ")
    assert "--max-budget-usd" in checks["claude flags"]
    assert "claude update" in checks["claude flags"]


def test_doctor_lists_rejected_definition_files_as_a_warning(workspace, env):
    workspace.agent("reviewer")
    broken = workspace.agent("broken", description="")
    code, checks = doctor(workspace, env)
    assert code == 0
    assert checks["definitions"].startswith("[warn] definitions: 1 agents, 0 skills; 1 rejected")
    assert f"{broken}: 'description' must be a non-empty string" in checks["definitions"]


def test_doctor_fails_on_a_ledger_that_is_not_sqlite(workspace, env, data_dir):
    data_dir.mkdir()
    (data_dir / "ledger.sqlite3").write_text("this is not a database, " * 100)
    code, checks = doctor(workspace, env)
    assert code == 1
    assert checks["ledger"].startswith(f"[fail] ledger: {data_dir / 'ledger.sqlite3'}")
    assert "move the file aside" in checks["ledger"]


def test_doctor_with_a_bad_config_fails_that_check_and_still_runs_the_others(
        workspace, env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmax_concurrency = 'many'\n")
    env["CLAUDE_MCP_BRIDGE_CONFIG"] = str(bad)
    done = bridge(workspace, env, "doctor")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[fail] config: ")
    assert f"{bad}: limits.max_concurrency: Input should be a valid integer" in lines[0]
    assert any(line.startswith("[ ok ] ledger") for line in lines[1:])


def test_other_commands_stop_on_a_bad_config_with_the_file_and_the_key(workspace, env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmax_concurrency = 'many'\n")
    env["CLAUDE_MCP_BRIDGE_CONFIG"] = str(bad)
    done = bridge(workspace, env, "list")
    assert done.returncode == 2
    assert f"{bad}: limits.max_concurrency: Input should be a valid integer" in done.stderr


def test_the_config_flag_wins_over_the_env_var_which_wins_over_the_default_file(
        workspace, env, tmp_path):
    default = workspace.home / ".config" / "claude-mcp-bridge" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text("[limits]\nmax_queue = 1\n")
    from_env = tmp_path / "env.toml"
    from_env.write_text("[limits]\nmax_queue = 2\n")
    flag = tmp_path / "flag.toml"
    flag.write_text("[limits]\nmax_queue = 3\n")
    env.pop("CLAUDE_MCP_BRIDGE_CONFIG")
    env.pop("XDG_CONFIG_HOME", None)
    env["CLAUDE_MCP_BRIDGE_CLAUDE_BIN"] = str(tmp_path / "absent")  # skip the claude checks
    _, checks = doctor(workspace, env)
    assert f"{default}: valid; max_concurrency 8, max_queue 1," in checks["config"]
    env["CLAUDE_MCP_BRIDGE_CONFIG"] = str(from_env)
    _, checks = doctor(workspace, env)
    assert f"{from_env}: valid; max_concurrency 8, max_queue 2," in checks["config"]
    done = bridge(workspace, env, "doctor", "--config", str(flag))
    assert f"{flag}: valid; max_concurrency 8, max_queue 3," in done.stdout


def read_until(process: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """What ``process`` wrote on stderr up to a line containing ``needle``."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while needle not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and process.poll() is None, f"no {needle!r} in: {seen}"
            if selector.select(left):
                chunk = os.read(process.stderr.fileno(), 65536).decode()
                assert chunk, f"stderr closed before {needle!r}: {seen}"
                seen += chunk
    return seen


def test_a_call_in_flight_when_the_bridge_is_killed_is_marked_interrupted_and_charged(
        workspace, fake_claude, env, data_dir):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    ledger_path = data_dir / "ledger.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "claude_mcp_bridge", "call", "agent_reviewer", "go",
         "--max-budget-usd", "0.4"],
        env=env, cwd=workspace.project, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    child: dict[str, Any] = {}
    try:
        read_until(process, "wrote 1 word", timeout=30)
        child = fake_claude.last()
        with closing(sqlite3.connect(ledger_path)) as db:
            [(outcome, reserved)] = db.execute("SELECT outcome, reserved_usd FROM calls")
        assert (outcome, reserved) == ("running", 0.4)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
        # the watchdog ends the orphaned fake and its group when the bridge dies
        left = survivors([child["pid"], *fake_claude.spawned_pids()], within_s=15)
        assert left == [], f"outlived the bridge: {left}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        if child and pid_alive(child["pid"]):  # the test failed: do not leak the orphan
            with suppress(ProcessLookupError):
                os.killpg(child["pgid"], signal.SIGKILL)
    assert child["pgid"] != os.getpgid(0)  # the child ran in its own process group
    report = usage_json(workspace, env)  # opening the ledger recovers the call
    assert (report["total"]["calls"], report["total"]["errors"]) == (1, 1)
    # the cost is unknown: the call is charged its reservation, its cap
    assert report["budget_left"]["daily"] == pytest.approx(4.6)
    with closing(sqlite3.connect(ledger_path)) as db:
        [(outcome, reserved, cost, error)] = db.execute(
            "SELECT outcome, reserved_usd, cost_usd, error FROM calls")
        [(integrity,)] = db.execute("PRAGMA integrity_check")
    assert (outcome, reserved, cost) == ("interrupted", 0, 0.4)
    assert error.startswith("interrupted: the bridge process that ran this call")
    assert integrity == "ok"


def test_doctor_fails_when_the_config_asks_for_a_sandbox_that_cannot_run(
        workspace, env, tmp_path):
    config = tmp_path / "sandboxed.toml"
    config.write_text("[permissions.sandbox]\nenabled = true\n")
    env["CLAUDE_MCP_BRIDGE_CONFIG"] = str(config)
    env["PATH"] = path_without("bwrap", tmp_path)
    code, checks = doctor(workspace, env)
    assert code == 1
    assert checks["sandbox"].startswith(
        "[fail] sandbox: asked for by [permissions.sandbox] enabled, and it cannot run here: "
        "the sandbox needs bwrap")
    assert "apt-get install bubblewrap socat" in checks["sandbox"]


def test_doctor_says_the_sandbox_is_off_by_default(workspace, env):
    code, checks = doctor(workspace, env)
    assert code == 0
    assert checks["sandbox"].startswith("[ ok ] sandbox: off")
