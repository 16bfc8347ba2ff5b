"""``python -m bench.floor [--rounds N]``: where the per-call floor is (issue 18).

Every path runs the same trivial fake ``claude -p "Say ok."`` once per call, all of them in
the same rounds, in rotating order, in one process and one event loop; a path's added time is
the p50 of its per-round difference from running the fake directly. The paths: the bridge and
the MCP SDK's smallest server (``minimal_server.py``: runs the fake, nothing else), each over
stdio and Streamable HTTP (the SDK's own app for the minimal server), each driven by the SDK
client and by a raw client (JSON-RPC written and read with the standard library), so that
what the SDK client costs, what the SDK's server costs and what the bridge costs come apart.
Prints Markdown; the README's "Where the floor is" pools three runs of 400 rounds.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from .peers import _client, _direct, _floor
from .report import Table, ms
from .servers import (
    PROTOCOL,
    RawStdio,
    _children,
    bridge_client,
    cpu_seconds,
    http_server,
    serve_argv,
    stop,
)
from .workspace import BENCH_DIR, TOOL, Workspace, workspace

PROMPT = "Say ok."
MINIMAL = (sys.executable, str(BENCH_DIR / "minimal_server.py"))

Call = Callable[[], Awaitable[None] | None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    print(anyio.run(_measure, parser.parse_args(argv).rounds).markdown())
    return 0


async def _measure(rounds: int) -> Table:
    table = Table(f"Where the per-call floor is ({rounds} rounds, trivial fake)",
                  ["path", "added p50, paired (p25..p75) ms",
                   "client CPU / server CPU per call ms"])
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    with workspace("floor") as ws, ExitStack() as stack:
        async with AsyncExitStack() as astack:
            calls, pids = await _paths(ws, stack, astack)
            wall, client_cpu, server_cpu = await _rounds(calls, pids, rounds)
    direct = wall.pop("direct")
    for name, samples in wall.items():
        added = [a - b for a, b in zip(samples, direct, strict=True)]
        low, _, high = statistics.quantiles(added, n=4)
        table.add(name, f"{ms(statistics.median(added))} ({ms(low)}..{ms(high)})",
                  f"{ms(client_cpu[name] / rounds)} / {ms(server_cpu[name] / rounds)}")
    table.notes.append(f"load average {load} before; CPU in 10 ms clock ticks")
    return table


async def _paths(ws: Workspace, stack: ExitStack, astack: AsyncExitStack
                 ) -> tuple[dict[str, Call], dict[str, int]]:
    """Each path's call (``direct`` first), and the pid of the server behind it."""
    claude = ws.trivial_claude()
    env = ws.bridge_env(claude)
    floor_env = ws.bridge_env(claude, BENCH_CLAUDE=str(claude))
    log = ws.root / "servers.log"
    calls: dict[str, Call] = {
        "direct": functools.partial(anyio.to_thread.run_sync, _direct, claude, env, ws.project)}
    pids: dict[str, int] = {}
    name = "bridge, stdio, SDK client"
    client, pids[name] = await astack.enter_async_context(
        bridge_client("stdio", ws.project, env, None, log))
    calls[name] = _sdk(client, TOOL)
    name = "SDK minimal server, stdio, SDK client"
    before = _children()
    client = await astack.enter_async_context(_client(ws, _floor(), floor_env))
    [pids[name]] = _children() - before
    calls[name] = _sdk(client, "run")
    for name, argv, path_env, tool in (
            ("bridge, stdio, raw client", serve_argv(ws.project, None), env, TOOL),
            ("SDK minimal server, stdio, raw client", list(MINIMAL), floor_env, "run")):
        raw = RawStdio(argv, path_env, ws.project, log)
        stack.callback(raw.close)
        raw.initialize()
        calls[name], pids[name] = _blocking(raw.call, tool, PROMPT), raw.process.pid
    for server, start, tool in (("bridge", _bridge_http, TOOL),
                                ("SDK minimal server", _minimal_http, "run")):
        for kind in ("SDK client", "raw client"):  # a server each: CPU is per path
            name = f"{server}, Streamable HTTP, {kind}"
            own_log = ws.root / f"http-{len(pids)}.log"  # the URL is read from the log
            url, pids[name] = start(ws, stack, env if server == "bridge" else floor_env, own_log)
            if kind == "SDK client":
                client = await astack.enter_async_context(Client(url, mode="legacy"))
                await client.list_tools()
                calls[name] = _sdk(client, tool)
            else:
                raw_http = RawHttp(url)
                stack.callback(raw_http.close)
                calls[name] = _blocking(raw_http.call, tool)
    return calls, pids


async def _rounds(calls: dict[str, Call], pids: dict[str, int], rounds: int
                  ) -> tuple[dict[str, list[float]], dict[str, float], dict[str, float]]:
    """Wall time of every call by path, and client and server CPU seconds by path."""
    async def run(name: str) -> None:
        out = calls[name]()
        if inspect.isawaitable(out):
            await out

    for name in calls:  # warm up: every process started, every cache filled
        for _ in range(5):
            await run(name)
    wall: dict[str, list[float]] = {name: [] for name in calls}
    client_cpu = dict.fromkeys(calls, 0.0)
    server_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    order = list(calls)
    for index in range(rounds):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            cpu, began = time.process_time(), time.perf_counter()
            await run(name)
            wall[name].append(time.perf_counter() - began)
            client_cpu[name] += time.process_time() - cpu
    server_cpu = {name: cpu_seconds(pid) - server_before[name] for name, pid in pids.items()}
    return wall, client_cpu, server_cpu


def _blocking(function: Callable[..., object], *args: object) -> Call:
    def call() -> None:
        function(*args)
    return call


def _sdk(client: Client, tool: str) -> Call:
    async def ignore(progress: float, total: float | None, message: str | None) -> None:
        pass

    async def call() -> None:
        result = await client.call_tool(tool, {"prompt": PROMPT}, progress_callback=ignore)
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {result.content}")
    return call


def _bridge_http(ws: Workspace, stack: ExitStack, env: dict[str, str], log: Path
                 ) -> tuple[str, int]:
    url, pid = stack.enter_context(http_server(ws.project, env, None, log))
    return url + "/mcp", pid


def _minimal_http(ws: Workspace, stack: ExitStack, env: dict[str, str], log: Path
                  ) -> tuple[str, int]:
    with log.open("a") as errlog:
        process = subprocess.Popen([*MINIMAL, "--http"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=errlog, env=env,
                                   cwd=ws.project)
    stack.callback(stop, process)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("PORT "):
        raise RuntimeError(f"the minimal HTTP server did not start ({line!r}); see {log}")
    return f"http://127.0.0.1:{int(line.split()[1])}/mcp", process.pid


class RawHttp:
    """JSON-RPC over Streamable HTTP with the standard library's ``http.client``: one
    keep-alive connection, the session header, the SSE answer scanned line by line."""

    def __init__(self, url: str) -> None:
        host_port, _, path = url.split("://", 1)[1].partition("/")
        host, _, port = host_port.partition(":")
        self._path, self._next_id = "/" + path, 0
        self._connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self._headers = {"Content-Type": "application/json",
                         "Accept": "application/json, text/event-stream"}
        result = self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                             "clientInfo": {"name": "bench", "version": "0"}})
        self._headers["mcp-protocol-version"] = result["protocolVersion"]
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}).read()

    def call(self, tool: str) -> None:
        self._next_id += 1  # its progress token; request() takes the next id
        result = self.request("tools/call", {"name": tool, "arguments": {"prompt": PROMPT},
                                             "_meta": {"progressToken": self._next_id}})
        if result.get("isError"):
            raise RuntimeError(f"{tool} failed: {result.get('content')}")

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        ours = self._next_id
        response = self._post({"jsonrpc": "2.0", "id": ours, "method": method,
                               "params": params})
        if response.status != 200:
            raise RuntimeError(f"{method}: HTTP {response.status} {response.read()[:300]!r}")
        if session := response.getheader("mcp-session-id"):
            self._headers["mcp-session-id"] = session
        if (response.getheader("content-type") or "").startswith("application/json"):
            return dict(json.loads(response.read())["result"])
        found: dict[str, Any] | None = None
        for line in response:  # SSE: progress events, then the answer, then the end
            if found is None and line.startswith(b"data:") and b'"id"' in line:
                message = json.loads(line[5:])
                found = message if message.get("id") == ours else None
        if found is None or "error" in found:
            raise RuntimeError(f"{method}: {found}")
        return dict(found["result"])

    def _post(self, body: dict[str, Any]) -> http.client.HTTPResponse:
        self._connection.request("POST", self._path, json.dumps(body).encode(), self._headers)
        return self._connection.getresponse()

    def close(self) -> None:
        self._connection.close()


if __name__ == "__main__":
    sys.exit(main())
