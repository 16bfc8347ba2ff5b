"""2. Discovery and listing at scale: 2,000 agents and 500 skills on disk.

Cold start is the wall time from spawning ``claude-mcp-bridge serve`` (stdio) to the answer of
the first ``tools/list`` (the ``initialize`` handshake included), written and read as raw
JSON-RPC so no client-side parsing is counted. The files were just written, so they are in the
page cache, as they are on a machine that has used them. The same figure with one definition
shows what the interpreter and the imports cost on their own. A first start parses every file;
a later one, with the files unchanged, takes them from the data folder's parse cache
(``agents_registry/parse_cache.py``), which keeps files only once they are 2 s old.
"""

from __future__ import annotations

import time
from pathlib import Path

from agents_registry.parse_cache import SETTLE_S

from .baseline import baseline_env, baseline_tree
from .options import Options
from .report import Table, ms, p50, p95
from .servers import RawStdio, bridge_client, memory_mb, serve_argv
from .workspace import Workspace, generate_definitions, workspace

AGENTS, SKILLS = 2000, 500
TARGET_START_S, TARGET_LIST_S, TARGET_MB = 1.0, 0.050, 150
CACHE = "definitions.cache"  # in the data folder (startup.py)


async def bench_scale(options: Options) -> Table:
    table = Table(f"2. Discovery and listing: {AGENTS:,} agents + {SKILLS} skills",
                  ["measure", "p50", "p95 / max", "target"])
    starts = options.count(5, 1)
    with workspace("scale-one") as small:
        single = []
        for _ in range(starts):
            seconds, raw, small_memory = _cold_start(small)
            raw.close()
            single.append(seconds)
    table.add("cold start to first tools/list, 1 definition (s)",
              f"{p50(single):.3f}", f"{max(single):.3f}", "")
    with workspace("scale") as ws:
        began = time.perf_counter()
        generate_definitions(ws, AGENTS, SKILLS)
        written = time.perf_counter() - began
        settled_at = time.time() + SETTLE_S
        many: list[float] = []
        for attempt in range(starts):
            (ws.data / CACHE).unlink(missing_ok=True)  # a first start: nothing parsed yet
            seconds, raw, started = _cold_start(ws)
            many.append(seconds)
            if attempt < starts - 1:
                raw.close()
        try:
            listings = _listings(raw, options.count(30, 3))
            size_kb = raw.last_bytes / 1024
            tools = len(raw.request("tools/list")["tools"])
            memory = memory_mb(raw.process.pid)
        finally:
            raw.close()
        sdk = await _sdk_listings(ws, options.count(10, 0))
        later = _later_starts(ws, starts, settled_at)
        if options.baseline:
            _versus_baseline(ws, options, table)
        # The answer to a catalog this big: router mode publishes two tools.
        router = ws.config('[catalog]\nmode = "router"\n', "router.toml")
        routed: list[float] = []
        for attempt in range(starts):
            seconds, raw, _ = _cold_start(ws, router)
            routed.append(seconds)
            if attempt < starts - 1:
                raw.close()
        try:
            routed_listings = _listings(raw, options.count(30, 3))
            routed_memory = memory_mb(raw.process.pid)
        finally:
            raw.close()
    table.add(f"cold start to first tools/list, {tools:,} tools (s)", f"{p50(many):.3f}",
              f"{max(many):.3f}", f"< {TARGET_START_S:g} s")
    table.add("the same, a later start: definitions unchanged, parsed ones kept (s)",
              f"{p50(later):.3f}", f"{max(later):.3f}", f"< {TARGET_START_S:g} s")
    table.add(f"tools/list, raw JSON-RPC ({size_kb:,.0f} KB answer) (ms)", ms(p50(listings)),
              ms(p95(listings)), f"< {TARGET_LIST_S * 1000:g} ms")
    if sdk:
        table.add("tools/list through the SDK client, answer parsed (ms)", ms(p50(sdk)),
                  ms(p95(sdk)), "")
    table.add("server VmRSS after start-up, before listing: 1 definition / all (MB)",
              f"{small_memory['VmRSS']:.0f}", f"{started['VmRSS']:.0f}", "")
    table.add("server VmRSS / VmHWM (peak) after the listings (MB)",
              f"{memory['VmRSS']:.0f}", f"{memory['VmHWM']:.0f}", f"< {TARGET_MB} MB")
    table.add("router mode: cold start to first tools/list (s)", f"{p50(routed):.3f}",
              f"{max(routed):.3f}", f"< {TARGET_START_S:g} s")
    table.add("router mode: tools/list, raw JSON-RPC (ms)", ms(p50(routed_listings)),
              ms(p95(routed_listings)), f"< {TARGET_LIST_S * 1000:g} ms")
    table.add("router mode: server VmRSS / VmHWM (MB)", f"{routed_memory['VmRSS']:.0f}",
              f"{routed_memory['VmHWM']:.0f}", f"< {TARGET_MB} MB")
    table.target("start-up < 1 s, first start", p50(many) < TARGET_START_S, f"{p50(many):.3f} s")
    table.target("start-up < 1 s, later start", p50(later) < TARGET_START_S,
                 f"{p50(later):.3f} s")
    table.target("tools/list < 50 ms", p50(listings) < TARGET_LIST_S, f"{ms(p50(listings))} ms")
    table.target("memory < 150 MB", memory["VmHWM"] < TARGET_MB,
                 f"peak {memory['VmHWM']:.0f} MB")
    table.notes.append(f"{starts} cold start(s) each; {len(listings)} raw and {len(sdk)} SDK "
                       f"listings; writing the {AGENTS + SKILLS:,} files took {written:.1f} s")
    return table


def _later_starts(ws: Workspace, count: int, settled_at: float) -> list[float]:
    """Cold starts with the definitions unchanged since an earlier start, which kept them
    parsed (once they are older than the cache's settling time)."""
    time.sleep(max(0.0, settled_at - time.time()))
    later = []
    for attempt in range(count + 1):
        seconds, raw, _ = _cold_start(ws)
        raw.close()
        if attempt:  # the first one wrote the cache
            later.append(seconds)
    return later


def _versus_baseline(ws: Workspace, options: Options, table: Table) -> None:
    """First and later cold starts, and listings, of this bridge and the ``--baseline`` one,
    alternated; each keeps its parsed definitions in a data folder of its own (their
    caches' formats differ)."""
    tree = baseline_tree(str(options.baseline))
    envs = {"this": ws.bridge_env(ws.root / "no-claude")}
    envs["baseline"] = baseline_env(envs["this"], tree)
    for name, env in envs.items():
        env["CLAUDE_MCP_BRIDGE_DATA_DIR"] = str(ws.root / f"data-{name}")
    kinds = ("first", "later")
    starts: dict[tuple[str, str], list[float]] = {(name, kind): [] for name in envs
                                                  for kind in kinds}
    listings: dict[str, list[float]] = {name: [] for name in envs}
    servers: dict[str, RawStdio] = {}
    try:
        for _ in range(options.count(5, 1)):
            for kind in kinds:
                for name, env in envs.items():
                    if name in servers:
                        servers.pop(name).close()
                    if kind == "first":
                        (Path(env["CLAUDE_MCP_BRIDGE_DATA_DIR"]) / CACHE).unlink(missing_ok=True)
                    seconds, servers[name], _ = _cold_start(ws, env=env)
                    starts[name, kind].append(seconds)
        for _ in range(options.count(30, 3)):
            for name, raw in servers.items():
                listings[name] += _listings(raw, 1)
        memory = {name: memory_mb(raw.process.pid) for name, raw in servers.items()}
    finally:
        for raw in servers.values():
            raw.close()
    for name in envs:
        label = f"{name} ({options.baseline})" if name == "baseline" else "this bridge"
        first, later = starts[name, "first"], starts[name, "later"]
        table.add(f"side by side, {label}: first / later start (s), tools/list (ms), peak (MB)",
                  f"{p50(first):.3f} / {p50(later):.3f} / {ms(p50(listings[name]))} / "
                  f"{memory[name]['VmHWM']:.0f}",
                  f"{max(first):.3f} / {max(later):.3f} / {ms(p95(listings[name]))} / -", "")


def _cold_start(
    ws: Workspace, config: Path | None = None, env: dict[str, str] | None = None,
) -> tuple[float, RawStdio, dict[str, float]]:
    """Spawn to the first tools/list answer read whole (not parsed); the server, and its
    memory before that answer."""
    env = env or ws.bridge_env(ws.root / "no-claude")
    began = time.perf_counter()
    raw = RawStdio(serve_argv(ws.project, config), env, ws.project, ws.root / "bridge.log")
    try:
        raw.initialize()
        memory = memory_mb(raw.process.pid)
        raw.receive("tools/list")
    except BaseException:
        raw.close()
        raise
    return time.perf_counter() - began, raw, memory


def _listings(raw: RawStdio, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        raw.receive("tools/list")
        samples.append(time.perf_counter() - began)
    return samples


async def _sdk_listings(ws: Workspace, count: int) -> list[float]:
    if not count:
        return []
    env = ws.bridge_env(ws.root / "no-claude")
    samples = []
    async with bridge_client("stdio", ws.project, env, None, ws.root / "bridge.log") as (c, _):
        await c.list_tools()
        for _ in range(count):
            began = time.perf_counter()
            await c.list_tools(cache_mode="bypass")
            samples.append(time.perf_counter() - began)
    return samples
