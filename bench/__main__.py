"""``python -m bench [--quick] [--only NAME ...] [--config PATH]``: run the benchmarks, print
one Markdown table per benchmark and write them all to ``bench/results.md``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio

from .concurrency import bench_concurrency
from .followup import bench_followup
from .latency import bench_latency
from .options import Options
from .peers import bench_peers
from .reload import bench_reload
from .report import Table, machine
from .router_eval import bench_router
from .scale import bench_scale
from .startup import bench_startup
from .streaming import bench_streaming
from .workspace import BENCH_DIR

BENCHES: dict[str, Callable[[Options], Awaitable[Table]]] = {
    "latency": bench_latency,
    "scale": bench_scale,
    "concurrency": bench_concurrency,
    "streaming": bench_streaming,
    "followup": bench_followup,
    "reload": bench_reload,
    "router": bench_router,
    "startup": bench_startup,
    "peers": bench_peers,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples: the whole suite in under a minute")
    parser.add_argument("--only", action="append", choices=list(BENCHES), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="config file for the bridges of the latency benchmark "
                             "(e.g. one with a [warm] pool)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the bridge as of this git revision, side by side "
                             "(latency and scale), e.g. --baseline main")
    parser.add_argument("--peers", action="store_true",
                        help="only the peers benchmark: installs the peer MCP servers from "
                             "npm into .cache/peers/ and measures them beside the bridge")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results.md",
                        help="where to write the tables (default: bench/results.md)")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick,
                      config=args.config.resolve() if args.config else None,
                      baseline=args.baseline)
    names = ["peers"] if args.peers else args.only or [n for n in BENCHES if n != "peers"]
    began = time.monotonic()
    tables = anyio.run(_run_all, names, options)
    elapsed = time.monotonic() - began
    header = (f"# Benchmark results\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
              f"{'--quick' if options.quick else 'full run'}, {elapsed:.0f} s; {machine()}.\n"
              "Reproduce with `.venv/bin/python -m bench` (see bench/README.md).\n")
    args.output.write_text(header + "".join("\n" + t.markdown() for t in tables))
    print(f"written to {args.output}", file=sys.stderr)
    return 0


async def _run_all(names: Sequence[str], options: Options) -> list[Table]:
    tables = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        table = await BENCHES[name](options)
        table.notes.append(f"took {time.monotonic() - began:.0f} s")
        print(table.markdown(), flush=True)
        tables.append(table)
    return tables


if __name__ == "__main__":
    sys.exit(main())
