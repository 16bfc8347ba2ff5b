"""8. Router accuracy and speed: how often ``find_agent`` puts the right agent first.

Accuracy is measured on public collections nobody here wrote (``tests/fixtures/
router_collections/``: each has the agents, their licence and source, and tasks written before
any ranker ran on them), per collection and per split (``tune`` may be looked at while tuning,
``heldout`` never), with the hard subset on its own; the team's own set
(``tests/fixtures/router_corpus/`` + ``router_eval.yaml``) is reported as a third kind.

- top-1: the first match is the best agent or an acceptable one; top-3: one of the first three
  is; MRR: mean of 1/rank of the first acceptable match (0 when not in the first ten).
- find_agent p50: ``Router.rank`` on every task against 500 definitions (the three collections
  and the team's corpus, topped up with renamed copies).
- start-up: importing the router (and the stemmer) and building the index of those 500
  (``router_for``) in a fresh interpreter, no word stemmed yet; a rebuild in the same process
  (what a reload costs) is shown beside it.
- ``--baseline REV``: the same fresh-process start-up and the accuracy of the router as of
  ``REV``, measured in the same run, the two start-ups alternated (on a shared machine only
  figures taken side by side compare).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents_registry import Roots, load_registry
from claude_mcp_bridge.catalog import build_catalog
from claude_mcp_bridge.config import Config
from claude_mcp_bridge.router import Router, router_for

from .baseline import baseline_env, baseline_tree
from .options import Options
from .report import Table, ms, p50, p95
from .workspace import REPO

FIXTURES = REPO / "tests" / "fixtures"
COLLECTIONS = FIXTURES / "router_collections"
TEAM = "team"
DEPTH = 10
SCALE = 500
TARGET_TOP1, TARGET_TOP3, TARGET_HARD_TOP3 = 0.85, 0.95, 0.75
TARGET_P50_S, TARGET_START_S = 0.005, 0.100


@dataclass(frozen=True)
class Task:
    collection: str
    text: str
    acceptable: frozenset[str]
    hard: bool
    split: str


@dataclass(frozen=True)
class Score:
    """Accuracy over a group of tasks."""

    items: int
    top1: float
    top3: float
    mrr: float


def collection_names() -> list[str]:
    return sorted(p.name for p in COLLECTIONS.iterdir() if (p / "tasks.yaml").is_file())


def router_of(user_dir: Path) -> Router:
    registry = load_registry(Roots(user_dir=user_dir, project_dir=None))
    if registry.diagnostics:
        raise ValueError(f"{user_dir}: {registry.diagnostics[0]}")
    return router_for(build_catalog(registry, Config(), user_dir))


def collection_tasks(name: str) -> list[Task]:
    items: list[dict[str, Any]] = yaml.safe_load((COLLECTIONS / name / "tasks.yaml").read_text())
    return [Task(name, item["task"], frozenset([item["best"], *item["acceptable"]]),
                 bool(item["hard"]), item["split"]) for item in items]


def team_tasks() -> list[Task]:
    items: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "router_eval.yaml").read_text())
    return [Task(TEAM, item["task"], frozenset([item["expected"], *item.get("also_ok", [])]),
                 bool(item.get("hard")), "team") for item in items]


def ranks(router: Router, tasks: Iterable[Task]) -> list[tuple[Task, int | None]]:
    """Each task with the 1-based rank of its first acceptable match (None: not in DEPTH)."""
    found = []
    for task in tasks:
        names = [match.name for match in router.rank(task.text, DEPTH)]
        rank = next((i for i, name in enumerate(names, 1) if name in task.acceptable), None)
        found.append((task, rank))
    return found


def score(ranked: Sequence[tuple[Task, int | None]]) -> Score:
    n = len(ranked)
    if not n:
        return Score(0, 0.0, 0.0, 0.0)
    return Score(n, sum(r == 1 for _, r in ranked) / n,
                 sum(r is not None and r <= 3 for _, r in ranked) / n,
                 sum(1 / r for _, r in ranked if r) / n)


def evaluate() -> dict[str, list[tuple[Task, int | None]]]:
    """Every task of every collection (and the team set), ranked."""
    results = {name: ranks(router_of(COLLECTIONS / name), collection_tasks(name))
               for name in collection_names()}
    results[TEAM] = ranks(router_of(FIXTURES / "router_corpus"), team_tasks())
    return results


def groups(results: dict[str, list[tuple[Task, int | None]]]) -> dict[str, Score]:
    """Scores keyed ``<collection|all>/<split|team>[/hard]``."""
    out: dict[str, Score] = {}
    public = [r for name, rs in results.items() if name != TEAM for r in rs]
    for name, ranked in [*results.items(), ("all", public)]:
        for split in sorted({task.split for task, _ in ranked}):
            chosen = [r for r in ranked if r[0].split == split]
            out[f"{name}/{split}"] = score(chosen)
            out[f"{name}/{split}/hard"] = score([r for r in chosen if r[0].hard])
    return out


def _scaled_dir(into: Path) -> Path:
    """SCALE agent files: the collections and the team's corpus, topped up with renamed copies."""
    agents = into / "agents"
    agents.mkdir(parents=True)
    sources = [p for name in collection_names()
               for p in sorted((COLLECTIONS / name / "agents").glob("*.md"))]
    sources += sorted((FIXTURES / "router_corpus" / "agents").glob("*.md"))
    for i in range(SCALE):
        text = sources[i % len(sources)].read_text()
        renamed = _NAME.sub(f"name: agent-{i}", text, count=1)
        (agents / f"agent-{i}.md").write_text(renamed)
    return into


_NAME = re.compile(r"^name:.*$", re.MULTILINE)


@dataclass(frozen=True)
class Speed:
    queries: list[float]
    """find_agent seconds per task (wall clock), each task once, postings made on first sight."""
    queries_cpu: list[float]
    starts: list[Start]
    rebuilds: list[float]
    """Seconds per rebuild in a process that has built the index before (a reload)."""
    definitions: int
    starts_before: list[Start]
    """The ``--baseline`` revision's start-ups, taken in turn with ``starts``."""


def speed(samples: int, baseline: str | None = None) -> Speed:
    tasks = [t.text for name in collection_names() for t in collection_tasks(name)]
    before = baseline_env(os.environ, baseline_tree(baseline)) if baseline else None
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        root = _scaled_dir(Path(tmp))
        starts, starts_before = [], []
        for _ in range(samples):
            starts.append(start_seconds(root))
            if before:
                starts_before.append(start_seconds(root, before))
        registry = load_registry(Roots(user_dir=root, project_dir=None))
        catalog = build_catalog(registry, Config(), root)
        rebuilds = []
        for _ in range(samples):
            began = time.perf_counter()
            router = router_for(catalog)
            rebuilds.append(time.perf_counter() - began)
        queries, queries_cpu = [], []
        for text in tasks:
            began, cpu = time.perf_counter(), time.process_time()
            router.rank(text, 5)
            queries.append(time.perf_counter() - began)
            queries_cpu.append(time.process_time() - cpu)
        shutil.rmtree(root, ignore_errors=True)
    return Speed(queries, queries_cpu, starts, rebuilds, len(catalog.entries), starts_before)


_START = """
import sys, time
from pathlib import Path
from agents_registry import Roots, load_registry
from claude_mcp_bridge.catalog import build_catalog
from claude_mcp_bridge.config import Config
root = Path(sys.argv[1])
catalog = build_catalog(load_registry(Roots(user_dir=root, project_dir=None)), Config(), root)
began, cpu = time.perf_counter(), time.process_time()
from claude_mcp_bridge.router import router_for
imported = time.process_time()
router = router_for(catalog)
wall, built = time.perf_counter() - began, time.process_time()
router.rank("my pandas job runs out of memory on a 20 GB csv")
print(wall, built - cpu, imported - cpu, time.process_time() - built)
"""


@dataclass(frozen=True)
class Start:
    """What router mode adds to a fresh server's start: importing the router (the stemmer
    with it) and building the first index, no word stemmed yet. Later rebuilds (on reload)
    find the words already stemmed. CPU time beside wall time: on a shared machine the
    wall clock also counts other jobs' turns."""

    wall: float
    cpu: float
    import_cpu: float
    first_query_cpu: float
    """The first ``find_agent`` after the build: it also makes what the index leaves to the
    first task (which definitions hold a word, the pairs of words side by side)."""


def start_seconds(root: Path, env: dict[str, str] | None = None) -> Start:
    """Start-up in a fresh interpreter; with ``env`` from ``baseline_env``, of that copy (run
    outside the work tree, whose package would come first on ``sys.path``)."""
    out = subprocess.run([sys.executable, "-c", _START, str(root)], capture_output=True,
                         text=True, check=True, cwd=root if env else REPO, env=env)
    wall, cpu, import_cpu, first = (float(x) for x in out.stdout.split())
    return Start(wall, cpu, import_cpu, first)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


_ACCURACY = """
import json, sys
sys.path.append(sys.argv[1])
from bench.router_eval import evaluate, groups
print(json.dumps({k: [s.items, s.top1, s.top3, s.mrr] for k, s in groups(evaluate()).items()}))
"""


def baseline_scores(rev: str) -> dict[str, Score]:
    """``groups(evaluate())`` with the router as of ``rev``, in a child that imports it."""
    import json

    env = baseline_env(os.environ, baseline_tree(rev))
    with tempfile.TemporaryDirectory(prefix="router-baseline-") as tmp:
        out = subprocess.run([sys.executable, "-c", _ACCURACY, str(REPO)], capture_output=True,
                             text=True, check=True, cwd=tmp, env=env)
    return {k: Score(int(v[0]), *v[1:]) for k, v in json.loads(out.stdout).items()}


def _add_scores(table: Table, scores: dict[str, Score], label: str = "") -> None:
    for key, s in scores.items():
        if s.items:
            table.add(f"{key}{label}", s.items, _pct(s.top1), _pct(s.top3), f"{s.mrr:.3f}")


def _start_figure(starts: list[Start]) -> str:
    return (f"fresh process {ms(p50([s.wall for s in starts]))} ms wall, "
            f"{ms(p50([s.cpu for s in starts]))} ms CPU "
            f"(import {ms(p50([s.import_cpu for s in starts]))} ms CPU + first build), "
            f"then the first find_agent {ms(p50([s.first_query_cpu for s in starts]))} ms CPU")


async def bench_router(options: Options) -> Table:
    table = Table("8. Router: find_agent accuracy on public collections, and its speed",
                  ["group", "tasks", "top-1", "top-3", "MRR"])
    scores = groups(evaluate())
    _add_scores(table, scores)
    if options.baseline:
        _add_scores(table, baseline_scores(options.baseline), f" ({options.baseline})")
    held, hard = scores["all/heldout"], scores["all/heldout/hard"]
    table.target("held-out top-1 >= 85%", held.top1 >= TARGET_TOP1, _pct(held.top1))
    table.target("held-out top-3 >= 95%", held.top3 >= TARGET_TOP3, _pct(held.top3))
    table.target("held-out hard top-3 >= 75%", hard.top3 >= TARGET_HARD_TOP3, _pct(hard.top3))
    measured = speed(options.count(5, 2), options.baseline)
    queries, starts = measured.queries, measured.starts
    table.target(f"find_agent p50 < 5 ms at {measured.definitions} definitions",
                 p50(queries) < TARGET_P50_S,
                 f"p50 {ms(p50(queries))} ms ({ms(p50(measured.queries_cpu))} ms CPU), "
                 f"p95 {ms(p95(queries))} ms")
    wall = p50([s.wall for s in starts])
    table.target("index start-up < 100 ms", wall < TARGET_START_S,
                 f"{_start_figure(starts)}; rebuild {ms(p50(measured.rebuilds))} ms; "
                 f"load average {os.getloadavg()[0]:.1f}")
    if measured.starts_before:
        table.notes.append(f"start-up as of {options.baseline}, taken in turn with the above: "
                           f"{_start_figure(measured.starts_before)}")
    table.notes.append("groups: <collection|all>/<split>[/hard]; `team` is the set written "
                       "and tuned here (tests/fixtures/router_eval.yaml)")
    return table
