"""3. Concurrency: 200 calls at once with ``max_concurrency`` 8 against a child that takes ``t``.

The ideal makespan is ``ceil(200 / 8) * t``. The child is a shell script that sleeps ``t``
(a few ms of start-up, so 8 of them starting together barely compete for the CPUs), and the
same 200 runs are also made directly, 8 at a time, without the bridge: what the bridge adds is
the difference. The server's CPU time per call and its memory (``/proc`` status) before the
first burst and after each one are reported too.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from functools import partial
from pathlib import Path

import anyio
from mcp import Client

from .options import Options
from .report import Table
from .servers import bridge_client, cpu_seconds, memory_mb
from .workspace import TOOL, Workspace, toml_config, workspace

CALLS, SLOTS = 200, 8
WIDE_CALLS, WIDE = 40, 8
"""The burst a client fanning out sends: 8 calls in flight at a time, with the default
config (``[limits] max_concurrency``)."""
TARGET = 0.05

_INIT = {"type": "system", "subtype": "init", "session_id": "s", "model": "bench", "tools": [],
         "mcp_servers": []}
_RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "ok",
           "session_id": "s", "total_cost_usd": 0, "num_turns": 1, "usage": {}}
SLEEPER = ("#!/bin/sh\n"
           'case " $* " in *" --input-format stream-json "*) read -r _ ;;\n'
           "  *) cat >/dev/null ;;\nesac\n"
           f"echo '{json.dumps(_INIT)}'\n"
           f"sleep \"${{BENCH_SLEEP:-0}}\"\necho '{json.dumps(_RESULT)}'\n")
"""A ``claude`` that reads its prompt (all of stdin; with ``--input-format stream-json`` the
first message, as the bridge keeps stdin open for a live session), prints init, sleeps
$BENCH_SLEEP, prints a result."""


async def bench_concurrency(options: Options) -> Table:
    child_s = options.count(0.25, 0.1)
    bursts = options.count(2, 1)
    table = Table(f"3. Concurrency: {CALLS} calls, max_concurrency {SLOTS}, child sleeps "
                  f"{child_s:g} s", ["measure", "value"])
    with workspace("concurrency") as ws:
        claude = _sleeper(ws)
        env = ws.bridge_env(claude, BENCH_SLEEP=str(child_s))
        direct = await _direct_pool(claude, env, child_s)
        config = ws.config(toml_config({"limits": {"max_concurrency": SLOTS,
                                                   "max_queue": CALLS * 2}}))
        async with bridge_client("stdio", ws.project, env, config,
                                 ws.root / "bridge.log") as (client, pid):
            await _burst(client, SLOTS)  # warm up: imports, the first call's tools/list
            memory = [memory_mb(pid)]
            spans, cpu = [], []
            for _ in range(bursts):
                used = cpu_seconds(pid)
                spans.append(await _burst(client, CALLS))
                cpu.append((cpu_seconds(pid) - used) / CALLS)
                memory.append(memory_mb(pid))
        wide_s = options.count(0.5, 0.1)
        env = ws.bridge_env(claude, BENCH_SLEEP=str(wide_s))
        async with bridge_client("stdio", ws.project, env, None,
                                 ws.root / "bridge.log") as (client, pid):
            await _burst(client, WIDE)
            wide = min([await _burst(client, WIDE_CALLS, WIDE) for _ in range(bursts)])
    ideal = math.ceil(CALLS / SLOTS) * child_s
    makespan = min(spans)
    table.add(f"ideal ceil({CALLS}/{SLOTS}) x t (s)", f"{ideal:.3f}")
    table.add(f"same runs made directly, {SLOTS} at a time (s)", f"{direct:.3f}")
    table.add(f"through the bridge (s), best of {bursts}", f"{makespan:.3f}")
    table.add("bridge overhead vs ideal", _percent(makespan, ideal))
    table.add("bridge overhead vs direct", _percent(makespan, direct))
    table.add("server CPU per call (ms)", ", ".join(f"{c * 1000:.1f}" for c in cpu))
    table.add("server VmRSS before, after each burst (MB)",
              " / ".join(f"{m['VmRSS']:.0f}" for m in memory))
    table.add("server VmHWM, peak (MB)", f"{memory[-1]['VmHWM']:.0f}")
    wide_ideal = math.ceil(WIDE_CALLS / WIDE) * wide_s
    table.add(f"default config, {WIDE_CALLS} calls of {wide_s:g} s, {WIDE} at a time: "
              f"makespan (s), best of {bursts}", f"{wide:.3f}")
    table.add(f"  vs ideal ceil({WIDE_CALLS}/{WIDE}) x t = {wide_ideal:.2f} s",
              _percent(wide, wide_ideal))
    table.target(f"an {WIDE}-wide burst with the default max_concurrency within 10 % of "
                 "the ideal", wide <= wide_ideal * 1.10, _percent(wide, wide_ideal))
    table.target("makespan within 5 % of the ideal", makespan <= ideal * (1 + TARGET),
                 _percent(makespan, ideal))
    growth = memory[-1]["VmRSS"] - memory[1]["VmRSS"] if bursts > 1 else 0.0
    if options.quick:
        table.notes.append(f"--quick: t = {child_s:g} s, so the fixed cost per wave weighs "
                           "more than in the full run (t = 0.25 s) the target is set for")
    table.notes.append("makespans: " + ", ".join(f"{s:.3f} s" for s in spans)
                       + (f"; RSS change from burst 1 to {bursts}: {growth:+.1f} MB"
                          if bursts > 1 else ""))
    return table


def _sleeper(ws: Workspace) -> Path:
    path = ws.root / "bin" / "sleeper-claude"
    path.parent.mkdir(exist_ok=True)
    path.write_text(SLEEPER)
    path.chmod(0o755)
    return path


async def _burst(client: Client, calls: int, wide: int | None = None) -> float:
    """``calls`` at once, or ``wide`` at a time, as a client fanning out would."""
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(wide or calls)

    async def one() -> None:
        async with limiter:
            result = await client.call_tool(TOOL, {"prompt": "go"})
        if result.is_error:
            failures.append(getattr(result.content[0], "text", "?"))

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one)
    span = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} of {calls} calls failed, first: {failures[0]}")
    return span


async def _direct_pool(claude: Path, env: dict[str, str], child_s: float) -> float:
    limiter = anyio.CapacityLimiter(SLOTS)

    def one() -> None:
        subprocess.run([str(claude), "-p"], input=b"go", capture_output=True, check=True,
                       env=env, start_new_session=True)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(CALLS):
            tg.start_soon(partial(anyio.to_thread.run_sync, one, limiter=limiter))
    return time.perf_counter() - began


def _percent(value: float, base: float) -> str:
    return f"{(value / base - 1) * 100:+.1f} %"
