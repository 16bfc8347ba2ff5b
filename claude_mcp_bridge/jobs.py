"""Jobs: start a call, get its id at once, poll it, collect its result later.

For clients with hard request timeouts (MCP Inspector, Claude Desktop): ``job_start``
admits the call exactly as a direct call would be (policy, budget reservation, depth)
and returns its id; the call then runs in the background under the same limits.
``job_status``, ``job_result`` (waits a bounded time) and ``job_cancel`` follow it.

A job is its call's row in the ledger (the job id is the call id), and its answer is
kept beside the ledger (``answers.py``), so ``job_result`` works from another
connection and after a restart; a job that was running when the bridge died is marked
``interrupted`` at the next start, like every call.

A client (``[clients.<name>]``) sees only its own jobs: another's job id is answered as
unknown, so ids cannot even be probed. The owner (the single token, stdio) sees all.

A job's permission question (a rule said "ask") waits for ``job_approve``: ``job_status``
shows it (question id, tool, summary); unanswered within ``ask_timeout_s`` it is denied.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .answers import visible_to
from .approvals import Answer, Question
from .bridge import Admitted, Bridge
from .outcomes import Outcome, Refusal, Reply
from .progress import Progress

logger = logging.getLogger(__name__)

JOB_TOOL_NAMES = frozenset({"job_start", "job_status", "job_result", "job_cancel",
                            "job_approve"})
VERDICTS = ("allow_once", "allow_call", "deny")
MAX_WAIT_S = 60.0
"""Longest ``job_result`` wait: below the usual client request timeouts."""
RECENT_EVENTS = 10


@dataclass
class _Live:
    """A job this process is running."""

    admitted: Admitted
    started: float = field(default_factory=time.monotonic)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    done: anyio.Event = field(default_factory=anyio.Event)
    waiting: _Waiting | None = None
    """The permission question this job waits for, until job_approve answers it."""

    @property
    def key(self) -> tuple[str, str]:
        return ("job", self.admitted.call_id)

    async def ask(self, question: Question) -> Answer | None:
        """``Approver``: the question waits here for ``job_approve`` (the desk's time limit
        ends the wait)."""
        waiting = _Waiting(question)
        self.waiting = waiting
        self.recent.append(f"waiting for job_approve: {question.summary}")
        try:
            await waiting.answered.wait()
        finally:
            self.waiting = None
        return waiting.answer


@dataclass
class _Waiting:
    question: Question
    answered: anyio.Event = field(default_factory=anyio.Event)
    answer: Answer | None = None

    def facts(self) -> dict[str, Any]:
        return {"question_id": self.question.question_id, "tool": self.question.tool_name,
                "summary": self.question.summary, "timeout_s": self.question.timeout_s}


class JobBoard:
    """The jobs of one bridge process; ``running()`` must be entered for jobs to start."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._live: dict[str, _Live] = {}
        self._tasks: TaskGroup | None = None
        self._unkept: dict[str, Reply] = {}
        """Replies that could not be written to disk, until job_result collects them."""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[JobBoard]:
        """Run background jobs while the server serves; on exit, jobs still running are
        stopped (their children ended, their rows settled)."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            try:
                yield self
            finally:
                self._tasks = None
                for job in self._live.values():
                    self._bridge.calls.stop_call(job.key, "stopped by the bridge shutting down",
                                           outcome="cancelled")
                with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                    for job in list(self._live.values()):
                        await job.done.wait()
                tg.cancel_scope.cancel()

    async def handle(self, name: str, arguments: Mapping[str, Any], caller: str,
                     client: str | None = None) -> Reply:
        """One call of a job tool (``JOB_TOOL_NAMES``), its arguments checked; ``client``
        is the client making it (None: the owner)."""
        if name == "job_start":
            tool, inner = arguments.get("tool"), arguments.get("arguments", {})
            if not isinstance(tool, str) or not isinstance(inner, dict) or set(arguments) - {
                    "tool", "arguments"}:
                return Reply.refused(
                    name, "invalid arguments: expected {tool: string, arguments: object}")
            return await self.start(tool, inner, caller, client)
        job_id = arguments.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            return Reply.refused(name, "invalid arguments: job_id (a string) is required")
        if not await anyio.to_thread.run_sync(visible_to, self._bridge.ledger, job_id, client):
            return _error(f"unknown job {job_id!r}")
        if name == "job_status":
            return await self.status(job_id)
        if name == "job_cancel":
            return await self.cancel(job_id)
        if name == "job_approve":
            return self.approve(job_id, arguments)
        wait_s = arguments.get("wait_s", 30)
        if isinstance(wait_s, bool) or not isinstance(wait_s, int | float):
            return Reply.refused(name, "invalid arguments: wait_s must be a number of seconds")
        return await self.result(job_id, float(wait_s))

    async def start(
        self, tool: str, arguments: Mapping[str, Any] | None, caller: str,
        client: str | None = None,
    ) -> Reply:
        if self._tasks is None:
            return _error("jobs are not available: the server is not running its job runner")
        admitted = await self._bridge.admit(tool, arguments, caller, client)
        if isinstance(admitted, Refusal):
            return Reply.refused(tool, admitted)
        job = _Live(admitted)
        self._live[admitted.call_id] = job
        self._tasks.start_soon(self._run, job)
        return _answer({"job_id": admitted.call_id, "tool": tool, "state": "running"},
                       f"started job {admitted.call_id} ({tool}); poll it with job_status or "
                       "collect the answer with job_result")

    async def _run(self, job: _Live) -> None:
        async def note(message: str) -> None:
            job.recent.append(message)

        job_id = job.admitted.call_id
        try:
            finished = await self._bridge.execute(job.admitted, Progress(note), job.key, job)
            reply = finished.reply()
            try:
                await anyio.to_thread.run_sync(self._bridge.answers.keep_reply, job_id, reply)
            except OSError as exc:  # disk full: keep it here, for this process's lifetime
                logger.error("job %s: its answer could not be kept on disk (%s); it is held "
                             "in memory until collected", job_id[:8], exc)
                self._unkept[job_id] = reply
        finally:
            job.done.set()
            # From now on the ledger row and the kept answer say everything; a long-running
            # server must not hold every job it ever ran (and its prompt) in memory.
            self._live.pop(job.admitted.call_id, None)

    async def status(self, job_id: str) -> Reply:
        row = await anyio.to_thread.run_sync(self._bridge.ledger.get, job_id)
        if row is None:
            return _error(f"unknown job {job_id!r}")
        live = self._live.get(job_id)
        state: Outcome = row["outcome"]
        facts: dict[str, Any] = {
            "job_id": job_id, "tool": row["tool"], "state": state,
            "started_at": row["started_at"], "ended_at": row["ended_at"],
            "cost_usd": row["cost_usd"], "error": row["error"],
        }
        if live is not None:
            facts["elapsed_s"] = round(time.monotonic() - live.started, 3)
            facts["recent_events"] = list(live.recent)
        waiting = live.waiting if live is not None else None
        facts["waiting_for"] = waiting.facts() if waiting is not None else None
        summary = f"job {job_id}: {state}"
        if waiting is not None:
            summary += (f"; waits for your decision on {waiting.question.summary} (answer "
                        f"with job_approve, question_id {waiting.question.question_id})")
        elif live is not None and state == "running":
            last = live.recent[-1] if live.recent else "starting"
            summary += f" for {facts['elapsed_s']:.0f}s; last: {last}"
        return _answer(facts, summary)

    def approve(self, job_id: str, arguments: Mapping[str, Any]) -> Reply:
        """``job_approve``: answer the question the job waits for."""
        question_id, decision = arguments.get("question_id"), arguments.get("decision")
        reason = arguments.get("reason", "")
        if not isinstance(question_id, str) or decision not in VERDICTS or not isinstance(
                reason, str) or set(arguments) - {"job_id", "question_id", "decision", "reason"}:
            return Reply.refused("job_approve", "invalid arguments: expected {job_id, "
                                 "question_id, decision: allow_once|allow_call|deny, reason?}")
        live = self._live.get(job_id)
        waiting = live.waiting if live is not None else None
        if waiting is None or waiting.question.question_id != question_id:
            return _error(f"job {job_id} does not wait for question {question_id!r} (answered, "
                          "timed out, or never asked); see job_status")
        waiting.answer = Answer(decision, reason)
        waiting.answered.set()
        return _answer({"job_id": job_id, "question_id": question_id, "decision": decision},
                       f"job {job_id}: {decision} {waiting.question.summary}")

    async def result(self, job_id: str, wait_s: float) -> Reply:
        live = self._live.get(job_id)
        if live is not None:
            with anyio.move_on_after(min(max(wait_s, 0.0), MAX_WAIT_S)):
                await live.done.wait()
        kept = self._unkept.pop(job_id, None) or await anyio.to_thread.run_sync(
            self._bridge.answers.reply, job_id)
        if kept is not None:
            row = await anyio.to_thread.run_sync(self._bridge.ledger.get, job_id)
            state = row["outcome"] if row else ("error" if kept.is_error else "ok")
            return Reply(kept.text, {**(kept.structured or {}), "job_id": job_id,
                                     "state": state}, kept.is_error, kept.meta)
        status = await self.status(job_id)
        if status.is_error or status.structured is None:
            return status
        state = status.structured["state"]
        if state == "running":
            return Reply(f"job {job_id} is still running; call job_result again",
                         status.structured)
        why = status.structured.get("error") or state
        return _error(f"job {job_id} ended {state} without an answer: {why}", status.structured)

    async def cancel(self, job_id: str) -> Reply:
        live = self._live.get(job_id)
        if live is None or live.done.is_set():
            return await self.status(job_id)
        self._bridge.calls.stop_call(live.key, "cancelled with job_cancel")
        with anyio.move_on_after(30):
            await live.done.wait()
        return await self.status(job_id)


def _answer(facts: dict[str, Any], text: str) -> Reply:
    return Reply(text, facts)


def _error(text: str, facts: dict[str, Any] | None = None) -> Reply:
    return Reply(text, facts, is_error=True)
