"""One call of an agent or skill for a test, through the bridge's own stages.

A test run is admitted and executed exactly like a tool call (``Bridge.admit_definition``
then ``Bridge.execute``: policy, budget reservation, slots, heartbeat, drain,
settlement), with what a test needs on top: an extra cwd root (the case's working
copy), the JSON schema for structured output, and the names of the tools the agent used.

Structured output, as the real CLI 2.1.197 does it: ``--json-schema`` adds a
``StructuredOutput`` tool; when the model calls it, the run ends and the ``result``
event carries ``structured_output`` (and the same JSON as ``result`` text). A model that
never calls it ends with a plain answer and no ``structured_output``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents_registry import Definition

from ..arguments import CallArguments
from ..bridge import Bridge
from ..events import Event, ToolUseEvent
from ..outcomes import Refusal
from ..progress import Progress
from ..result import CallReport
from ..tool_policy import ToolPolicy

Say = Callable[[str], Awaitable[None]]

Host = Bridge
"""What a test run shares with the tool calls: the bridge itself."""


@dataclass(frozen=True)
class Subject:
    """What runs: the definition, its tool name (for the ledger) and its policy."""

    tool: str
    definition: Definition
    policy: ToolPolicy

    def admitting(self, workdir: Path) -> Subject:
        """The same subject, with ``workdir`` added to its allowed cwd roots."""
        roots = (*self.policy.cwd_roots, workdir.resolve())
        return replace(self, policy=replace(self.policy, cwd_roots=roots))


@dataclass(frozen=True)
class Called:
    """A call that ran (successfully or not) and was settled in the ledger."""

    call_id: str
    report: CallReport
    tools_used: tuple[str, ...]
    structured_output: Any


@dataclass(frozen=True)
class NotRun:
    """Refused by policy, budget or a full queue; the ledger has the refusal."""

    reason: str


class _Watching(Progress):
    """Progress that also remembers which tools the agent used."""

    def __init__(self, say: Say) -> None:
        super().__init__(say)
        self.tools_used: list[str] = []

    async def on_event(self, event: Event) -> None:
        if isinstance(event, ToolUseEvent):
            self.tools_used.append(event.name)
        await super().on_event(event)


async def call(
    host: Host, subject: Subject, arguments: CallArguments, *,
    json_schema: Mapping[str, Any] | None, caller: str, say: Say,
) -> Called | NotRun:
    admitted = await host.admit_definition(subject.tool, subject.definition, subject.policy,
                                           arguments, caller, json_schema=json_schema)
    if isinstance(admitted, Refusal):
        return NotRun(admitted.message)
    progress = _Watching(say)
    finished = await host.execute(admitted, progress)
    if finished.report is None:
        return NotRun(finished.reason)
    return Called(admitted.call_id, finished.report, tuple(progress.tools_used),
                  finished.structured_output)
