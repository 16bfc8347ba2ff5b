"""One call of an agent or skill for a test, through the bridge's own stages.

    plan under policy -> build the command (+ --json-schema) -> reserve budget
      -> wait for a slot -> run -> settle in the ledger

It is the same sequence as ``Bridge.call``, on the same public pieces, with what a test
needs on top: an extra cwd root (the case's working copy), the JSON schema for
structured output, and the names of the tools the agent used.

Structured output, as the real CLI 2.1.197 does it: ``--json-schema`` adds a
``StructuredOutput`` tool; when the model calls it, the run ends and the ``result``
event carries ``structured_output`` (and the same JSON as ``result`` text). A model that
never calls it ends with a plain answer and no ``structured_output``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import anyio

from agents_registry import Definition

from ..admission import QueueFull, Slots
from ..catalog import Catalog
from ..command import CommandError, build_command
from ..events import Event, ToolUseEvent
from ..ledger import Budget, BudgetRefusal, CallStart, Ledger, Reservation, Settlement
from ..policy import Refused, RunPlan, ToolPolicy, plan_call
from ..result import CallReport, report
from ..runner import Command, Limits, run
from ..schemas import CallArguments
from ..settings import Settings

Say = Callable[[str], Awaitable[None]]

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"


class Host(Protocol):
    """What a test run shares with the bridge: ``server.Bridge`` is one."""

    settings: Settings
    catalog: Catalog
    ledger: Ledger
    slots: Slots
    global_budget: Budget


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


async def call(
    host: Host, subject: Subject, arguments: CallArguments, *,
    json_schema: Mapping[str, Any] | None, caller: str, say: Say,
) -> Called | NotRun:
    start = CallStart(
        tool=subject.tool, kind=subject.definition.kind,
        definition_path=str(subject.definition.path),
        definition_sha256=subject.definition.sha256, caller=caller, prompt=arguments.prompt,
        store_prompt=host.settings.config.ledger.store_prompts)
    planned = _plan(host.settings, subject, arguments, json_schema)
    if isinstance(planned, Refused):
        await anyio.to_thread.run_sync(host.ledger.refuse, start, planned.reason)
        return NotRun(planned.reason)
    plan, command = planned
    reservation = await anyio.to_thread.run_sync(
        host.ledger.reserve, start, plan.max_budget_usd, subject.policy.budget,
        host.global_budget)
    if isinstance(reservation, BudgetRefusal):
        return NotRun(str(reservation))
    return await _run_reserved(host, subject, command, plan.timeout_s, reservation, say)


def _plan(
    settings: Settings, subject: Subject, arguments: CallArguments,
    json_schema: Mapping[str, Any] | None,
) -> tuple[RunPlan, Command] | Refused:
    plan = plan_call(subject.definition, arguments, subject.policy, depth=settings.depth,
                     max_depth=settings.config.limits.max_depth,
                     project_dir=settings.project_dir)
    if isinstance(plan, Refused):
        return plan
    if json_schema is not None and plan.tools is not None:
        # The CLI answers a --json-schema through its StructuredOutput tool, which an agent
        # with its own tool list only has when the list names it (checked on 2.1.197).
        plan = replace(plan, tools=(*plan.tools, STRUCTURED_OUTPUT_TOOL))
    if settings.claude.path is None:
        return Refused(settings.claude.missing_message())
    try:
        command = build_command(subject.definition, plan, arguments.prompt, settings,
                                settings.claude.path)
    except CommandError as exc:
        return Refused(str(exc))
    if json_schema is not None:
        # --flag=value: a schema can never be read as another flag
        schema = json.dumps(json_schema, separators=(",", ":"))
        command = replace(command, argv=(*command.argv, f"--json-schema={schema}"))
    return plan, command


async def _run_reserved(
    host: Host, subject: Subject, command: Command, timeout_s: float,
    reservation: Reservation, say: Say,
) -> Called | NotRun:
    configured = host.settings.config.limits
    limits = Limits(timeout_s=timeout_s, kill_grace_s=configured.kill_grace_s,
                    result_grace_s=configured.result_grace_s, stall_s=configured.stall_s)
    tools_used: list[str] = []

    async def on_event(event: Event) -> None:
        if isinstance(event, ToolUseEvent):
            tools_used.append(event.name)
            await say(f"running tool {event.name}")

    async def queued(position: int) -> None:
        await say(f"queued, position {position}")

    settled = False
    try:
        async with host.slots.slot(subject.tool, subject.policy.max_concurrency, queued):
            finished = await run(command, limits, on_event)
        outcome = report(subject.tool, finished, limits)
        await _settle(host.ledger, reservation, outcome)
        settled = True
    except QueueFull as exc:
        await _settle_unrun(host.ledger, reservation, "refused", str(exc))
        settled = True
        return NotRun(str(exc))
    finally:
        if not settled:  # cancelled (Ctrl-C, the MCP client) or a bug
            with anyio.CancelScope(shield=True):
                await _settle_unrun(host.ledger, reservation, "cancelled", "cancelled")
    structured = finished.result.structured_output if finished.result else None
    return Called(reservation.call_id, outcome, tuple(tools_used), structured)


async def _settle(ledger: Ledger, reservation: Reservation, call: CallReport) -> None:
    output = call.output
    cost = output.cost_usd
    if cost is None and call.outcome != "ok":
        cost = reservation.reserved_usd  # unknown spend is charged in full, as the bridge does
    usage = {k: int(v) for k, v in output.usage.items()
             if isinstance(v, int) and not isinstance(v, bool)}
    settlement = Settlement(
        outcome=call.outcome, cost_usd=cost, num_turns=output.num_turns,
        session_id=output.session_id, usage=usage,
        error=call.message if call.outcome != "ok" else None, duration_ms=output.duration_ms)
    await anyio.to_thread.run_sync(ledger.settle, reservation.call_id, settlement)


async def _settle_unrun(ledger: Ledger, reservation: Reservation, outcome: Any,
                        why: str) -> None:
    charged = reservation.reserved_usd if outcome == "cancelled" else 0.0
    await anyio.to_thread.run_sync(
        ledger.settle, reservation.call_id, Settlement(outcome=outcome, cost_usd=charged,
                                                       error=why))
