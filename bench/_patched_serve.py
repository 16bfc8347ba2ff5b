"""``claude-mcp-bridge`` with stage timers and candidate fixes switched on from outside.

Used by ``python -m bench.profiling`` as the server's entry point instead of
``python -m claude_mcp_bridge``; the package itself is not changed. Environment:

``BENCH_TRACE=path``    time the stages of each call; a JSON file of durations at exit
``BENCH_PROFILE=path``  cProfile from the second ``tools/call`` to exit (main thread only)
``BENCH_PATCH=a,b``     candidate fixes, each a proposal measured before it is made:
    ``gc``       ``gc.freeze()`` after the imports and after each catalog build, so full
                 collections stop walking the modules and the catalog
    ``sqlite``   ``PRAGMA synchronous = NORMAL`` on the ledger (WAL: no fsync per commit)
    ``pidfd``    ``asyncio.PidfdChildWatcher`` instead of a waiter thread per child (3.11)

It runs by path, so ``bench/`` comes first on ``sys.path``: no module there may share a name
with a standard one (``profile.py`` would break cProfile). Internal functions are looked up
by name when patched; one that no longer exists is reported on stderr and skipped, so this
keeps working while the package changes.
"""

from __future__ import annotations

import asyncio
import atexit
import cProfile
import functools
import gc
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio

from claude_mcp_bridge import bridge, cli, ledger, progress, runner

DURATIONS: defaultdict[str, list[float]] = defaultdict(list)

STAGES: list[tuple[Any, str, str]] = [
    (bridge.Bridge, "call", "bridge.call: every stage"),
    (bridge.Bridge, "admit", "admit: arguments, policy, command, budget"),
    (bridge.Bridge, "_plan", "  admit: policy + argv (sync)"),
    (ledger.Ledger, "reserve", "  admit: ledger.reserve (worker thread)"),
    (bridge.Bridge, "execute", "execute: slot, run, settle"),
    (bridge, "run", "  execute: runner.run (child's whole life)"),
    (anyio, "open_process", "    runner: spawn (anyio.open_process)"),
    (subprocess.Popen, "_execute_child", "      spawn: fork + exec (Popen._execute_child)"),
    (asyncio.ThreadedChildWatcher, "add_child_handler", "      spawn: start a waitpid thread"),
    (asyncio.PidfdChildWatcher, "add_child_handler", "      spawn: watch a pidfd"),
    (runner, "_supervise", "    runner: supervise until exit"),
    (runner, "end_process_group", "    runner: end the process group"),
    (ledger.Ledger, "later", "  execute: queue a ledger write (settle, notes)"),
    (ledger.Ledger, "settle", "ledger.settle (writer thread, after the answer)"),
    (progress.Progress, "say", "progress notification (each)"),
]


def _timed(function: Callable[..., Any], label: str) -> Callable[..., Any]:
    if _is_async(function):
        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                DURATIONS[label].append(time.perf_counter() - began)
        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            DURATIONS[label].append(time.perf_counter() - began)
    return timed


def _is_async(function: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(function)


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = getattr(owner, name, None)
    if original is None:
        print(f"bench: {getattr(owner, '__name__', owner)}.{name} not found; not patched",
              file=sys.stderr)
        return
    setattr(owner, name, make(original))


def trace(path: str) -> None:
    for owner, name, label in STAGES:
        _patch(owner, name, functools.partial(_timed, label=label))

    @atexit.register
    def dump() -> None:
        with open(path, "w") as out:
            json.dump(DURATIONS, out)


def profile(path: str) -> None:
    profiler = cProfile.Profile()
    calls = 0

    def start_on_second_call(call: Any) -> Any:
        @functools.wraps(call)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                profiler.enable()
            return await call(*args, **kwargs)
        return counted

    _patch(bridge.Bridge, "call", start_on_second_call)

    @atexit.register
    def dump() -> None:
        profiler.disable()
        profiler.dump_stats(path)


def freeze_gc() -> None:
    def frozen_after(load: Any) -> Any:
        @functools.wraps(load)
        def load_and_freeze(*args: Any, **kwargs: Any) -> Any:
            catalog = load(*args, **kwargs)
            gc.freeze()
            return catalog
        return load_and_freeze

    gc.freeze()
    _patch(bridge, "load_catalog", frozen_after)


def sqlite_normal() -> None:
    def normal_sync(connect: Any) -> Any:
        @functools.wraps(connect)
        def patched(*args: Any, **kwargs: Any) -> Any:
            connection = connect(*args, **kwargs)
            connection.execute("PRAGMA synchronous = NORMAL")
            return connection
        return patched

    _patch(ledger, "_connect", normal_sync)


def pidfd_watcher() -> None:
    def watched(serving: Any) -> Any:
        @functools.wraps(serving)
        async def patched(*args: Any, **kwargs: Any) -> Any:
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(watcher)
            return await serving(*args, **kwargs)
        return patched

    _patch(cli, "_serving", watched)


PATCHES = {"gc": freeze_gc, "sqlite": sqlite_normal,
           "pidfd": pidfd_watcher}


def main() -> int:
    for name in filter(None, os.environ.get("BENCH_PATCH", "").split(",")):
        PATCHES[name]()
    if os.environ.get("BENCH_TRACE"):
        trace(os.environ["BENCH_TRACE"])
    if os.environ.get("BENCH_PROFILE"):
        profile(os.environ["BENCH_PROFILE"])
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
