"""``python -m bench --peers``: the bridge beside its peers, on the same fake ``claude``.

Optional and never part of the tests. Each peer is installed from npm at its pinned version
into ``.cache/peers/<name>/`` (ignored by git) on first use; one npm cannot install is
skipped, with npm's reason in the notes. Each finds the fake CLI its own way:

- ``@steipete/claude-code-mcp`` 1.10.12: ``CLAUDE_CLI_NAME`` (an absolute path); its tool
  ``claude_code`` runs ``claude --dangerously-skip-permissions -p PROMPT``, stdin ignored.
- ``sub-agents-mcp`` 0.12.0 (shinpr): ``AGENT_TYPE=claude`` finds ``claude`` on ``PATH``,
  ``AGENTS_DIR`` holds the one agent.

A peer's tool is the first it lists; its arguments are filled from the tool's schema (the
prompt, an agent name, a working folder). Three figures per server, side by side: added
latency per call (rounds in rotating order, each against the same fake run directly),
spawn to the first ``tools/list`` answer (alternated, raw JSON-RPC), and an 8-wide burst of
40 calls of 0.5 s with each server's default concurrency (alternated, best of 2).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from .concurrency import WIDE, WIDE_CALLS, _sleeper
from .options import Options
from .report import Table, ms, p50
from .servers import RawStdio, serve_argv
from .workspace import BENCH_DIR, REPO, TOOL, Workspace, workspace

PEERS_DIR = REPO / ".cache" / "peers"
PROMPT = "Say ok."


@dataclass(frozen=True)
class Peer:
    name: str
    package: str
    version: str
    bin: str

    def env(self, ws: Workspace, claude: Path) -> dict[str, str]:
        agents = ws.root / "peer-agents"
        agents.mkdir(exist_ok=True)
        (agents / "bench.md").write_text("# Bench\n\nAnswer in one word.\n")
        on_path = ws.root / f"path-{claude.name}"  # ``claude`` on PATH is this fake
        on_path.mkdir(exist_ok=True)
        if not (on_path / "claude").exists():
            (on_path / "claude").symlink_to(claude)
        return {"PATH": f"{on_path}{os.pathsep}{os.environ.get('PATH', '')}",
                "HOME": str(ws.home), "CLAUDE_CLI_NAME": str(claude),
                "AGENT_TYPE": "claude", "AGENTS_DIR": str(agents)}


PEERS = (
    Peer("claude-code-mcp", "@steipete/claude-code-mcp", "1.10.12", "claude-code-mcp"),
    Peer("sub-agents-mcp", "sub-agents-mcp", "0.12.0", "sub-agents-mcp"),
)


@dataclass
class Server:
    """How to start one server under test, and how to call it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    tool: str = TOOL
    arguments: dict[str, Any] | None = None


async def bench_peers(options: Options) -> Table:
    table = Table("6. Peers: the same fake `claude`, side by side",
                  ["server", "added p50 ms (paired)", "start to tools/list s",
                   f"{WIDE}-wide burst of {WIDE_CALLS} x t s (vs ideal)"])
    installed = [peer for peer in PEERS if _install(peer, table)]
    with workspace("peers") as ws:
        servers = [_bridge(ws), _floor(), *(_peer_server(ws, peer) for peer in installed)]
        latency = await _latency(ws, servers, options.count(100, 15))
        starts = _starts(ws, servers, options.count(5, 1))
        burst_s = options.count(0.5, 0.1)
        bursts = await _bursts(ws, servers, burst_s, options.count(2, 1))
    ideal = -(-WIDE_CALLS // WIDE) * burst_s
    for server in servers:
        table.add(server.name, ms(latency[server.name]), f"{p50(starts[server.name]):.3f}",
                  f"{bursts[server.name]:.2f} ({(bursts[server.name] / ideal - 1) * 100:+.0f} %)")
    table.notes.append(f"t = {burst_s:g} s, ideal {ideal:.2f} s; the bridge with its default "
                       "config (policy, budget ledger and progress on)")
    return table


def _install(peer: Peer, table: Table) -> bool:
    folder = PEERS_DIR / peer.name
    if (folder / "node_modules" / ".bin" / peer.bin).exists():
        return True
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder),
                           f"{peer.package}@{peer.version}"], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["?"])[0]
        table.notes.append(f"{peer.package}@{peer.version}: not installed ({reason})")
        return False
    return True


def _bridge(ws: Workspace) -> Server:
    return Server("claude-mcp-bridge (this branch)", serve_argv(ws.project, None), {})


def _floor() -> Server:
    """The MCP SDK's smallest server running the fake, and nothing else: the floor for a
    Python server on this SDK, with the same client."""
    return Server("MCP SDK minimal server (Python; runs the fake, nothing else)",
                  [sys.executable, str(BENCH_DIR / "minimal_server.py")], {"floor": "1"},
                  tool="run", arguments={"prompt": PROMPT})


def _peer_server(ws: Workspace, peer: Peer) -> Server:
    script = PEERS_DIR / peer.name / "node_modules" / ".bin" / peer.bin
    return Server(f"{peer.package} {peer.version}", [str(script.resolve())], {"peer": peer.name})


def _env(ws: Workspace, server: Server, claude: Path, **extra: str) -> dict[str, str]:
    peer = next((p for p in PEERS if p.name == server.env.get("peer")), None)
    if server.env.get("floor"):
        return ws.bridge_env(claude, BENCH_CLAUDE=str(claude), **extra)
    if peer is None:
        return ws.bridge_env(claude, **extra)
    return {**peer.env(ws, claude), **extra}


@asynccontextmanager
async def _client(ws: Workspace, server: Server, env: dict[str, str]) -> AsyncIterator[Client]:
    command, *args = server.argv
    params = StdioServerParameters(command=command, args=args, env=env, cwd=ws.project)
    with (ws.root / "servers.log").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            tools = (await client.list_tools()).tools  # as every client does before calling:
            if server.arguments is None:  # start-up is measured on its own, not in a burst
                server.tool, server.arguments = _tool_and_arguments(ws, tools)
            yield client


def _tool_and_arguments(ws: Workspace, tools: list[Any]) -> tuple[str, dict[str, Any]]:
    tool = tools[0]
    arguments: dict[str, Any] = {}
    for key in tool.input_schema.get("properties", {}):
        lowered = key.lower()
        if "prompt" in lowered or lowered in ("task", "message", "input"):
            arguments[key] = PROMPT
        elif "agent" in lowered:
            arguments[key] = "bench"
        elif "cwd" in lowered or "folder" in lowered or "dir" in lowered:
            arguments[key] = str(ws.project)
    return tool.name, arguments


async def _call(client: Client, server: Server) -> None:
    result = await client.call_tool(server.tool, server.arguments or {"prompt": PROMPT},
                                    progress_callback=_ignore)
    if result.is_error:
        raise RuntimeError(f"{server.name}: {getattr(result.content[0], 'text', '?')[:300]}")


async def _ignore(progress: float, total: float | None, message: str | None) -> None:
    pass


async def _latency(ws: Workspace, servers: list[Server], rounds: int) -> dict[str, float]:
    claude = ws.trivial_claude()
    calls: dict[str, Callable[[], Awaitable[None]]] = {}
    async with AsyncExitStack() as stack:
        for server in servers:
            client = await stack.enter_async_context(
                _client(ws, server, _env(ws, server, claude)))
            calls[server.name] = functools.partial(_call, client, server)
        env = ws.bridge_env(claude)
        calls["direct"] = functools.partial(anyio.to_thread.run_sync, _direct, claude, env,
                                            ws.project)
        for call in calls.values():
            for _ in range(3):
                await call()
        wall: dict[str, list[float]] = {name: [] for name in calls}
        order = list(calls)
        for index in range(rounds):
            shift = index % len(order)
            for name in order[shift:] + order[:shift]:
                began = time.perf_counter()
                await calls[name]()
                wall[name].append(time.perf_counter() - began)
    return {name: p50([a - d for a, d in zip(wall[name], wall["direct"], strict=True)])
            for name in calls if name != "direct"}


def _direct(claude: Path, env: dict[str, str], cwd: Path) -> None:
    subprocess.run([str(claude), "-p", PROMPT], stdin=subprocess.DEVNULL, capture_output=True,
                   env=env, cwd=cwd, check=True, start_new_session=True)


def _starts(ws: Workspace, servers: list[Server], count: int) -> dict[str, list[float]]:
    claude = ws.trivial_claude()
    starts: dict[str, list[float]] = {server.name: [] for server in servers}
    for _ in range(count):
        for server in servers:
            began = time.perf_counter()
            raw = RawStdio(server.argv, _env(ws, server, claude), ws.project,
                           ws.root / "servers.log")
            try:
                raw.initialize()
                raw.request("tools/list")
                starts[server.name].append(time.perf_counter() - began)
            finally:
                raw.close()
    return starts


async def _bursts(ws: Workspace, servers: list[Server], child_s: float,
                  rounds: int) -> dict[str, float]:
    sleeper = _sleeper(ws)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for server in servers:
            env = _env(ws, server, sleeper, BENCH_SLEEP=str(child_s))
            async with _client(ws, server, env) as client:
                limiter = anyio.CapacityLimiter(WIDE)

                async def one(client: Client = client, server: Server = server,
                              limiter: anyio.CapacityLimiter = limiter) -> None:
                    async with limiter:
                        await _call(client, server)

                began = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for _ in range(WIDE_CALLS):
                        tg.start_soon(one)
                span = time.perf_counter() - began
            best[server.name] = min(span, best.get(server.name, span))
    return best
