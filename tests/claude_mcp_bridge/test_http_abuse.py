"""Abuse of the HTTP server from loopback (issue 14, items 7-10), against the real process:
slow and half-open connections, session floods, deeply nested JSON, a wrong Host or Origin
on every path, and `cwd` values no file system accepts."""

import json
import os
import resource
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
from mcp import Client

from tests.claude_mcp_bridge.test_http import Running, start

pytestmark = pytest.mark.anyio

LEGACY = "2025-06-18"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


@pytest.fixture
def serve(workspace, fake_claude):
    started: list[Running] = []

    def _serve(*extra: str, **kwargs) -> Running:
        running = start(workspace, fake_claude, *extra, **kwargs)
        started.append(running)
        return running
    yield _serve
    for running in started:
        running.close()


def address(running: Running) -> tuple[str, int]:
    url = urlsplit(running.url)
    assert url.hostname == "127.0.0.1" and url.port  # these tests never leave loopback
    return url.hostname, url.port


def read_until_closed(sock: socket.socket, within: float = 5) -> bytes:
    """Everything the server sends before it closes; fails if it keeps the socket open."""
    sock.settimeout(within)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


async def next_event(running: Running, name: str, within: float = 10) -> dict:
    """Read the server's JSON log lines until the event ``name`` appears."""
    assert running.proc.stderr is not None
    with anyio.fail_after(within):
        while True:
            line = await anyio.to_thread.run_sync(running.proc.stderr.readline,
                                                  abandon_on_cancel=True)
            assert line, "the server exited:\n" + "\n".join(running.stderr_lines)
            running.stderr_lines.append(line.rstrip("\n"))
            if f'"{name}"' in line:
                return json.loads(line)


async def initialize(http: httpx2.AsyncClient) -> str:
    answer = await http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert answer.status_code == 200, answer.text
    return answer.headers["mcp-session-id"]


async def list_tools(http: httpx2.AsyncClient, session: str) -> httpx2.Response:
    return await http.post("/mcp", json=TOOLS_LIST, headers={
        **ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY})


def assert_no_traceback(running: Running) -> None:
    running.stop()
    assert not any("Traceback" in line for line in running.stderr_lines), \
        "\n".join(running.stderr_lines)


# --- slow and half-open connections (item 7) -------------------------------------------

FLOOD = 2000
SERVER_FDS = 1024  # the limit the report was made with


def limit_fds(limit: int):
    """A preexec_fn: the server starts with soft = hard = ``limit`` descriptors."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.fixture
def room_for_the_flood() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"the test process needs {need} descriptors; its hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def half_open(where: tuple[str, int], count: int) -> list[socket.socket]:
    """``count`` connections that never finish a request: half say nothing at all, half
    stop in the middle of their request head."""
    sockets = []
    for i in range(count):
        sock = socket.create_connection(where, timeout=5)
        if i % 2:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    return sockets


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_two_thousand_half_open_connections_leave_health_and_calls_working(
        workspace, fake_claude, serve, room_for_the_flood, record_property):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "Still here."}, {"result": {}}])
    running = serve(preexec_fn=limit_fds(SERVER_FDS))
    sockets = half_open(address(running), FLOOD)
    try:
        held = open_descriptors(running.proc.pid)
        async with httpx2.AsyncClient(base_url=running.url, timeout=5) as http:
            began = time.monotonic()
            health = await http.get("/health")
            latency = time.monotonic() - began
        with anyio.fail_after(20):
            async with Client(running.url + "/mcp", mode="legacy") as client:
                result = await client.call_tool("agent_reviewer", {"prompt": "go"})
        record_property("server_fds_during_flood", held)
        record_property("health_latency_s", round(latency, 4))
        print(f"\nflood of {FLOOD}: server held {held} descriptors "
              f"(limit {SERVER_FDS}); /health answered in {latency * 1000:.1f} ms")
    finally:
        for sock in sockets:
            sock.close()
    assert health.status_code == 200
    assert latency < 5
    assert held < SERVER_FDS
    assert result.content[0].text == "Still here."
    assert_no_traceback(running)


def test_a_request_head_that_never_ends_is_closed_with_408(serve):
    running = serve(config="[http]\nheader_timeout_s = 0.5\n")
    silent = socket.create_connection(address(running))
    slow = socket.create_connection(address(running))
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    with silent, slow:
        assert read_until_closed(slow).startswith(b"HTTP/1.1 408 ")
        assert read_until_closed(silent) == b""


def test_a_body_that_never_ends_is_closed_with_408(serve):
    running = serve(config="[http]\nbody_timeout_s = 0.5\n")
    with socket.create_connection(address(running)) as slow:
        slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Accept: application/json, text/event-stream\r\n"
                     b'Content-Length: 100\r\n\r\n{"jsonrpc": ')
        assert read_until_closed(slow).startswith(b"HTTP/1.1 408 ")
    assert_no_traceback(running)


# --- session floods (item 8) ----------------------------------------------------------

async def test_at_the_session_cap_the_least_recently_used_idle_session_makes_room(serve):
    running = serve(config="[http]\nmax_sessions = 3\n")
    async with httpx2.AsyncClient(base_url=running.url) as http:
        first, second, third = [await initialize(http) for _ in range(3)]
        assert (await list_tools(http, first)).status_code == 200  # second is now the oldest
        fourth = await initialize(http)
        assert (await list_tools(http, second)).status_code == 404
        for kept in (first, third, fourth):
            assert (await list_tools(http, kept)).status_code == 200
    assert_no_traceback(running)


async def test_a_session_that_never_made_a_request_expires_quickly(serve):
    # ``used`` must make its request within the timeout of its initialize answer: 3 s
    # leaves a loaded machine room for that round trip (with 0.5 s it was a race).
    running = serve(config="[http]\nunused_session_timeout_s = 3\n")
    async with httpx2.AsyncClient(base_url=running.url) as http:
        bare = await initialize(http)
        used = await initialize(http)
        assert (await list_tools(http, used)).status_code == 200
        expired = await next_event(running, "http.session_expired", within=60)
        assert expired["session"] == bare
        assert (await list_tools(http, bare)).status_code == 404
        assert (await list_tools(http, used)).status_code == 200


async def test_when_every_session_has_a_call_in_flight_a_new_one_gets_a_clear_503(
        workspace, fake_claude, serve):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "busy"}, {"hang": True}])
    running = serve(config="[http]\nmax_sessions = 1\n")
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    with anyio.fail_after(30):
        async with Client(running.url + "/mcp", mode="legacy") as client, \
                anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.call_tool("agent_reviewer", {"prompt": "go"},
                                                   progress_callback=on_progress))
            await busy.wait()
            async with httpx2.AsyncClient(base_url=running.url) as http:
                refused = await http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
            tg.cancel_scope.cancel()
    assert refused.status_code == 503
    assert "all 1 sessions have a call in flight" in refused.json()["error"]["message"]


# --- Host and Origin on every path (item 9) ---------------------------------------------

EVERY_PATH = [("POST", "/mcp"), ("GET", "/sse"),
              ("POST", "/messages/?session_id=00000000000000000000000000000000"),
              ("GET", "/health"), ("GET", "/ready")]


@pytest.mark.parametrize(("headers", "status"), [
    ({"Host": "evil.example"}, 421),
    ({"Origin": "http://evil.example"}, 403),
])
async def test_a_wrong_host_or_origin_is_refused_on_every_path(serve, headers, status):
    running = serve()
    async with httpx2.AsyncClient(base_url=running.url) as http:
        answers = {path: (await http.request(method, path, headers={**ACCEPT, **headers},
                                             json={} if method == "POST" else None)).status_code
                   for method, path in EVERY_PATH}
    assert answers == {path: status for _, path in EVERY_PATH}


# --- bad input gets a refusal, not a traceback (item 10) --------------------------------

def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_deeply_nested_json_gets_a_parse_error_not_a_traceback(serve):
    running = serve()
    deep = nested(20_000)  # 40 KB, far under the body cap
    async with httpx2.AsyncClient(base_url=running.url) as http:
        bare = await http.post("/mcp", content=deep, headers=ACCEPT)
        session = await initialize(http)
        envelope = (b'{"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"x": '
                    + deep + b"}}")
        inside = await http.post("/mcp", content=envelope, headers={
            **ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY})
        async with http.stream("GET", "/sse") as stream:
            lines = stream.aiter_lines()
            endpoint = ""
            async for line in lines:
                if line.startswith("data: "):
                    endpoint = line.removeprefix("data: ")
                    break
            over_sse = await http.post(endpoint, content=envelope, headers=ACCEPT)
    for answer in (bare, inside, over_sse):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == -32700
        assert "nested" in answer.json()["error"]["message"]
    assert_no_traceback(running)


@pytest.mark.parametrize(("cwd", "says"), [
    ("/tmp/a\0b", "NUL"),
    ("/" + "a/" * 3000, "too long"),
    ("/tmp/" + "x" * 300, "too long"),
])
async def test_a_cwd_no_file_system_accepts_is_refused_with_the_reason(
        workspace, fake_claude, serve, cwd, says):
    workspace.agent("reviewer")
    running = serve()
    with anyio.fail_after(20):
        async with Client(running.url + "/mcp", mode="legacy") as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go", "cwd": cwd})
    assert result.is_error
    text = result.content[0].text
    assert "cwd" in text and says in text and "internal error" not in text.lower()
    assert fake_claude.records() == []
    assert_no_traceback(running)
