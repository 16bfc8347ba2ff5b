"""1. Added latency: a call through the bridge vs the same ``claude -p`` run directly.

The direct run is what a minimal script would do: ``subprocess.run`` of the very argv, env and
cwd the bridge builds (recorded by a shim during one ``claude-mcp-bridge call``), the prompt on
stdin, every byte of output read. The bridge calls go through the SDK client on a session that
is already open, over stdio and over Streamable HTTP. The three are interleaved round by round,
in a rotating order, so machine noise falls on all of them alike.

With ``--config`` the bridges read that file, so a warm pool (``[warm] size > 0``) shows up as
a bridge faster than the direct run; the direct run stays a cold ``claude -p`` (an
``--input-format stream-json`` in the recorded argv is dropped and the prompt sent as text).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from .baseline import baseline_env, baseline_tree
from .options import Options, real_claude
from .report import Table, ms, p50, p95
from .servers import Transport, bridge_client, cpu_seconds
from .workspace import TOOL, Workspace, workspace

TARGET_S = 0.010
PATHS = ("stdio", "http", "direct")
BEFORE = " (baseline)"
"""Suffix of the paths served by the ``--baseline`` revision's bridge."""


@dataclass
class Measured:
    """Per path: wall time of each call, and CPU seconds summed over all of them."""

    paths: Sequence[str] = PATHS
    wall: dict[str, list[float]] = field(default_factory=dict)
    server_cpu: dict[str, float] = field(default_factory=dict)
    client_cpu: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in self.paths:
            self.wall[path], self.server_cpu[path], self.client_cpu[path] = [], 0.0, 0.0


@dataclass(frozen=True)
class Recorded:
    """One child as the bridge starts it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


async def bench_latency(options: Options) -> Table:
    table = Table("1. Added latency of a call (bridge vs direct `claude -p`)",
                  ["CLI", "path", "calls", "p50 ms", "p95 ms", "added p50 ms",
                   "added, paired p50 ms", "ratio p50", "server CPU/call ms",
                   "client CPU/call ms"])
    await _measure(table, "trivial fake", options, options.count(100, 20))
    claude = real_claude()
    if claude is None:
        table.notes.append("real CLI: skipped, not installed (run .ci/run, or set "
                           "CLAUDE_MCP_BRIDGE_REAL_CLAUDE)")
    else:
        await _measure(table, "real 2.1.197 + scripted model", options,
                       options.count(40, 2), claude)
    table.notes.append("added = p50(bridge) - p50(direct); paired = p50 of the per-round "
                       "differences; ratio = p50(bridge) / p50(direct). Calls ask for progress. "
                       "CPU: the bridge process (all threads, not its children) and this "
                       "benchmark process (SDK client; with the real CLI also the scripted "
                       "model server), averaged over the calls (10 ms clock ticks).")
    if options.config:
        table.notes.append(f"bridges ran with the config file {options.config.name}")
    if options.baseline:
        table.notes.append(f"rows marked{BEFORE}: the bridge as of `{options.baseline}`, "
                           "in the same rounds (bench/baseline.py)")
    return table


async def _measure(
    table: Table, label: str, options: Options, rounds: int, claude: Path | None = None
) -> None:
    with workspace("latency") as ws, ExitStack() as stack:
        if claude is None:
            target = ws.trivial_claude()
        else:
            from tests.fakes.messages_api import scripted_model

            model = stack.enter_context(scripted_model())  # answers every turn with "done"
            ws.env_extra.update(model.cli_env(str(ws.home)))
            target = claude
        prompt = "Say ok."
        recorded = _record(ws, target, prompt, options.config)
        measured = await _interleaved(ws, target, options, recorded, prompt, rounds,
                                      warm_up=1 if claude else 3)
    direct = measured.wall["direct"]
    for path in measured.paths:
        runs = measured.wall[path]
        row: list[object] = [label, path, len(runs), ms(p50(runs)), ms(p95(runs))]
        if path == "direct":
            row += ["", "", "", ""]
        else:
            added = p50(runs) - p50(direct)
            paired = p50([b - d for b, d in zip(runs, direct, strict=True)])
            row += [ms(added), ms(paired), f"{p50(runs) / p50(direct):.2f}",
                    ms(measured.server_cpu[path] / len(runs))]
            if len(runs) >= 10 and not path.endswith(BEFORE):
                table.target(f"{label}, {path}: bridge adds < 10 ms p50", added < TARGET_S,
                             f"{ms(added)} ms")
            else:
                table.notes.append(f"{label}, {path}: {len(runs)} calls are too few to judge "
                                   "the 10 ms target; run without --quick")
        table.add(*row, ms(measured.client_cpu[path] / len(runs)))


def _record(ws: Workspace, target: Path, prompt: str, config: Path | None) -> Recorded:
    """Run one ``claude-mcp-bridge call`` through a recording shim: the child's argv, env, cwd."""
    record = ws.root / "recorded.json"
    shim = ws.recording_shim(target, record)
    argv = [sys.executable, "-m", "claude_mcp_bridge", "call", TOOL, prompt,
            "--project-dir", str(ws.project), "--log-level", "WARNING"]
    argv += ["--config", str(config)] if config else []
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ws.project,
                          env=ws.bridge_env(shim), timeout=120)
    if done.returncode != 0 or not record.is_file():
        raise RuntimeError(f"recording the child's command failed ({done.returncode}): "
                           f"{done.stdout[-500:]} {done.stderr[-1500:]}")
    data = json.loads(record.read_text())
    return Recorded(_cold(data["argv"]), data["env"], data["cwd"])


def _cold(argv: Sequence[str]) -> list[str]:
    """The argv of a plain cold run: a warm pool's ``--input-format stream-json`` removed."""
    cold: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--input-format":
            skip = True
        elif not arg.startswith("--input-format="):
            cold.append(arg)
    return cold


async def _interleaved(
    ws: Workspace, target: Path, options: Options, recorded: Recorded, prompt: str,
    rounds: int, warm_up: int,
) -> Measured:
    env = ws.bridge_env(target)
    bridges = {"stdio": env, "http": env}
    if options.baseline:
        tree = baseline_tree(options.baseline)
        bridges |= {f"stdio{BEFORE}": baseline_env(env, tree),
                    f"http{BEFORE}": baseline_env(env, tree)}
    async with AsyncExitStack() as stack:
        servers: dict[str, int] = {}
        calls: dict[str, Callable[[], Awaitable[None]]] = {}
        for index, (path, bridge_env) in enumerate(bridges.items()):
            transport: Transport = "stdio" if path.startswith("stdio") else "http"
            log = ws.root / f"bridge-{index}.log"  # the HTTP URL is read from its own log
            client, servers[path] = await stack.enter_async_context(
                bridge_client(transport, ws.project, bridge_env, options.config, log))
            calls[path] = functools.partial(_bridge_call, client, prompt)
        calls["direct"] = functools.partial(anyio.to_thread.run_sync, _direct_run, recorded,
                                            target, prompt)
        for call in calls.values():  # warm up: imports, first-call tools/list, page cache
            for _ in range(warm_up):
                await call()
        measured = Measured(list(calls))
        order = list(calls)
        for index in range(rounds):
            shift = index % len(order)
            for path in order[shift:] + order[:shift]:
                server = servers.get(path)
                server_cpu = cpu_seconds(server) if server else 0.0
                client_cpu = time.process_time()
                began = time.perf_counter()
                await calls[path]()
                measured.wall[path].append(time.perf_counter() - began)
                measured.client_cpu[path] += time.process_time() - client_cpu
                if server:
                    measured.server_cpu[path] += cpu_seconds(server) - server_cpu
        return measured


async def _ignore(progress: float, total: float | None, message: str | None) -> None:
    pass


async def _bridge_call(client: Client, prompt: str) -> None:
    result = await client.call_tool(TOOL, {"prompt": prompt}, progress_callback=_ignore)
    if result.is_error:
        text = getattr(result.content[0], "text", "") if result.content else ""
        raise RuntimeError(f"the bridge call failed: {text}")


def _direct_run(recorded: Recorded, target: Path, prompt: str) -> None:
    done = subprocess.run([str(target), *recorded.argv], input=prompt.encode(),
                          capture_output=True, env=recorded.env, cwd=recorded.cwd,
                          start_new_session=True, timeout=120)
    result = _last_result(done.stdout)
    if done.returncode != 0 or result is None or result.get("is_error"):
        raise RuntimeError(f"the direct run failed ({done.returncode}): {done.stderr[-500:]!r}")


def _last_result(stdout: bytes) -> Mapping[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(b"{"):
            frame = json.loads(line)
            if frame.get("type") == "result":
                return dict(frame)
    return None
