"""``claude-mcp-bridge test``: run agent tests from the terminal or CI.

Progress goes to stderr as it happens; the report goes to stdout (text, or JSON with
``--json``), JUnit XML to ``--junit FILE``. Exit codes: 0 every run passed (and, with
``--compare``, nothing regressed); 1 a run failed or errored, a test file was unusable,
or a metric regressed; 2 nothing to run; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from ..bridge import open_bridge
from ..catalog import Catalog
from ..settings import Settings
from .cases import TESTS_DIR, CaseFile, cwd_roots, select_case_files
from .compare import DEFAULT_THRESHOLD, Comparison, compare_each
from .execute import Host
from .report import json_report, junit_report, text_report
from .runner import RunOptions, SuiteResult, run_suite


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``test`` subcommand; ``common`` holds the options every subcommand takes."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "test", parents=[common], help="run the test cases of agents and skills",
        description=f"Run the YAML test cases of agents and skills ({TESTS_DIR}/*.yaml beside "
                    "the definitions) through the bridge's policy and budget; print each "
                    "case's checks, cost and time, and each agent's pass rate. Every run is "
                    "recorded in the ledger with the definition's content hash.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="agent or skill name, or a test file path (default: every test "
                             "file found)")
    parser.add_argument("--case", action="append", default=None, metavar="CASE",
                        help="run only the case of this name; repeatable")
    parser.add_argument("--repeat", type=_positive, default=1, metavar="N",
                        help="run each case N times (default 1)")
    parser.add_argument("--parallel", type=_positive, default=1, metavar="K",
                        help="runs at once (default 1; [limits] max_concurrency still applies)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    parser.add_argument("--compare", action="store_true",
                        help="compare with the last run of an earlier version of each "
                             "definition; exit 1 when a metric got worse beyond --threshold")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="F",
                        help="how much worse counts as a regression: pass rate and score "
                             "down by more than F, cost and p50 time up by more than F x 100 "
                             f"%% (default {DEFAULT_THRESHOLD})")
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    selection = select_case_files(args.names, settings.roots, cwd_roots(settings))
    if not selection.files:
        for diagnostic in selection.diagnostics:
            print(f"claude-mcp-bridge: {diagnostic}", file=sys.stderr)
        if not selection.diagnostics:
            print(f"claude-mcp-bridge: no test files found in {TESTS_DIR}/ of "
                  f"{settings.project_dir / '.claude'} or the user's folder", file=sys.stderr)
        return 2
    known = {case.name for file in selection.files for case in file.cases}
    unknown = sorted(set(args.case or ()) - known)
    if unknown:
        print(f"claude-mcp-bridge: no case named {', '.join(map(repr, unknown))} in the "
              f"selected test files; their cases: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    options = RunOptions(repeat=args.repeat, parallel=args.parallel,
                         cases=frozenset(args.case) if args.case else None, caller="test/cli")
    with open_bridge(settings) as bridge:
        outcome = anyio.run(_run_until_signal, bridge, bridge.catalog, selection.files,
                            options, args.compare, args.threshold)
    if outcome is None:
        print("claude-mcp-bridge: interrupted; the running agents were stopped",
              file=sys.stderr)
        return 130
    suite, comparisons = outcome
    suite = SuiteResult(suite.run_id, suite.definitions,
                        (*selection.diagnostics, *suite.diagnostics))
    if args.junit is not None:
        args.junit.write_bytes(junit_report(suite))
    if args.json:
        print(json.dumps(json_report(suite, comparisons), indent=2))
    else:
        print(text_report(suite, comparisons))
    regressed = any(c.regressed for c in comparisons)
    return 0 if suite.passed and not regressed else 1


async def _run_until_signal(
    host: Host, catalog: Catalog, files: Sequence[CaseFile], options: RunOptions,
    compare: bool,
    threshold: float,
) -> tuple[SuiteResult, list[Comparison]] | None:
    from ..signals import cancel_on_signal

    outcome = None
    async with anyio.create_task_group() as tg:
        await tg.start(cancel_on_signal, tg.cancel_scope)
        suite = await run_suite(host, catalog, files, options, _progress)
        comparisons: list[Comparison] = []
        if compare:
            comparisons = await anyio.to_thread.run_sync(
                compare_each, host.ledger, [d.records for d in suite.definitions], threshold)
        outcome = suite, comparisons
        tg.cancel_scope.cancel()
    return outcome


async def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
