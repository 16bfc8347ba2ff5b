"""Run test cases: each run in a fresh working copy, checked, judged and recorded.

    case files -> subjects (published definitions) -> runs (case x repeat, K at a time)
      -> per run: working copy -> call -> checks -> judge -> ledger record

Every run is a real call through policy and the budget (``execute.py``); every run's
record goes to the ledger as soon as it ends, with the definition's content hash, so an
interrupted test run still leaves what it did.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from agents_registry import Definition, Diagnostic

from ..arguments import CallArguments
from ..catalog import Catalog, tool_name
from ..settings import Settings
from ..tool_policy import tool_policy
from .cases import Case, CaseFile, Judge
from .checks import CheckResult, Observation
from .execute import Called, Host, NotRun, Say, Subject, call
from .history import CaseRecord, CaseStatus, record_case
from .judge import VERDICT_SCHEMA, Verdict, builtin_judge, judge_prompt, read_verdict


@dataclass(frozen=True)
class RunOptions:
    repeat: int = 1
    """Runs of each case."""
    parallel: int = 1
    """Runs at once (the bridge's [limits] still apply on top)."""
    cases: frozenset[str] | None = None
    """Only the cases of these names (None: all)."""
    caller: str = "test"
    """The ledger's ``caller`` of every call the tests make."""


@dataclass(frozen=True)
class CaseRun:
    """One run of one case."""

    file: Path
    case: str
    attempt: int
    status: CaseStatus
    """passed: every check held; failed: a check did not; error: the run could not be
    made or checked (refused by policy or budget, the CLI failed, the judge failed)."""
    message: str | None = None
    """Why it did not pass: the failed checks or the error."""
    checks: tuple[CheckResult, ...] = ()
    answer: str = ""
    cost_usd: float | None = None
    judge_cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    judge_score: float | None = None
    judge_reasons: str | None = None
    call_id: str | None = None

    @property
    def failed_check(self) -> str | None:
        return next((c.check for c in self.checks if not c.passed), None)


@dataclass(frozen=True)
class DefinitionRun:
    """The runs of every case of one agent or skill."""

    definition: Definition
    runs: tuple[CaseRun, ...]
    records: tuple[CaseRecord, ...]


@dataclass(frozen=True)
class SuiteResult:
    run_id: str
    definitions: tuple[DefinitionRun, ...]
    diagnostics: tuple[Diagnostic, ...]
    """Test files that could not be used (and why)."""

    @property
    def runs(self) -> list[CaseRun]:
        return [run for d in self.definitions for run in d.runs]

    @property
    def passed(self) -> bool:
        return not self.diagnostics and all(run.status == "passed" for run in self.runs)


@dataclass(frozen=True)
class _Job:
    subject: Subject
    file: CaseFile
    case: Case
    attempt: int
    label: str


async def run_suite(
    host: Host, catalog: Catalog, files: Sequence[CaseFile], options: RunOptions, say: Say
) -> SuiteResult:
    """Run every selected case ``options.repeat`` times; results in file and case order."""
    run_id = uuid.uuid4().hex
    targets, diagnostics = _subjects(catalog, files)
    jobs = [job for subject, group in targets for job in _jobs(subject, group, options)]
    runs = await _run_jobs(host, catalog, jobs, options, run_id, say)
    definitions = []
    for subject, _ in targets:
        mine = [(job, run) for job, run in zip(jobs, runs, strict=True)
                if job.subject is subject]
        if not mine:  # every case of it was filtered out
            continue
        definitions.append(DefinitionRun(
            subject.definition, tuple(run for _, run in mine),
            tuple(record(run_id, subject.definition, run) for _, run in mine)))
    return SuiteResult(run_id, tuple(definitions), tuple(diagnostics))


def record(run_id: str, definition: Definition, run: CaseRun) -> CaseRecord:
    return CaseRecord(
        run_id=run_id, kind=definition.kind, name=definition.name,
        definition_path=str(definition.path), definition_sha256=definition.sha256,
        test_file=str(run.file), case_name=run.case, attempt=run.attempt, status=run.status,
        failed_check=run.failed_check, message=run.message, judge_score=run.judge_score,
        cost_usd=run.cost_usd, judge_cost_usd=run.judge_cost_usd,
        duration_ms=run.duration_ms, num_turns=run.num_turns, call_id=run.call_id)


def _subjects(
    catalog: Catalog, files: Sequence[CaseFile]
) -> tuple[list[tuple[Subject, list[CaseFile]]], list[Diagnostic]]:
    """Files grouped by the published definition they test; unknown names are diagnostics."""
    groups: dict[str, tuple[Subject, list[CaseFile]]] = {}
    diagnostics: list[Diagnostic] = []
    for file in files:
        subject = find_subject(catalog, file.kind, file.name)
        if subject is None:
            what = file.kind or "agent or skill"
            diagnostics.append(Diagnostic(file.path, (
                f"no published {what} named {file.name!r}; `claude-mcp-bridge list` shows "
                "what is published (a disabled one cannot be tested)")))
            continue
        groups.setdefault(subject.tool, (subject, []))[1].append(file)
    return list(groups.values()), diagnostics


def find_subject(catalog: Catalog, kind: str | None, name: str) -> Subject | None:
    """The published agent (first) or skill of that name."""
    for wanted in ("agent", "skill") if kind is None else (kind,):
        for entry in catalog.entries.values():
            if entry.definition.kind == wanted and entry.definition.name == name:
                return Subject(entry.name, entry.definition, entry.policy)
    return None


def _jobs(subject: Subject, files: list[CaseFile], options: RunOptions) -> list[_Job]:
    jobs = []
    for file in files:
        for case in file.cases:
            if options.cases is not None and case.name not in options.cases:
                continue
            for attempt in range(1, options.repeat + 1):
                label = f"{subject.definition.name}/{case.name}"
                if options.repeat > 1:
                    label += f" #{attempt}"
                jobs.append(_Job(subject, file, case, attempt, label))
    return jobs


async def _run_jobs(
    host: Host, catalog: Catalog, jobs: list[_Job], options: RunOptions, run_id: str, say: Say
) -> list[CaseRun]:
    results: list[CaseRun | None] = [None] * len(jobs)
    limits = host.settings.config.limits
    # Beyond slots + queue the bridge would refuse calls instead of queueing them.
    limiter = anyio.CapacityLimiter(
        max(1, min(options.parallel, limits.max_concurrency + limits.max_queue)))
    done = 0

    async def worker(index: int, job: _Job) -> None:
        nonlocal done
        async with limiter:
            async def tell(message: str) -> None:
                await say(f"{job.label}: {message}")

            await tell("started")
            run = await _run_case(host, catalog, job, f"{options.caller} {run_id[:8]}", tell)
            results[index] = run
            await anyio.to_thread.run_sync(
                record_case, host.ledger, record(run_id, job.subject.definition, run))
            done += 1
            await say(f"[{done}/{len(jobs)}] {job.label}: {_verdict_line(run)}")

    async with anyio.create_task_group() as tg:
        for index, job in enumerate(jobs):
            tg.start_soon(worker, index, job)
    return [run for run in results if run is not None]


def _verdict_line(run: CaseRun) -> str:
    text = run.status.upper()
    if run.duration_ms is not None:
        text += f" in {run.duration_ms / 1000:.1f}s"
    if run.cost_usd is not None:
        text += f", ${run.cost_usd:.4f}"
    return text + (f" ({run.message})" if run.message else "")


async def _run_case(host: Host, catalog: Catalog, job: _Job, caller: str, say: Say) -> CaseRun:
    case = job.case
    async with working_copy(case.fixture) as workdir:
        called = await call(
            host, job.subject.admitting(workdir), case.arguments(cwd=str(workdir)),
            json_schema=case.json_schema, caller=caller, say=say)
        if isinstance(called, NotRun):
            return CaseRun(job.file.path, case.name, job.attempt, "error", message=called.reason)
        ran = _ran(job, called)
        if called.report.outcome != "ok":
            return CaseRun(**ran, status="error", message=called.report.message)
        seen = Observation(
            answer=called.report.message, structured_output=called.structured_output,
            cost_usd=ran["cost_usd"], num_turns=ran["num_turns"],
            tools_used=called.tools_used, workdir=workdir, fixture=case.fixture)
        checks = [check.evaluate(seen) for check in case.checks]
        if case.judge is None:
            return _checked(ran, checks)
        return await _judged(host, catalog, case.judge, case.prompt, seen, ran, checks,
                             caller, say)


def _ran(job: _Job, called: Called) -> dict[str, Any]:
    output = called.report.output
    return {"file": job.file.path, "case": job.case.name, "attempt": job.attempt,
            "answer": called.report.message, "cost_usd": output.cost_usd,
            "duration_ms": output.duration_ms, "num_turns": output.num_turns,
            "call_id": called.call_id}


def _checked(ran: dict[str, Any], checks: list[CheckResult], **judged: Any) -> CaseRun:
    failed = [c for c in checks if not c.passed]
    return CaseRun(**ran, **judged, status="failed" if failed else "passed",
                   message="; ".join(map(str, failed)) or None, checks=tuple(checks))


async def _judged(
    host: Host, catalog: Catalog, judge: Judge, task: str, seen: Observation,
    ran: dict[str, Any], checks: list[CheckResult], caller: str, say: Say,
) -> CaseRun:
    async def tell(message: str) -> None:
        await say(f"judge: {message}")

    verdict, cost = await _ask_judge(host, catalog, judge, task, seen, caller, tell)
    if isinstance(verdict, str):
        return CaseRun(**ran, status="error", message=f"judge: {verdict}", checks=tuple(checks),
                       judge_cost_usd=cost)
    passed = verdict.score >= judge.pass_score
    detail = f"score {verdict.score:.2f} (pass {judge.pass_score:.2f}): {verdict.reasons}"
    return _checked(ran, [*checks, CheckResult("judge", passed, detail)],
                    judge_score=verdict.score, judge_reasons=verdict.reasons,
                    judge_cost_usd=cost)


async def _ask_judge(
    host: Host, catalog: Catalog, judge: Judge, task: str, seen: Observation, caller: str,
    say: Say,
) -> tuple[Verdict | str, float | None]:
    subject = judge_subject(catalog, host.settings, judge.agent)
    if subject is None:
        return f"no published agent named {judge.agent!r} to judge with", None
    arguments = CallArguments.model_validate(
        {"prompt": judge_prompt(judge.rubric, task, seen.answer), "cwd": str(seen.workdir),
         **({"model": judge.model} if judge.model else {})})
    called = await call(host, subject.admitting(seen.workdir), arguments,
                        json_schema=VERDICT_SCHEMA, caller=caller, say=say)
    if isinstance(called, NotRun):
        return f"not run: {called.reason}", None
    cost = called.report.output.cost_usd
    if called.report.outcome != "ok":
        return f"the judge's run failed: {called.report.message}", cost
    return read_verdict(called.structured_output, called.report.message), cost


def judge_subject(catalog: Catalog, settings: Settings, agent: str | None) -> Subject | None:
    """The named judging agent (published), or the built-in judge under the config's policy."""
    if agent is not None:
        return find_subject(catalog, "agent", agent)
    definition = builtin_judge()
    policy = tool_policy(settings.config, definition, settings.project_dir)
    return Subject(tool_name("agent", definition.name), definition, policy)


@asynccontextmanager
async def working_copy(fixture: Path | None) -> AsyncIterator[Path]:
    """A fresh temp folder for one run: a copy of ``fixture`` (links followed, so nothing in
    it points back at the original), or empty. Removed afterwards, whatever happens."""
    base: Path = await anyio.to_thread.run_sync(_new_folder)
    try:
        yield await anyio.to_thread.run_sync(_fill, base, fixture)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, base, True)


def _new_folder() -> Path:
    # resolved: the policy compares resolved paths (/tmp may be a link, as on macOS)
    return Path(tempfile.mkdtemp(prefix="agent-test-")).resolve()


def _fill(base: Path, fixture: Path | None) -> Path:
    if fixture is None:
        workdir = base / "work"
        workdir.mkdir()
        return workdir
    workdir = base / fixture.name
    shutil.copytree(fixture, workdir, symlinks=False, ignore_dangling_symlinks=True)
    return workdir
