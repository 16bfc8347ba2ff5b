"""A data dir that is full or read-only (issue 13, contract 4): I/O errors never lose the
answer or wedge the bridge, and a bridge that cannot use its data dir says so in one line.

These mount a 1 MiB tmpfs or a read-only bind mount; they skip with the reason when not
root or mount is unavailable.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

import anyio
import httpx2
import pytest
from mcp import Client

from tests.faults.harness import (
    assert_all_end,
    assert_ledger_sound,
    assert_no_traceback,
    call_pids,
    config_text,
    fill,
    ledger_rows,
    mounted,
    run_cli,
    start_http,
)

BEGINNING = "The answer begins here. "
FIX = re.compile(r"free|space|writable|read-only|permission|CLAUDE_MCP_BRIDGE_DATA_DIR"
                 r"|\[ledger\] path", re.I)
NOT_STORED = re.compile(r"(could not|couldn't|cannot|can't|failed to|unable to) "
                        r"(be )?(store|stored|keep|kept|save|saved|write|written)", re.I)


async def test_an_answer_larger_than_the_free_space_still_reaches_the_client_cut(
        workspace, fake_claude, tmp_path, bridges):
    with mounted(tmp_path / "data", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as data_dir:
        workspace.agent("reviewer")
        answer = BEGINNING + "x" * 3_000_000
        fake_claude.script([{"init": {}}, {"text": answer},
                            {"result": {"total_cost_usd": 0.02}}])
        config = config_text(limits={"max_result_chars": 1000, "kill_grace_s": 1},
                             http={"drain_timeout_s": 3}, reload={"enabled": False})
        bridge = start_http(workspace, fake_claude, data_dir, config=config)
        bridges.append(bridge)
        with anyio.fail_after(60):
            async with Client(bridge.url + "/mcp", mode="legacy") as client:
                result = await client.call_tool("agent_reviewer", {"prompt": "go"})
            async with httpx2.AsyncClient(base_url=bridge.url) as http:
                ready = (await http.get("/ready")).json()
        text = result.content[0].text
        assert text.startswith(BEGINNING), text[:300]
        assert len(text) < 10_000
        assert NOT_STORED.search(text), f"no note that the full text was not kept: {text[-500:]}"
        assert ready["calls_in_flight"] == 0, ready
        began = time.monotonic()
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(timeout=20) == 0
        assert time.monotonic() - began < 20
        assert_all_end(call_pids(fake_claude), why="after the call answered")
        assert_ledger_sound(ledger_rows(data_dir), calls=1, reported=[0.02])
        assert_no_traceback(bridge.stderr())


def assert_refused_in_one_line(done, data_dir) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode not in (0, None), done.stderr
    assert_no_traceback(done.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert str(data_dir) in lines[0], lines[0]
    assert FIX.search(lines[0]), f"no fix named in: {lines[0]}"


def test_starting_with_a_full_data_dir_exits_with_the_path_and_the_fix(
        workspace, fake_claude, tmp_path):
    with mounted(tmp_path / "data", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as data_dir:
        workspace.agent("reviewer")
        fill(data_dir)
        done = run_cli(workspace, fake_claude, data_dir, "serve", "--transport", "http",
                       "--port", "0", "--log-level", "WARNING", timeout=60)
        assert_refused_in_one_line(done, data_dir)


def test_starting_with_a_read_only_data_dir_exits_with_the_path_and_the_fix(
        workspace, fake_claude, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    with mounted(folder, "--bind", str(folder)):
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
        workspace.agent("reviewer")
        done = run_cli(workspace, fake_claude, folder, "serve", "--transport", "http",
                       "--port", "0", "--log-level", "WARNING", timeout=60)
        assert_refused_in_one_line(done, folder)
