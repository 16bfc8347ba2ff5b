"""6. Start-up: spawn to ``initialize`` answered and to the first ``tools/list`` answered.

Claude Code 2.1.332 connects MCP servers in the background: a server that is slow to answer
``initialize`` and ``tools/list`` misses the first model turn. Each round spawns, in a rotating
order so machine noise falls on all alike:

- ``python -c "import mcp.server"``: the interpreter and the SDK's imports, nothing else
  (spawn to the line it prints once the import is done; its exit is not counted);
- ``bench/minimal_server.py``: the smallest stdio server the SDK allows (one tool);
- ``claude-mcp-bridge serve`` (stdio) on 1 and on 100 definitions.

The bridge's own share is its p50 minus the minimal server's p50 (paired per round, too), and
minus the bare import. Raw JSON-RPC on the pipes: no client-side parsing is counted.

``$CLAUDE_MCP_BRIDGE_BENCH_BEFORE`` (a checkout of another version, e.g. a ``git worktree``)
adds that bridge's rows to the same rounds, so a change is measured side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .options import Options
from .report import Table, ms, p50, p95
from .servers import RawStdio, serve_argv
from .workspace import BENCH_DIR, Workspace, generate_definitions, workspace

TARGET_S = 0.050
IMPORT = "import mcp.server"
BEFORE_VAR = "CLAUDE_MCP_BRIDGE_BENCH_BEFORE"
Sample = tuple[float, float, float]
"""Seconds from spawn to the ``initialize`` answer and to the ``tools/list`` answer, and the
server's CPU seconds when ``initialize`` was answered."""


async def bench_startup(options: Options) -> Table:
    table = Table("6. Start-up: spawn to initialize / tools/list answered (stdio)",
                  ["server", "starts", "initialize p50 ms", "p95 ms", "tools/list p50 ms",
                   "p95 ms", "CPU at initialize p50 ms",
                   "beyond minimal server: wall, paired p50 / CPU p50 ms"])
    rounds = options.count(15, 3)
    with workspace("startup-one") as one, workspace("startup-hundred") as hundred:
        generate_definitions(hundred, 80, 19)  # + the workspace's own agent: 100 tools
        starts: dict[str, Callable[[], Sample]] = {
            "`python -c \"import mcp.server\"` (spawn to import done)": _bare_import,
            "minimal SDK server (1 tool)": lambda: _server([sys.executable, str(MINIMAL)], one),
            "bridge, 1 definition": lambda: _server(serve_argv(one.project, None), one),
            "bridge, 100 definitions": lambda: _server(serve_argv(hundred.project, None),
                                                       hundred),
        }
        checkout = _before_checkout()
        if checkout is not None:
            starts[f"bridge at {checkout.name}, 1 definition"] = lambda: _server(
                serve_argv(one.project, None), one, checkout)
            starts[f"bridge at {checkout.name}, 100 definitions"] = lambda: _server(
                serve_argv(hundred.project, None), hundred, checkout)
        samples: dict[str, list[Sample]] = {name: [] for name in starts}
        names = list(starts)
        for index in range(rounds):
            for name in names[index % len(names):] + names[: index % len(names)]:
                samples[name].append(starts[name]())
    minimal = samples[names[1]]
    minimal_cpu = p50([s[2] for s in minimal])
    for index, name in enumerate(names):
        init, listed, cpu = ([s[i] for s in samples[name]] for i in range(3))
        beyond = ""
        if name.startswith("bridge"):
            paired = [b[0] - m[0] for b, m in zip(samples[name], minimal, strict=True)]
            cpu_share = p50(cpu) - minimal_cpu
            beyond = f"{ms(p50(paired))} / {ms(cpu_share)}"
            table.target(f"{name}: its own CPU before answering initialize < "
                         f"{TARGET_S * 1000:g} ms beyond the minimal SDK server",
                         cpu_share < TARGET_S, f"{ms(cpu_share)} ms")
        table.add(name, len(init), ms(p50(init)), ms(p95(init)),
                  ms(p50(listed)) if index else "", ms(p95(listed)) if index else "",
                  ms(p50(cpu)), beyond)
    table.notes.append(
        "wall, paired = p50 of the per-round differences of the initialize figures (on a loaded "
        "machine wall times move by hundreds of ms); CPU = user + system time of the server's "
        "main thread when its initialize answer arrived (10 ms ticks; the bridge builds itself "
        "in a worker thread after the handshake), which waiting for a CPU does not inflate: the "
        "target is held to it. Rounds run in a rotating order.")
    return table


MINIMAL = BENCH_DIR / "minimal_server.py"


def main_thread_cpu(pid: int) -> float:
    """User + system CPU seconds of the main thread of ``pid`` (Linux /proc): the bridge builds
    itself in a worker thread once the handshake is answered, which is not counted."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _before_checkout() -> Path | None:
    before = os.environ.get(BEFORE_VAR)
    return Path(before).resolve() if before else None


def _bare_import() -> Sample:
    began = time.perf_counter()
    with subprocess.Popen([sys.executable, "-c", f"{IMPORT}; print('imported', flush=True)"],
                          stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        process.stdout.readline()
        seconds = time.perf_counter() - began
        cpu = main_thread_cpu(process.pid)
    return seconds, seconds, cpu


def _server(argv: list[str], ws: Workspace, checkout: Path | None = None) -> Sample:
    env = ws.bridge_env(ws.root / "no-claude")
    if checkout is not None:  # its own ledger: its schema may be older than this one's
        env.update(PYTHONPATH=str(checkout),
                   CLAUDE_MCP_BRIDGE_DATA_DIR=str(ws.root / f"data-{checkout.name}"))
    began = time.perf_counter()
    raw = RawStdio(argv, env, ws.project, ws.root / "server.log")
    try:
        raw.initialize()
        initialized = time.perf_counter() - began
        cpu = main_thread_cpu(raw.process.pid)
        raw.request("tools/list")
        listed = time.perf_counter() - began
    finally:
        raw.close()
    return initialized, listed, cpu

