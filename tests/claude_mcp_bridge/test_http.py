"""The real server process over HTTP on loopback: SDK clients, raw requests, signals."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.support import agent_tools, pid_alive, read_until

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-for-tests"


@dataclass
class Running:
    """A `claude-mcp-bridge serve --transport http` process and where it listens."""

    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    stderr_lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None and self.proc.stdout is not None
        if not self.proc.stderr.closed:
            self.stderr_lines += self.proc.stderr.read().splitlines()
            self.proc.stderr.close()
        self.proc.stdout.close()

    def log_events(self) -> list[dict]:
        events = []
        for line in self.stderr_lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def ledger_rows(self) -> list[sqlite3.Row]:
        db = sqlite3.connect(self.data_dir / "ledger.sqlite3")
        db.row_factory = sqlite3.Row
        try:
            return db.execute("SELECT * FROM calls ORDER BY rowid").fetchall()
        finally:
            db.close()


def start(workspace, fake, *extra: str, config: str | None = None,
          env: dict[str, str] | None = None,
          preexec_fn: Callable[[], object] | None = None) -> Running:
    data_dir = workspace.home / "data"
    full_env = {**workspace.cli_env(fake), "CLAUDE_MCP_BRIDGE_DATA_DIR": str(data_dir),
                **(env or {})}
    args = [sys.executable, "-m", "claude_mcp_bridge", "serve", "--transport", "http",
            "--port", "0", "--project-dir", str(workspace.project), "--log-format", "json",
            *extra]
    if config is not None:
        path = workspace.home / "config.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    proc = subprocess.Popen(args, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)
    running = Running(proc, "", data_dir)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        running.stderr_lines.append(line.rstrip("\n"))
        if '"http.listening"' in line:
            running.url = json.loads(line)["url"]
            return running
    running.close()
    raise AssertionError("the server did not start:\n" + "\n".join(running.stderr_lines))


@pytest.fixture
def servers() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        running.close()


@pytest.fixture
def serve(workspace, fake_claude, servers):
    def _serve(*extra: str, **kwargs) -> Running:
        running = start(workspace, fake_claude, *extra, **kwargs)
        servers.append(running)
        return running
    return _serve


@pytest.fixture(params=["auto", "legacy"])
def mode(request):
    return request.param


def recorder():
    messages: list[str] = []

    async def on_progress(done, total, message):
        messages.append(message)
    return messages, on_progress


async def wait_dead(pids: list[int], within: float = 15) -> None:
    with anyio.fail_after(within):
        while any(pid_alive(p) for p in pids):  # noqa: ASYNC110 - other processes
            await anyio.sleep(0.05)


async def test_streamable_http_lists_and_calls_with_progress(workspace, fake_claude, serve, mode):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "All fine."}, {"result": {"total_cost_usd": 0.02}}])
    running = serve()
    messages, on_progress = recorder()
    with anyio.fail_after(30):
        async with Client(running.url + "/mcp", mode=mode) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool("agent_reviewer", {"prompt": "check"},
                                            progress_callback=on_progress)
    assert agent_tools(tools) == ["agent_reviewer"]
    assert result.content[0].text == "All fine."
    assert result.structured_content["cost_usd"] == 0.02
    assert "starting agent reviewer" in messages
    assert running.stop() == 0
    [row] = running.ledger_rows()
    assert (row["tool"], row["outcome"], row["caller"][:4]) == ("agent_reviewer", "ok", "http")


async def test_legacy_sse_lists_and_calls_with_progress(workspace, fake_claude, serve):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "Over SSE."}, {"result": {}}])
    running = serve()
    messages, on_progress = recorder()
    with anyio.fail_after(30):
        async with Client(sse_client(running.url + "/sse")) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool("agent_reviewer", {"prompt": "check"},
                                            progress_callback=on_progress)
    assert agent_tools(tools) == ["agent_reviewer"]
    assert result.content[0].text == "Over SSE."
    assert "starting agent reviewer" in messages


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_client_that_cancels_over_http_kills_the_child(
        workspace, fake_claude, serve, transport):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    running = serve()
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    target = running.url + "/mcp" if transport == "http" else sse_client(running.url + "/sse")
    with anyio.fail_after(40):
        async with Client(target, mode="legacy") as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("agent_reviewer", {"prompt": "go"},
                                                       progress_callback=on_progress))
                await busy.wait()
                tg.cancel_scope.cancel()
            await wait_dead([r["pid"] for r in fake_claude.records()]
                            + fake_claude.spawned_pids())
            assert (await client.list_tools()).tools  # the session lives on
    assert running.stop() == 0
    assert [row["outcome"] for row in running.ledger_rows()] == ["cancelled"]


CLIENT = """
import sys, anyio
from mcp import Client
from mcp.client.sse import sse_client

async def main(url, transport):
    target = url + "/mcp" if transport == "http" else sse_client(url + "/sse")
    async with Client(target, mode="legacy") as client:
        await client.call_tool("agent_reviewer", {"prompt": "go"})

anyio.run(main, sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_client_killed_mid_call_gets_its_child_killed(
        workspace, fake_claude, serve, transport):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    running = serve()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, running.url, transport],  # noqa: ASYNC220
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(30):
            while not fake_claude.spawned_pids():  # noqa: ASYNC110 - another process
                await anyio.sleep(0.05)
    finally:
        client.kill()  # no cancel notification, no DELETE: the connection just drops
        client.wait()
    await wait_dead([r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids(),
                    within=30)
    assert running.stop() == 0
    assert [row["outcome"] for row in running.ledger_rows()] == ["cancelled"]


async def test_a_token_is_required_and_never_logged(workspace, fake_claude, serve):
    workspace.agent("reviewer")
    running = serve(env={"CLAUDE_MCP_BRIDGE_TOKEN": TOKEN})
    async with httpx2.AsyncClient(base_url=running.url) as http:
        assert (await http.get("/health")).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = await http.post("/mcp", json={}, headers=headers)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get("/ready")).status_code == 401
        ok = await http.get("/ready", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as authed:
        from mcp.client.streamable_http import streamable_http_client
        async with Client(streamable_http_client(running.url + "/mcp", http_client=authed)) \
                as client:
            assert agent_tools((await client.list_tools()).tools) == ["agent_reviewer"]
    running.stop()
    assert running.stderr_lines
    assert not any(TOKEN in line for line in running.stderr_lines)


def test_binding_beyond_loopback_without_a_token_is_refused(workspace, fake_claude):
    done = subprocess.run(
        [sys.executable, "-m", "claude_mcp_bridge", "serve", "--transport", "http",
         "--host", "0.0.0.0", "--port", "0", "--project-dir", str(workspace.project)],
        env=workspace.cli_env(fake_claude), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "token" in done.stderr and "0.0.0.0" in done.stderr


@pytest.mark.parametrize(("headers", "status"), [
    ({"Host": "evil.example:80"}, 421),
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "http://localhost:6274"}, 200),
])
async def test_host_and_origin_are_checked_against_the_allow_list(
        workspace, fake_claude, serve, headers, status):
    running = serve()
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}}
    async with httpx2.AsyncClient(base_url=running.url) as http:
        answer = await http.post("/mcp", json=initialize, headers={
            "Accept": "application/json, text/event-stream", **headers})
        sse = await http.get("/sse", headers=headers) if status != 200 else None
    assert answer.status_code == status
    if sse is not None:
        assert sse.status_code == status


async def test_bad_requests_get_http_and_json_rpc_errors_not_tracebacks(
        workspace, fake_claude, serve):
    running = serve(config="[http]\nmax_body_bytes = 2048\n")
    accept = {"Accept": "application/json, text/event-stream",
              "Content-Type": "application/json"}
    async with httpx2.AsyncClient(base_url=running.url) as http:
        malformed = await http.post("/mcp", content=b"{not json", headers=accept)
        oversized = await http.post("/mcp", content=b"[" + b" " * 10_000 + b"]", headers=accept)
        unknown = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                  headers={**accept, "Mcp-Session-Id": "no-such-session",
                                           "MCP-Protocol-Version": "2025-06-18"})
        bad_sse_post = await http.post("/messages/?session_id=00000000000000000000000000000000",
                                       json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == -32700
    assert oversized.status_code == 413
    assert unknown.status_code == 404
    assert bad_sse_post.status_code == 404
    running.stop()
    assert not any("Traceback" in line for line in running.stderr_lines)


async def test_health_and_ready_describe_the_service(workspace, fake_claude, serve):
    workspace.agent("reviewer")
    workspace.agent("broken", description="")
    running = serve(config="[budget]\ndaily_usd = 5\n")
    async with httpx2.AsyncClient(base_url=running.url) as http:
        health = (await http.get("/health")).json()
        ready = await http.get("/ready")
    assert health["status"] == "ok" and health["uptime_s"] >= 0
    body = ready.json()
    assert ready.status_code == 200 and body["ready"] is True
    assert body["tools_published"] == 1
    assert body["files_rejected"] == 1
    assert (body["calls_in_flight"], body["calls_queued"]) == (0, 0)
    assert body["budget_left_today_usd"] == 5


async def test_ready_is_503_with_the_reason_when_claude_is_missing(workspace, serve, servers):
    running = start(workspace, None, env={"CLAUDE_MCP_BRIDGE_CLAUDE_BIN": "/no/such/claude"})
    servers.append(running)
    async with httpx2.AsyncClient(base_url=running.url) as http:
        ready = await http.get("/ready")
    assert ready.status_code == 503
    assert "CLAUDE_MCP_BRIDGE_CLAUDE_BIN" in ready.json()["problems"][0]


async def test_sigterm_lets_a_call_in_flight_finish_then_exits(workspace, fake_claude, serve):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "started"}, {"sleep": 1.5},
                        {"text": "Finished anyway."},
                        {"result": {"result": "Finished anyway.", "total_cost_usd": 0.1}}])
    running = serve()
    started = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            started.set()

    outcome: list[types.CallToolResult] = []
    with anyio.fail_after(30):
        try:
            async with Client(running.url + "/mcp", mode="legacy") as client, \
                    anyio.create_task_group() as tg:
                # The SDK client lists the tools after a result whose output schema it has
                # not seen, to check it: that request would race the bridge's exit.
                await client.list_tools()

                async def call() -> None:
                    outcome.append(await client.call_tool(
                        "agent_reviewer", {"prompt": "go"}, progress_callback=on_progress))
                tg.start_soon(call)
                await started.wait()
                running.proc.send_signal(signal.SIGTERM)
        except Exception:
            # The bridge exits as soon as its last call is answered: what the client sends
            # after the answer (its goodbye) may find it gone. Only the answer matters here.
            if not outcome:
                raise
    assert outcome[0].content[0].text == "Finished anyway."
    assert running.stop() == 0
    assert [row["outcome"] for row in running.ledger_rows()] == ["ok"]


async def test_sigterm_stops_a_call_that_outlives_the_drain(workspace, fake_claude, serve):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    running = serve(config="[http]\ndrain_timeout_s = 0.5\n[limits]\nkill_grace_s = 1\n")
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    outcome: list[types.CallToolResult] = []
    with anyio.fail_after(30):
        async with Client(running.url + "/mcp", mode="legacy") as client, \
                anyio.create_task_group() as tg:
            async def call() -> None:
                outcome.append(await client.call_tool(
                    "agent_reviewer", {"prompt": "go"}, progress_callback=on_progress))
            tg.start_soon(call)
            await busy.wait()
            running.proc.send_signal(signal.SIGTERM)
    assert outcome[0].is_error
    assert "shutting down" in outcome[0].content[0].text
    assert running.stop() == 0
    await wait_dead([r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids())
    [row] = running.ledger_rows()
    assert row["outcome"] == "cancelled"  # as the README says of calls the drain stops
    assert "shutting down" in row["error"]


async def test_calls_are_logged_as_json_events(workspace, fake_claude, serve):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "ok"}, {"result": {"total_cost_usd": 0.25}}])
    running = serve()
    async with Client(running.url + "/mcp") as client:
        await client.call_tool("agent_reviewer", {"prompt": "go"})
    running.stop()
    events = {e.get("event"): e for e in running.log_events()}
    start_event, end = events["call.start"], events["call.end"]
    assert start_event["tool"] == end["tool"] == "agent_reviewer"
    assert start_event["call_id"] == end["call_id"]
    assert (end["outcome"], end["cost_usd"]) == ("ok", 0.25)
    assert end["duration_ms"] >= 0


async def test_hot_reload_tells_clients_and_publishes_the_new_tool(
        workspace, fake_claude, serve):
    workspace.agent("reviewer")
    running = serve(config="[reload]\npoll_s = 0.1\ndebounce_s = 0.1\n")
    changed = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    with anyio.fail_after(30):
        async with Client(running.url + "/mcp", mode="legacy",
                          message_handler=on_message) as legacy, \
                Client(running.url + "/mcp") as modern:
            assert legacy.server_capabilities.tools.list_changed is True
            async with modern.listen(tools_list_changed=True) as subscription:
                workspace.agent("writer")
                await changed.wait()
                async for event in subscription:
                    assert type(event).__name__ == "ToolsListChanged"
                    break
            names = agent_tools((await modern.list_tools()).tools)
            assert names == ["agent_reviewer", "agent_writer"]
            result = await legacy.call_tool("agent_writer", {"prompt": "hi"})
            assert not result.is_error


def test_a_stdio_server_stops_cleanly_on_sigterm_with_reload_running(workspace, fake_claude):
    workspace.agent("reviewer")
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_mcp_bridge", "serve", "--project-dir",
         str(workspace.project)], env=workspace.cli_env(fake_claude), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(proc.stderr, b"serving over stdio")  # its signal handlers are in place
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()


async def test_sse_streams_beyond_the_cap_are_refused_and_idle_sessions_make_room(
        workspace, fake_claude, serve):
    workspace.agent("reviewer")
    running = serve(config="[http]\nmax_sessions = 1\n")
    async with Client(sse_client(running.url + "/sse")) as first:
        assert agent_tools((await first.list_tools()).tools) == ["agent_reviewer"]
        async with httpx2.AsyncClient(base_url=running.url) as http, \
                http.stream("GET", "/sse") as second:
            assert second.status_code == 503
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        async with httpx2.AsyncClient(base_url=running.url) as http:
            one = await http.post("/mcp", json=initialize, headers=headers)
            two = await http.post("/mcp", json=initialize, headers=headers)
            again = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                                    headers={**headers, "MCP-Protocol-Version": "2025-06-18",
                                             "Mcp-Session-Id": one.headers["mcp-session-id"]})
    # The idle Streamable HTTP session is closed to let the new one in (test_http_abuse.py
    # covers the policy); the SSE stream, a live connection, is not.
    assert (one.status_code, two.status_code, again.status_code) == (200, 200, 404)
