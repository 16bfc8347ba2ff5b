"""Jobs: start a call, get its id at once, poll it, collect its result later.

For clients with hard request timeouts (MCP Inspector, Claude Desktop): ``job_start``
admits the call exactly as a direct call would be (policy, budget reservation, depth)
and returns its id; the call then runs in the background under the same limits.
``job_status``, ``job_result`` (waits a bounded time) and ``job_cancel`` follow it.

A job is its call's row in the ledger (the job id is the call id), and its answer is
kept beside the ledger (``results/<id>.json``), so ``job_result`` works from another
connection and after a restart; a job that was running when the bridge died is marked
``interrupted`` at the next start, like every call.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import mcp_types as types
from anyio.abc import TaskGroup

from .bridge import Admitted, Bridge, Caller, Progress

logger = logging.getLogger(__name__)

State = Literal["running", "ok", "error", "timeout", "cancelled", "refused", "interrupted"]
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

    @property
    def key(self) -> tuple[str, str]:
        return ("job", self.admitted.call_id)


class JobBoard:
    """The jobs of one bridge process; ``running()`` must be entered for jobs to start."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._live: dict[str, _Live] = {}
        self._tasks: TaskGroup | None = None

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
                    self._bridge.stop_call(job.key, "stopped by the bridge shutting down",
                                           outcome="interrupted")
                with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                    for job in list(self._live.values()):
                        await job.done.wait()
                tg.cancel_scope.cancel()

    async def start(
        self, tool: str, arguments: Mapping[str, Any] | None, caller: Caller
    ) -> types.CallToolResult:
        if self._tasks is None:
            return _error("jobs are not available: the server is not running its job runner")
        admitted = await self._bridge.admit(tool, arguments, caller)
        if isinstance(admitted, types.CallToolResult):
            return admitted
        job = _Live(admitted)
        self._live[admitted.call_id] = job
        self._tasks.start_soon(self._run, job)
        return _answer({"job_id": admitted.call_id, "tool": tool, "state": "running"},
                       f"started job {admitted.call_id} ({tool}); poll it with job_status or "
                       "collect the answer with job_result")

    async def _run(self, job: _Live) -> None:
        async def note(message: str) -> None:
            job.recent.append(message)

        try:
            result = await self._bridge.execute(job.admitted, Progress(note), job.key)
            await anyio.to_thread.run_sync(self._keep, job.admitted.call_id, result)
        finally:
            job.done.set()
            # From now on the ledger row and the kept answer say everything; a long-running
            # server must not hold every job it ever ran (and its prompt) in memory.
            self._live.pop(job.admitted.call_id, None)

    def _keep(self, job_id: str, result: types.CallToolResult) -> None:
        directory = self._bridge.results_dir
        directory.mkdir(parents=True, exist_ok=True)
        text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
        body = {"text": text, "is_error": bool(result.is_error),
                "structured": result.structured_content}
        (directory / f"{job_id}.json").write_text(json.dumps(body), encoding="utf-8")

    async def status(self, job_id: str) -> types.CallToolResult:
        row = await anyio.to_thread.run_sync(self._bridge.ledger.get, job_id)
        if row is None:
            return _error(f"unknown job {job_id!r}")
        live = self._live.get(job_id)
        state: State = row["outcome"]
        facts: dict[str, Any] = {
            "job_id": job_id, "tool": row["tool"], "state": state,
            "started_at": row["started_at"], "ended_at": row["ended_at"],
            "cost_usd": row["cost_usd"], "error": row["error"],
        }
        if live is not None:
            facts["elapsed_s"] = round(time.monotonic() - live.started, 1)
            facts["recent_events"] = list(live.recent)
        summary = f"job {job_id}: {state}"
        if live is not None and state == "running":
            last = live.recent[-1] if live.recent else "starting"
            summary += f" for {facts['elapsed_s']:.0f}s; last: {last}"
        return _answer(facts, summary)

    async def result(self, job_id: str, wait_s: float) -> types.CallToolResult:
        live = self._live.get(job_id)
        if live is not None:
            with anyio.move_on_after(min(max(wait_s, 0.0), MAX_WAIT_S)):
                await live.done.wait()
        kept = await anyio.to_thread.run_sync(self._kept, job_id)
        if kept is not None:
            row = await anyio.to_thread.run_sync(self._bridge.ledger.get, job_id)
            state = row["outcome"] if row else ("error" if kept["is_error"] else "ok")
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=kept["text"])],
                structured_content={**(kept["structured"] or {}), "job_id": job_id,
                                    "state": state},
                is_error=kept["is_error"])
        status = await self.status(job_id)
        if status.is_error or status.structured_content is None:
            return status
        state = status.structured_content["state"]
        if state == "running":
            return _answer(status.structured_content,
                           f"job {job_id} is still running; call job_result again")
        why = status.structured_content.get("error") or state
        return _error(f"job {job_id} ended {state} without an answer: {why}",
                      status.structured_content)

    def _kept(self, job_id: str) -> dict[str, Any] | None:
        if not job_id.isalnum():
            return None
        path = self._bridge.results_dir / f"{job_id}.json"
        if not path.is_file():
            return None
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    async def cancel(self, job_id: str) -> types.CallToolResult:
        live = self._live.get(job_id)
        if live is None or live.done.is_set():
            return await self.status(job_id)
        self._bridge.stop_call(live.key, "cancelled with job_cancel")
        with anyio.move_on_after(30):
            await live.done.wait()
        return await self.status(job_id)


def _answer(facts: dict[str, Any], text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=facts)


def _error(text: str, facts: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=facts, is_error=True)


JOB_TOOLS: tuple[types.Tool, ...] = (
    types.Tool(
        name="job_start",
        title="Start a job",
        description="Start any agent_* or skill_* tool in the background and return its "
                    "job_id at once (for clients whose requests time out). Same arguments and "
                    "policy as calling the tool directly.",
        input_schema={
            "type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
            "properties": {
                "tool": {"type": "string", "description": "the tool to run, e.g. agent_reviewer"},
                "arguments": {"type": "object", "description": "that tool's arguments"}}}),
    types.Tool(
        name="job_status",
        title="Job status",
        description="State, elapsed time, recent events and cost of a job.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["job_id"],
                      "properties": {"job_id": {"type": "string"}}},
        annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(
        name="job_result",
        title="Job result",
        description="The job's answer: waits up to wait_s (at most 60) for it to finish; "
                    "call again while it is still running.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["job_id"],
                      "properties": {"job_id": {"type": "string"},
                                     "wait_s": {"type": "number", "minimum": 0,
                                                "maximum": MAX_WAIT_S, "default": 30}}},
        annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(
        name="job_cancel",
        title="Cancel a job",
        description="Stop a running job (its agent is stopped) and return its final state.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["job_id"],
                      "properties": {"job_id": {"type": "string"}}}),
)
JOB_TOOL_NAMES = frozenset(tool.name for tool in JOB_TOOLS)
