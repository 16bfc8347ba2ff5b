"""6. Start-up: spawn to ``initialize`` answered and to the first ``tools/list`` answered.

Claude Code 2.1.332 connects MCP servers in the background: a server that is slow to answer
``initialize`` and ``tools/list`` misses the first model turn. Each round spawns, in a rotating
order so machine noise falls on all alike:

- ``python -c "import mcp.server"``: the interpreter and the SDK's imports, nothing else
  (spawn to exit);
- ``bench/minimal_server.py``: the smallest stdio server the SDK allows (one tool);
- ``claude-mcp-bridge serve`` (stdio) on 1 and on 100 definitions.

The bridge's own share is its p50 minus the minimal server's p50 (paired per round, too), and
minus the bare import. Raw JSON-RPC on the pipes: no client-side parsing is counted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from .options import Options
from .report import Table, ms, p50, p95
from .servers import RawStdio, serve_argv
from .workspace import BENCH_DIR, Workspace, generate_definitions, workspace

TARGET_S = 0.050
IMPORT = "import mcp.server"
Sample = tuple[float, float]
"""Seconds from spawn to the ``initialize`` answer, and to the ``tools/list`` answer."""


async def bench_startup(options: Options) -> Table:
    table = Table("6. Start-up: spawn to initialize / tools/list answered (stdio)",
                  ["server", "starts", "initialize p50 ms", "p95 ms", "tools/list p50 ms",
                   "p95 ms", "beyond minimal server, paired p50 ms",
                   "beyond `import mcp.server` p50 ms"])
    rounds = options.count(15, 3)
    with workspace("startup-one") as one, workspace("startup-hundred") as hundred:
        generate_definitions(hundred, 80, 19)  # + the workspace's own agent: 100 tools
        starts: dict[str, Callable[[], Sample]] = {
            "`python -c \"import mcp.server\"` (spawn to exit)": _bare_import,
            "minimal SDK server (1 tool)": lambda: _server([sys.executable, str(MINIMAL)], one),
            "bridge, 1 definition": lambda: _server(serve_argv(one.project, None), one),
            "bridge, 100 definitions": lambda: _server(serve_argv(hundred.project, None),
                                                       hundred),
        }
        samples: dict[str, list[Sample]] = {name: [] for name in starts}
        names = list(starts)
        for index in range(rounds):
            for name in names[index % len(names):] + names[: index % len(names)]:
                samples[name].append(starts[name]())
    bare, minimal = (samples[n] for n in names[:2])
    bare_p50 = p50([s[0] for s in bare])
    for name in names:
        init = [s[0] for s in samples[name]]
        listed = [s[1] for s in samples[name]]
        beyond = beyond_import = ""
        if name.startswith("bridge"):
            paired = [b[0] - m[0] for b, m in zip(samples[name], minimal, strict=True)]
            beyond, beyond_import = ms(p50(paired)), ms(p50(init) - bare_p50)
            table.target(f"{name}: bridge adds < {TARGET_S * 1000:g} ms to initialize beyond "
                         "the minimal SDK server", p50(paired) < TARGET_S,
                         f"{ms(p50(paired))} ms")
        table.add(name, len(init), ms(p50(init)), ms(p95(init)),
                  ms(p50(listed)) if name != names[0] else "",
                  ms(p95(listed)) if name != names[0] else "", beyond, beyond_import)
    table.notes.append("beyond minimal server = p50 of the per-round differences of the "
                       "initialize figures; beyond the import = bridge initialize p50 minus the "
                       "bare import's p50 (the interpreter and the SDK are in both)")
    return table


MINIMAL = BENCH_DIR / "minimal_server.py"


def _bare_import() -> Sample:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORT], check=True)
    seconds = time.perf_counter() - began
    return seconds, seconds


def _server(argv: list[str], ws: Workspace) -> Sample:
    env = ws.bridge_env(ws.root / "no-claude")
    began = time.perf_counter()
    raw = RawStdio(argv, env, ws.project, ws.root / "server.log")
    try:
        raw.initialize()
        initialized = time.perf_counter() - began
        raw.request("tools/list")
        listed = time.perf_counter() - began
    finally:
        raw.close()
    return initialized, listed

