"""Bridge processes for the benchmarks: an SDK client over stdio or Streamable HTTP, a raw
JSON-RPC pipe, and the memory figures of a running server.

Every server is ``python -m claude_mcp_bridge serve`` under this interpreter, run exactly as a
user would, with its log on a file in the workspace.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

from mcp import Client, StdioServerParameters
from mcp.client.session import MessageHandlerFnT
from mcp.client.stdio import stdio_client

Transport = Literal["stdio", "http"]

PROTOCOL = "2025-11-25"


SERVE = ("-m", "claude_mcp_bridge")


def serve_argv(
    project: Path, config: Path | None, *extra: str, entry: Sequence[str] = SERVE
) -> list[str]:
    """``python -m claude_mcp_bridge serve ...``; ``entry`` replaces ``-m claude_mcp_bridge``."""
    argv = [sys.executable, *entry, "serve", "--project-dir", str(project),
            "--log-format", "json", *extra]
    return argv + (["--config", str(config)] if config else [])


@asynccontextmanager
async def bridge_client(
    transport: Transport, project: Path, env: Mapping[str, str], config: Path | None,
    log: Path, message_handler: MessageHandlerFnT | None = None,
) -> AsyncIterator[tuple[Client, int]]:
    """An open SDK session (2025 handshake, as today's desktop clients) and the server's pid."""
    if transport == "stdio":
        async with _stdio(project, env, config, log, message_handler) as opened:
            yield opened
    else:
        with http_server(project, env, config, log) as (url, pid):
            async with Client(url + "/mcp", mode="legacy", message_handler=message_handler) as c:
                yield c, pid


@asynccontextmanager
async def _stdio(
    project: Path, env: Mapping[str, str], config: Path | None, log: Path,
    message_handler: MessageHandlerFnT | None,
) -> AsyncIterator[tuple[Client, int]]:
    command, *args = serve_argv(project, config)
    params = StdioServerParameters(command=command, args=args, env=dict(env), cwd=project)
    before = _children()
    with log.open("a") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode="legacy", message_handler=message_handler) as client:
            [pid] = _children() - before
            yield client, pid


@contextmanager
def http_server(
    project: Path, env: Mapping[str, str], config: Path | None, log: Path
) -> Iterator[tuple[str, int]]:
    """``serve --transport http --port 0``; yields its URL (from the ``http.listening`` log
    line) and pid, and stops it with SIGTERM as a service manager would."""
    argv = serve_argv(project, config, "--transport", "http", "--port", "0")
    with log.open("a") as errlog:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                                   env=dict(env), cwd=project)
    try:
        yield _listening_url(log, process), process.pid
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    """SIGTERM, as a service manager would; SIGKILL if it is still there after ``grace_s``."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _listening_url(log: Path, process: subprocess.Popen[bytes], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"http.listening"' in line:
                return str(json.loads(line)["url"])
        if process.poll() is not None:
            raise RuntimeError(f"the HTTP bridge exited with {process.returncode}; see {log}")
        time.sleep(0.01)
    raise RuntimeError(f"the HTTP bridge did not log http.listening within {timeout}s; see {log}")


def _children() -> set[int]:
    """The pids of this process's children (Linux /proc)."""
    me = str(os.getpid())
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            found.add(int(stat.parent.name))
    return found


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of ``pid``, in MB."""
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) / 1024
    return figures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid``, all its threads, not its children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawStdio:
    """JSON-RPC over a bridge's stdin/stdout with nothing in between: no client-side parsing of
    the answer, so the time is the server's (and the pipe's)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> None:
        self._errlog = log.open("a")
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._errlog, env=dict(env), cwd=cwd)
        self._next_id = 0
        self.last_bytes = 0

    def request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                    "params": dict(params or {})})
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the bridge closed its stdout (exit {self.process.poll()})")
            message = json.loads(line)
            if message.get("id") == self._next_id:
                self.last_bytes = len(line)
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return dict(message["result"])

    def receive(self, method: str) -> int:
        """Send a request and read its whole answer without parsing it (a JSON decode of a
        5 MB answer takes the client longer than the server takes to send it); its size."""
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": {}})
        assert self.process.stdout is not None
        ours = re.compile(rb'"id":\s*%d[,}]' % self._next_id)
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the bridge closed its stdout (exit {self.process.poll()})")
            if ours.search(line, 0, 200):  # the SDK writes "jsonrpc", then "id", first
                if b'"error"' in line[:200]:
                    raise RuntimeError(f"{method} failed: {line[:500]!r}")
                self.last_bytes = len(line)
                return len(line)

    def call(self, tool: str, prompt: str) -> dict[str, Any]:
        """A ``tools/call`` with a progress token; the progress frames are read and dropped."""
        result = self.request("tools/call", {"name": tool, "arguments": {"prompt": prompt},
                                             "_meta": {"progressToken": self._next_id + 1}})
        if result.get("isError"):
            raise RuntimeError(f"tools/call failed: {result.get('content')}")
        return result

    def initialize(self) -> None:
        self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "0"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # EOF: the bridge stops as it does when a client goes away
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._errlog.close()
