"""Real bridge processes for the fault tests (issue 13), and the checks every fault test
ends with: no process of the calls alive, one settled ledger row per call, nothing
under-counted, no budget overspent.

Waits here wait for an event (a log line, a file, a pid ending) by polling it under a
generous bound; none is a fixed sleep standing in for synchronisation.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio

from tests.support import pid_alive

REPO = Path(__file__).resolve().parents[2]

BOUND_S = 15.0
"""How long the children of an ended call or bridge may take to go (contract: seconds)."""


def wait_for(what: str, check: Callable[[], Any], within: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.02)


async def wait_for_async(what: str, check: Callable[[], Any], within: float = 30.0) -> Any:
    with anyio.fail_after(within):
        while True:
            value = check()
            if value:
                return value
            await anyio.sleep(0.02)  # another process's state: polled


def alive(pids: Iterable[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid)]


def assert_all_end(pids: Iterable[int], within: float = BOUND_S, why: str = "") -> None:
    """Every pid ends within ``within`` seconds (polled: the event is their end)."""
    pids = list(pids)
    assert pids, "no process to watch: the calls never started?"
    deadline = time.monotonic() + within
    while alive(pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"still alive {within}s later{' ' + why if why else ''}: "
                                 + ", ".join(describe(p) for p in alive(pids)))
        time.sleep(0.05)


async def assert_all_end_async(pids: Iterable[int], within: float = BOUND_S,
                               why: str = "") -> None:
    """``assert_all_end`` for a test whose event loop must keep running meanwhile (an SDK
    client in the same loop sends its cancel notification from it)."""
    pids = list(pids)
    assert pids, "no process to watch: the calls never started?"
    with anyio.move_on_after(within):
        while alive(pids):  # noqa: ASYNC110 - other processes: nothing signals their end
            await anyio.sleep(0.05)
    if alive(pids):
        raise AssertionError(f"still alive {within}s later{' ' + why if why else ''}: "
                             + ", ".join(describe(p) for p in alive(pids)))


def describe(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = "?"
    return f"{pid} ({cmdline.strip()[:80]})"


def kill_leftovers(pids: Iterable[int]) -> None:
    """Tests never leave processes behind, even when the bridge failed to end them."""
    for pid in pids:
        if pid_alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- configuration -------------------------------------------------------------------------

def config_text(**sections: dict[str, Any]) -> str:
    """TOML for ``config_text(limits={"timeout_s": 2}, http={...})``."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


# -- bridge processes ------------------------------------------------------------------------

@dataclass
class BridgeProcess:
    """One ``claude-mcp-bridge serve`` process; its stderr goes to a file (read any time,
    even after a SIGKILL)."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path
    data_dir: Path
    url: str = ""
    stderr_file: IO[bytes] | None = None
    _stdout_seen: bytes = field(default=b"", repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stderr().splitlines():
            with suppress(ValueError):
                events.append(json.loads(line))
        return events

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr_file):
            if stream is not None and not stream.closed:
                stream.close()

    # stdio: raw JSON-RPC, so a test controls every byte and the process
    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def responses(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """JSON-RPC messages the stdio server wrote so far (reads what is there)."""
        import selectors

        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while selector.select(timeout):
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                self._stdout_seen += chunk
                timeout = 0.0
        return [json.loads(line) for line in self._stdout_seen.splitlines() if line.strip()]


def bridge_env(workspace: Any, fake: Any, data_dir: Path,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**workspace.cli_env(fake), "CLAUDE_MCP_BRIDGE_DATA_DIR": str(data_dir),
            **(extra or {})}


def write_config(workspace: Any, config: str | None) -> list[str]:
    if config is None:
        return []
    path = workspace.home / "config.toml"
    path.write_text(config)
    return ["--config", str(path)]


def spawn_serve(workspace: Any, fake: Any, data_dir: Path, *, transport: str,
                config: str | None = None, env: dict[str, str] | None = None,
                name: str = "bridge", python: Sequence[str] = ("-m", "claude_mcp_bridge"),
                ) -> BridgeProcess:
    """Start ``serve`` without waiting for it (see ``start_http``, ``start_stdio``);
    ``python`` runs the bridge (e.g. ``-c`` code that patches it first)."""
    args = [sys.executable, *python, "serve", "--project-dir",
            str(workspace.project), "--log-format", "json", *write_config(workspace, config)]
    if transport == "http":
        args += ["--transport", "http", "--port", "0"]
    stderr_path = workspace.home / f"{name}-{time.monotonic_ns()}.stderr"
    stderr_file = stderr_path.open("wb")
    proc = subprocess.Popen(
        args, env=bridge_env(workspace, fake, data_dir, env), cwd=workspace.project,
        stdin=subprocess.PIPE if transport == "stdio" else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=stderr_file)
    return BridgeProcess(proc, stderr_path, data_dir, stderr_file=stderr_file)


def start_http(workspace: Any, fake: Any, data_dir: Path, **kwargs: Any) -> BridgeProcess:
    """``serve --transport http`` on a free port, once it logged ``http.listening``."""
    bridge = spawn_serve(workspace, fake, data_dir, transport="http", **kwargs)

    def listening() -> str | None:
        for event in bridge.log_events():
            if event.get("event") == "http.listening":
                return str(event["url"])
        if bridge.proc.poll() is not None:
            raise AssertionError(f"the server exited {bridge.proc.returncode}:\n"
                                 + bridge.stderr())
        return None

    try:
        bridge.url = wait_for("the HTTP server listening", listening, within=30)
    except BaseException:
        bridge.close()
        raise
    return bridge


def start_stdio(workspace: Any, fake: Any, data_dir: Path, **kwargs: Any) -> BridgeProcess:
    """``serve`` over stdio, initialized (raw JSON-RPC), once it logged it serves."""
    bridge = spawn_serve(workspace, fake, data_dir, transport="stdio", **kwargs)
    try:
        wait_for("serving over stdio", lambda: "serving over stdio" in bridge.stderr()
                 or bridge.proc.poll() is not None, within=30)
        assert bridge.proc.poll() is None, bridge.stderr()
        bridge.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "fault-tests", "version": "1"}}})
        wait_for("the initialize answer",
                 lambda: any(m.get("id") == 0 for m in bridge.responses(0.05)))
        bridge.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    except BaseException:
        bridge.close()
        raise
    return bridge


def call_request(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {"progressToken": request_id}}}


def run_cli(workspace: Any, fake: Any, data_dir: Path, *args: str, config: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "claude_mcp_bridge", *args, *write_config(workspace, config)],
        env=bridge_env(workspace, fake, data_dir), cwd=workspace.project,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


# -- the calls' processes ------------------------------------------------------------------

def call_pids(fake: Any) -> list[int]:
    """Every process the calls started: the fake CLIs and what they spawned."""
    return [int(r["pid"]) for r in fake.records()] + list(fake.spawned_pids())


def spawned_by(fake: Any) -> dict[int, list[int]]:
    """Fake CLI pid -> the pids it spawned so far."""
    return {int(f.stem): [int(x) for x in f.read_text().split()]
            for f in fake.record_dir.glob("*.children")}


def wait_spawned(fake: Any, calls: int, per_call: int, within: float = 30.0) -> list[int]:
    """Wait until ``calls`` fake CLIs each spawned ``per_call`` grandchildren; their pids."""
    def done() -> bool:
        spawned = spawned_by(fake)
        return len(spawned) >= calls and all(len(v) >= per_call for v in spawned.values())
    wait_for(f"{calls} calls each spawning {per_call} process(es)", done, within)
    return call_pids(fake)


# -- the ledger ----------------------------------------------------------------------------

def ledger_rows(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "ledger.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM calls ORDER BY rowid")]


def charged(row: dict[str, Any]) -> float:
    """What a row holds against the budgets: its cost plus any reservation still held."""
    return float(row["cost_usd"] or 0) + float(row["reserved_usd"] or 0)


def assert_ledger_sound(rows: list[dict[str, Any]], *, calls: int,
                        reported: Iterable[float] = (), budget_usd: float | None = None,
                        caps: dict[str, float] | None = None) -> None:
    """Exactly one settled row per call, never under-counted, never over budget.

    ``reported``: the costs the children reported (each must be charged at least that);
    ``caps``: outcome-independent expected charge per row id (the cap of a call whose
    cost is unknown)."""
    assert len(rows) == calls, f"{len(rows)} ledger rows for {calls} calls: {summary(rows)}"
    assert len({row["id"] for row in rows}) == calls
    assert not [r for r in rows if r["outcome"] == "running"], \
        f"rows left running: {summary(rows)}"
    total = sum(charged(row) for row in rows)
    assert total + 1e-9 >= sum(reported), \
        f"charged ${total:.4f} < reported ${sum(reported):.4f}: {summary(rows)}"
    if budget_usd is not None:
        assert total <= budget_usd + 1e-9, f"over the ${budget_usd} budget: {summary(rows)}"
    for row_id, expected in (caps or {}).items():
        [row] = [r for r in rows if r["id"] == row_id]
        assert charged(row) == pytest_approx(expected), \
            f"call {row_id[:8]} charged ${charged(row)}, expected ${expected}: {summary(rows)}"


def pytest_approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, abs=1e-9)


def summary(rows: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['id'][:8]} {r['outcome']} cost={r['cost_usd']} "
                     f"reserved={r['reserved_usd']} error={(r['error'] or '')[:90]!r}"
                     for r in rows)


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text[-3000:]


# -- the README's words -------------------------------------------------------------------

def readme_drain_outcome() -> str:
    """The outcome the README gives rows of calls stopped by the drain ("Shutdown")."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"\*\*Shutdown\.\*\*(.*?)(?:\n\n)", text, re.S)
    assert match, "the README has no **Shutdown.** paragraph"
    settled = re.search(r"settled\s+`(\w+)`", match.group(1))
    assert settled, f"the Shutdown paragraph names no settled outcome: {match.group(1)!r}"
    outcome = settled.group(1)
    # where the README has an outcome table, its shutdown row must say the same
    table = dict(re.findall(r"^\| `(\w+)` \| (.*?) \|$", text, re.M))
    by_table = [name for name, meaning in table.items() if "shutdown" in meaning.lower()]
    assert not by_table or by_table == [outcome], \
        f"the README's Shutdown paragraph says `{outcome}`, its outcome table {by_table}"
    return outcome


# -- an MCP client in its own process (so a test can kill it, or outlive its server) --------

CLIENT = r"""
import json, sys, anyio
from mcp import Client

def say(**fields):
    print(json.dumps(fields), flush=True)

async def main(url, prompts, job):
    async with Client(url + "/mcp", mode="legacy") as client:
        async def one(prompt):
            async def on_progress(done, total, message):
                say(prompt=prompt, progress=message)
            result = await client.call_tool("agent_reviewer", {"prompt": prompt},
                                            progress_callback=on_progress)
            say(prompt=prompt, text=result.content[0].text, is_error=result.is_error)
        async with anyio.create_task_group() as tg:
            if job:
                started = await client.call_tool(
                    "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": job}})
                say(prompt=job, job=started.content[0].text, is_error=started.is_error)
            for prompt in prompts:
                tg.start_soon(one, prompt)

anyio.run(main, sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])
"""


@dataclass
class ClientProcess:
    proc: subprocess.Popen[bytes]
    seen: bytes = b""

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.seen.splitlines() if line.strip()]

    def read_until(self, needle: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        from tests.support import read_until

        assert self.proc.stdout is not None
        if needle.encode() not in self.seen:
            self.seen += read_until(self.proc.stdout, needle.encode(), timeout)
        return self.messages()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_client(url: str, prompts: list[str], job: str = "") -> ClientProcess:
    """A client process that calls ``agent_reviewer`` once per prompt, all at once (and starts
    a job with ``job`` as its prompt), printing each progress message and answer as JSON."""
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, url, json.dumps(prompts), job],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    return ClientProcess(proc)


# -- mounts ----------------------------------------------------------------------------------

@contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    """``mount ARGS... TARGET`` for the duration; skips the test (with the reason) when not
    root or mount is unavailable."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs or a read-only bind mount")
    target.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True,
                              timeout=30)
    except OSError as exc:
        pytest.skip(f"mount is unavailable: {exc}")
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    with (folder / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
