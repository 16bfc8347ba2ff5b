"""``python -m bench.profiling [--quick]``: where the time of start-up, listing and a call goes.

Prints Markdown (the figures quoted in ``bench/PROFILE.md``):

1. imports, from ``python -X importtime``;
2. the catalog of 2,000 agents + 500 skills, stage by stage, in this process;
3. the ``tools/list`` answer through the SDK's own serialization, with the garbage collector
   as it is, frozen after the catalog, and off;
4. a call, stage by stage, timed inside a server (``bench/_patched_serve.py``) over raw stdio
   against the trivial fake, and the functions that use the server's CPU (cProfile);
5. candidate fixes, each switched on from outside in its own server, measured side by side
   against the stock server: per-call latency, and cold start and listing at scale.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import pstats
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .report import Table, ms, p50, p95
from .servers import RawStdio, memory_mb, serve_argv
from .workspace import BENCH_DIR, TOOL, Workspace, generate_definitions, workspace

PATCHED = (str(BENCH_DIR / "_patched_serve.py"),)
VARIANTS = ("stock", "gc", "sqlite", "pidfd", "gc,sqlite,pidfd")
"""Candidate fixes; stdio frames by ``os.write`` was one and is now the product's own."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    quick = parser.parse_args(argv).quick
    sections: list[Callable[[bool], Table]] = [
        imports, catalog_stages, listing_pipeline, listing_shapes, call_stages, call_fixes,
        scale_fixes]
    for section in sections:
        print(f"running {section.__name__} ...", file=sys.stderr, flush=True)
        print(section(quick).markdown(), flush=True)
    return 0


# -- 1. imports -------------------------------------------------------------------------

def imports(quick: bool) -> Table:
    table = Table("Start-up: import time by package (`python -X importtime`, best of 3)",
                  ["package", "ms (own modules' self time)", "share"])
    statement = "import claude_mcp_bridge.cli, claude_mcp_bridge.transports.stdio"
    runs = [_importtime(statement) for _ in range(3)]
    best = min(runs, key=lambda rows: sum(rows.values()))
    packages: dict[str, int] = {}
    for name, self_us in best.items():
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0) + self_us
    total = sum(packages.values())
    ranked = sorted(packages.items(), key=lambda item: item[1], reverse=True)
    for name, self_us in ranked[:10]:
        table.add(name, f"{self_us / 1000:.0f}", f"{self_us / total:.0%}")
    rest = sum(us for _, us in ranked[10:])
    table.add(f"{len(ranked) - 10} others", f"{rest / 1000:.0f}", f"{rest / total:.0%}")
    table.add("**all imports**", f"{total / 1000:.0f}", "100%")
    bare = min(_wall([sys.executable, "-c", "pass"]) for _ in range(5))
    full = min(_wall([sys.executable, "-c", statement]) for _ in range(5))
    table.notes.append(f"wall: `python -c pass` {ms(bare)} ms; with the bridge's imports "
                       f"{ms(full)} ms (best of 5). Importing any `mcp.*` module runs "
                       "`mcp/__init__`, which imports the client and both protocol eras' models "
                       "(`mcp_types`), whatever the server uses.")
    table.notes.append("the HTTP transport (uvicorn, sse-starlette) is imported only by "
                       "`serve --transport http|sse`")
    return table


def _importtime(statement: str) -> dict[str, int]:
    """Each module's own import time in microseconds."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                          capture_output=True, text=True, check=True)
    rows: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            rows[match[2]] = int(match[1])
    return rows


def _wall(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - began


# -- 2. the catalog ---------------------------------------------------------------------

def catalog_stages(quick: bool) -> Table:
    from agents_registry import Roots, candidate_files, load_registry, split_front_matter
    from agents_registry.definitions import build_definition
    from agents_registry.registry import MAX_DEFINITION_BYTES, read_bytes
    from claude_mcp_bridge.catalog import build_catalog
    from claude_mcp_bridge.config import Config
    from claude_mcp_bridge.tool_policy import tool_policy

    table = Table("Catalog of 2,000 agents + 500 skills, stage by stage (in process)",
                  ["stage", "p50 ms", "min ms"])
    repeats = 5 if quick else 15
    with workspace("profile-catalog") as ws:
        generate_definitions(ws, 2000, 500)
        roots = Roots(user_dir=ws.home / ".claude", project_dir=ws.project)
        candidates = candidate_files(roots)
        raws = [read_bytes(c.path.absolute(), MAX_DEFINITION_BYTES) for c in candidates]
        texts = [raw.decode() for raw in raws if isinstance(raw, bytes)]
        split = [split_front_matter(text) for text in texts]
        registry = load_registry(roots)
        config = Config()
        stages: list[tuple[str, Callable[[], object]]] = [
            ("discovery: walk the folders", lambda: candidate_files(roots)),
            ("read the files", lambda: [read_bytes(c.path.absolute(), MAX_DEFINITION_BYTES)
                                        for c in candidates]),
            ("sha256 of the files", lambda: [hashlib.sha256(r).hexdigest() for r in raws
                                             if isinstance(r, bytes)]),
            ("front matter: fences + YAML (CSafeLoader)",
             lambda: [split_front_matter(text) for text in texts]),
            ("definitions: pydantic validation",
             lambda: [build_definition(c.kind, meta, body=body, path=c.path, scope=c.scope,
                                       sha256="0") for c, (meta, body) in zip(candidates, split,
                                                                              strict=True)]),
            ("load_registry: all of the above", lambda: load_registry(roots)),
            ("build_catalog: tools + policies", lambda: build_catalog(registry, config,
                                                                      ws.project)),
            ("  of which tool_policy (resolves cwd roots per tool)",
             lambda: [tool_policy(config, d, ws.project) for d in registry.definitions()]),
        ]
        for label, stage in stages:
            samples = _repeat(stage, repeats)
            table.add(label, ms(p50(samples)), ms(min(samples)))
    table.notes.append(f"{repeats} runs each, after the server's imports (so the garbage "
                       "collector walks a realistic heap)")
    return table


def _repeat(stage: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        stage()
        samples.append(time.perf_counter() - began)
    return samples


# -- 3. the tools/list answer -----------------------------------------------------------

def listing_pipeline(quick: bool) -> Table:
    import mcp_types as types
    from mcp_types import methods

    from claude_mcp_bridge.server import load_catalog

    repeats = 3 if quick else 7
    with workspace("profile-listing") as ws:
        generate_definitions(ws, 2000, 500)
        catalog = load_catalog(_settings(ws))
    table = Table(f"tools/list of {len(catalog.tools):,} tools through the SDK's serialization "
                  "(in process)",
                  ["step", "GC as is, p50 ms", "GC frozen after load, p50 ms", "GC off, p50 ms"])
    result = types.ListToolsResult(tools=list(catalog.tools))
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    wire = methods.serialize_server_result("tools/list", "2025-11-25", dumped)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("the bridge's handler: ListToolsResult(tools=...)",
         lambda: types.ListToolsResult(tools=list(catalog.tools))),
        ("SDK: result.model_dump(mode='json')",
         lambda: result.model_dump(by_alias=True, mode="json", exclude_none=True)),
        ("SDK: serialize_server_result (validate again, dump again)",
         lambda: methods.serialize_server_result("tools/list", "2025-11-25", dumped)),
        ("SDK: JSON-RPC frame to JSON text",
         lambda: types.JSONRPCResponse(jsonrpc="2.0", id=1, result=wire).model_dump_json(
             by_alias=True, exclude_unset=True)),
    ]
    columns: list[list[float]] = []
    for mode in ("as is", "frozen", "off"):
        if mode == "frozen":
            gc.freeze()
        if mode == "off":
            gc.disable()
        try:
            totals = []
            per_step: list[list[float]] = [[] for _ in steps]
            for _ in range(repeats):
                began = time.perf_counter()
                for index, (_, step) in enumerate(steps):
                    per_step[index] += _repeat(step, 1)
                totals.append(time.perf_counter() - began)
            columns.append([p50(samples) for samples in per_step] + [p50(totals)])
        finally:
            gc.enable()
            gc.unfreeze()
    for index, (label, _) in enumerate(steps):
        table.add(label, *(ms(column[index]) for column in columns))
    table.add("**all four**", *(ms(column[-1]) for column in columns))
    size = len(json.dumps(wire))
    first = wire["tools"][0]
    shares = ", ".join(f"{key} {len(json.dumps(value))} B" for key, value in first.items())
    table.notes.append(f"answer: {size / 1e6:.1f} MB, {size // len(wire['tools']):,} B per "
                       f"tool ({shares})")
    return table


def listing_shapes(quick: bool) -> Table:
    """What the answer's shape costs: the SDK's passes, garbage collector off (best of N)."""
    import mcp_types as types
    from mcp_types import methods

    from claude_mcp_bridge.server import load_catalog

    with workspace("profile-shapes") as ws:
        generate_definitions(ws, 2000, 500)
        tools = list(load_catalog(_settings(ws)).tools)
    shapes = {
        "as published": tools,
        "without outputSchema": [t.model_copy(update={"output_schema": None}) for t in tools],
        "inputSchema reduced to {type: object}": [
            t.model_copy(update={"input_schema": {"type": "object"}}) for t in tools],
        "one page of 100 tools (as published)": tools[:100],
    }
    table = Table("What the shape of the tools/list answer costs (SDK passes, GC off, best of "
                  f"{3 if quick else 7})", ["answer", "tools", "MB", "SDK dump + validate + "
                                            "dump ms"])
    def sdk_passes(result: types.ListToolsResult) -> object:
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return methods.serialize_server_result("tools/list", "2025-11-25", dumped)

    gc.disable()
    try:
        for label, shape in shapes.items():
            result = types.ListToolsResult(tools=shape)
            best = min(_repeat(functools.partial(sdk_passes, result), 3 if quick else 7))
            size = len(result.model_dump_json(by_alias=True, exclude_none=True))
            table.add(label, f"{len(shape):,}", f"{size / 1e6:.2f}", ms(best))
    finally:
        gc.enable()
    return table


def _settings(ws: Workspace) -> Any:
    from claude_mcp_bridge.cli import _parser
    from claude_mcp_bridge.startup import build_settings

    args = _parser().parse_args(["list", "--project-dir", str(ws.project)])
    return build_settings(args, ws.bridge_env(ws.root / "no-claude"))


# -- 4. a call --------------------------------------------------------------------------

def call_stages(quick: bool) -> Table:
    calls = 20 if quick else 60
    table = Table(f"A call, stage by stage, inside the server ({calls} calls, trivial fake, "
                  "raw stdio)", ["stage", "calls", "p50 ms", "p95 ms"])
    with workspace("profile-call") as ws:
        trace, profile = ws.root / "trace.json", ws.root / "calls.prof"
        claude = ws.trivial_claude()
        wall = _calls(ws, ws.bridge_env(claude, BENCH_TRACE=str(trace)), calls)
        _calls(ws, ws.bridge_env(claude, BENCH_PROFILE=str(profile)), calls)
        durations: dict[str, list[float]] = json.loads(trace.read_text())
        hot = _hot_functions(profile, calls - 1)
    table.add("**client: tools/call to its answer**", len(wall), ms(p50(wall)), ms(p95(wall)))
    for label, samples in durations.items():
        table.add(label, len(samples), ms(p50(samples)), ms(p95(samples)))
    table.notes.append("server CPU per call by function (cProfile in a second server, main "
                       "thread, calls 2..N; the profiler inflates these): " + hot)
    return table


def _calls(ws: Workspace, env: dict[str, str], calls: int) -> list[float]:
    raw = RawStdio(serve_argv(ws.project, None, entry=PATCHED), env, ws.project,
                   ws.root / "bridge.log")
    wall = []
    try:
        raw.initialize()
        for _ in range(calls):
            began = time.perf_counter()
            raw.call(TOOL, "Say ok.")
            wall.append(time.perf_counter() - began)
    finally:
        raw.close()
    return wall


def _hot_functions(path: Path, calls: int, top: int = 8) -> str:
    stats = pstats.Stats(str(path))
    rows: list[tuple[float, str]] = []
    for (filename, line, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name in ("<method 'poll' of 'select.epoll' objects>",
                    "<method 'acquire' of '_thread.lock' objects>"):
            continue  # waiting, not working
        where = name if filename == "~" else f"{Path(filename).name}:{line}({name})"
        rows.append((tottime, where))
    rows.sort(reverse=True)
    return "; ".join(f"{where} {tottime / calls * 1000:.2f} ms" for tottime, where in rows[:top])


def call_fixes(quick: bool) -> Table:
    rounds = 20 if quick else 80
    table = Table(f"Candidate fixes, one server each, calls interleaved ({rounds} rounds, "
                  "trivial fake, raw stdio with a progress token)",
                  ["server", "p50 ms", "p95 ms", "vs stock, paired p50 ms"])
    with workspace("profile-fixes") as ws, ExitStack() as stack:
        claude = ws.trivial_claude()
        servers: dict[str, RawStdio] = {}
        for variant in VARIANTS:
            patch = "" if variant == "stock" else variant
            (ws.data / variant).mkdir()
            env = ws.bridge_env(claude, BENCH_PATCH=patch,
                                CLAUDE_MCP_BRIDGE_DATA_DIR=str(ws.data / variant))
            raw = RawStdio(serve_argv(ws.project, None, entry=PATCHED), env, ws.project,
                           ws.root / f"{variant}.log")
            stack.callback(raw.close)
            raw.initialize()
            raw.call(TOOL, "warm up")
            servers[variant] = raw
        paths = [*VARIANTS, "direct"]
        samples: dict[str, list[float]] = {path: [] for path in paths}
        for index in range(rounds):
            for path in paths[index % len(paths):] + paths[: index % len(paths)]:
                began = time.perf_counter()
                if path == "direct":
                    subprocess.run([str(claude), "-p"], input=b"Say ok.", capture_output=True,
                                   check=True, start_new_session=True)
                else:
                    servers[path].call(TOOL, "Say ok.")
                samples[path].append(time.perf_counter() - began)
    stock = samples["stock"]
    for path in paths:
        paired = p50([a - b for a, b in zip(samples[path], stock, strict=True)])
        table.add(path, ms(p50(samples[path])), ms(p95(samples[path])),
                  "" if path == "stock" else f"{paired * 1000:+.1f}")
    table.notes.append("`direct` is the same child run by `subprocess.run`; the variants are "
                       "described in bench/_patched_serve.py")
    return table


def scale_fixes(quick: bool) -> Table:
    starts, listings = (1, 3) if quick else (3, 10)
    table = Table("Cold start and tools/list, 2,000 agents + 500 skills: stock vs `gc.freeze()`",
                  ["server", "cold start to first tools/list p50 s", "tools/list p50 ms",
                   "VmHWM MB"])
    with workspace("profile-scale") as ws:
        generate_definitions(ws, 2000, 500)
        env = ws.bridge_env(ws.root / "no-claude")
        results: dict[str, tuple[list[float], list[float], float]] = {
            v: ([], [], 0.0) for v in ("stock", "gc")}
        for _ in range(starts):
            for variant in results:
                cold, lists, _ = results[variant]
                patched = {**env, "BENCH_PATCH": "" if variant == "stock" else variant}
                began = time.perf_counter()
                raw = RawStdio(serve_argv(ws.project, None, entry=PATCHED), patched,
                               ws.project, ws.root / "bridge.log")
                try:
                    raw.initialize()
                    raw.request("tools/list")
                    cold.append(time.perf_counter() - began)
                    for _ in range(listings):
                        began = time.perf_counter()
                        raw.request("tools/list")
                        lists.append(time.perf_counter() - began)
                    peak = memory_mb(raw.process.pid)["VmHWM"]
                finally:
                    raw.close()
                results[variant] = (cold, lists, peak)
    for variant, (cold, lists, peak) in results.items():
        table.add(variant, f"{p50(cold):.3f}", ms(p50(lists)), f"{peak:.0f}")
    return table


if __name__ == "__main__":
    sys.exit(main())
