"""The bridge: the domain core every connection shares, and the one place that calls the
stages of a call in order. It knows nothing of MCP: it answers with values
(``Admitted | Refusal``, ``Finished``) that the server turns into MCP results.

    admit:   look up -> validate -> plan under policy -> build the command -> reserve budget
    execute: wait for a slot -> run (progress, heartbeat) -> bound the answer -> settle

A call made through a tool runs both at once; a job (``jobs.py``) is admitted while
the client waits and executed in the background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio

from agents_registry import Definition, load_registry

from .answers import AnswerStore
from .arguments import CallArguments, parse_arguments
from .budget import Budget, BudgetRefusal
from .catalog import Catalog, build_catalog
from .command import Command, build_command
from .errors import CommandError, QueueFull, UnknownToolError
from .ledger import CallStart, Ledger, Reservation, Settlement
from .outcomes import Outcome, Refusal, Reply
from .policy import RunPlan, plan_call
from .progress import Progress
from .result import CallReport, bounded, reply, report
from .runner import Limits, run
from .settings import Settings
from .slots import Slots
from .tool_policy import ToolPolicy
from .warm import WarmPool

logger = logging.getLogger(__name__)

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
"""The tool the CLI adds for ``--json-schema``; the model answers by calling it."""


@dataclass(frozen=True)
class Admitted:
    """A call that passed policy and holds its budget reservation; it must be executed
    or settled, never dropped."""

    tool: str
    definition: Definition
    policy: ToolPolicy
    plan: RunPlan
    command: Command
    reservation: Reservation

    @property
    def call_id(self) -> str:
        return self.reservation.call_id


@dataclass(frozen=True)
class Finished:
    """How an admitted call ended: its report, or why it never got one."""

    tool: str
    report: CallReport | None
    """None when it did not run to an end (the queue was full, the bridge stopped it)."""
    structured_output: Any = None
    """What the agent answered through ``--json-schema`` (``StructuredOutput``), if asked."""
    refusal: Refusal | None = None
    """Why there is no report."""

    @property
    def reason(self) -> str:
        return self.refusal.message if self.refusal else ""

    def reply(self) -> Reply:
        if self.report is None:
            return Reply.refused(self.tool, self.reason)
        return reply(self.report)


class Bridge:
    """What every connection shares: settings, the current catalog, slots and the ledger."""

    def __init__(self, settings: Settings, catalog: Catalog, ledger: Ledger) -> None:
        self.settings = settings
        self.catalog = catalog
        self.ledger = ledger
        limits = settings.config.limits
        self.slots = Slots(limits.max_concurrency, limits.max_queue)
        budget = settings.config.budget
        self.global_budget = Budget(budget.per_call_usd, budget.daily_usd, budget.monthly_usd)
        self.warm = WarmPool(settings.config.warm.size, settings.config.warm.idle_s,
                             limits.kill_grace_s)
        self.answers = AnswerStore(settings.ledger_path.parent / "results")
        self.started = time.monotonic()
        self.draining = False
        self._in_flight: dict[anyio.CancelScope, Hashable | None] = {}
        """Each running call's stop scope, with the key its transport knows it by."""
        self._stopped: dict[anyio.CancelScope, tuple[Outcome, str]] = {}
        """Why the bridge stopped a call (shutdown, client gone), for its answer and row."""
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- a call ---------------------------------------------------------------------------

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, progress: Progress, caller: str,
        key: Hashable | None = None,
    ) -> Finished | Refusal:
        """Run one tool call through every stage; ``key`` lets the transport stop it."""
        admitted = await self.admit(name, arguments, caller)
        if isinstance(admitted, Refusal):
            return admitted
        return await self.execute(admitted, progress, key)

    async def admit(
        self, name: str, arguments: Mapping[str, Any] | None, caller: str
    ) -> Admitted | Refusal:
        """Policy and budget, before anything runs: an ``Admitted`` call or the refusal."""
        entry = self.catalog.get(name)
        if entry is None:
            raise UnknownToolError(name)
        if self.draining:
            return Refusal("drain", "the bridge is shutting down; retry the call when it is back")
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return Refusal("arguments", parsed)
        return await self.admit_definition(entry.name, entry.definition, entry.policy, parsed,
                                           caller)

    async def admit_definition(
        self, tool: str, definition: Definition, policy: ToolPolicy, arguments: CallArguments,
        caller: str, *, json_schema: Mapping[str, Any] | None = None,
    ) -> Admitted | Refusal:
        """Plan ``definition`` under ``policy``, build its command and reserve its budget:
        an ``Admitted`` call, or why not (recorded in the ledger). ``json_schema`` asks for
        structured output (``--json-schema``)."""
        start = CallStart(
            tool=tool, kind=definition.kind, definition_path=str(definition.path),
            definition_sha256=definition.sha256, caller=caller, prompt=arguments.prompt,
            store_prompt=self.settings.config.ledger.store_prompts)
        planned = (await self._session_refusal(tool, arguments.session_id)
                   or self._plan(definition, policy, arguments, json_schema))
        if isinstance(planned, Refusal):
            await anyio.to_thread.run_sync(self.ledger.refuse, start, planned.message)
            return planned
        plan, command = planned
        reservation = await anyio.to_thread.run_sync(
            self.ledger.reserve, start, plan.max_budget_usd, policy.budget, self.global_budget)
        if isinstance(reservation, BudgetRefusal):
            return reservation.refusal()
        return Admitted(tool, definition, policy, plan, command, reservation)

    async def execute(
        self, admitted: Admitted, progress: Progress, key: Hashable | None = None
    ) -> Finished:
        """Wait for a slot, run, settle. Always settles the reservation, even when cancelled
        (a client's cancellation propagates; a stop by the bridge is a ``Finished``)."""
        tool, reservation = admitted.tool, admitted.reservation
        configured = self.settings.config.limits
        limits = Limits(timeout_s=admitted.plan.timeout_s, kill_grace_s=configured.kill_grace_s,
                        result_grace_s=configured.result_grace_s, stall_s=configured.stall_s)
        settled = False
        ran = False
        why = "stopped"
        began = time.monotonic()
        logger.info("call %s %s started", reservation.call_id[:8], tool, extra={
            "event": "call.start", "call_id": reservation.call_id, "tool": tool})
        with anyio.CancelScope() as stop:
            self._track(stop, key)
            try:
                async with self.slots.slot(tool, admitted.policy.max_concurrency,
                                           progress.queued):
                    ran = True
                    outcome, structured = await self._run(admitted, limits, progress, began)
                await self._settle(admitted, outcome, began)
                settled = True
                return Finished(tool, outcome, structured)
            except QueueFull as exc:
                await self._settle_stopped(admitted, "refused", str(exc), began, ran=False)
                settled = True
                return Finished(tool, None, refusal=Refusal("queue", str(exc)))
            finally:
                ended, why = self._stopped.pop(stop, ("cancelled", "cancelled by the client"))
                if not settled:  # cancelled (client, disconnect, shutdown) or a bug
                    with anyio.CancelScope(shield=True):
                        await self._settle_stopped(admitted, ended, why, began, ran=ran)
                self._untrack(stop)
                self._stopped.pop(stop, None)  # a stop that came while settling
        # only a stop by the bridge (our own scope) gets here; a client's cancel propagates
        return Finished(tool, None, refusal=Refusal(
            "drain", f"{why} before the call finished; the agent was stopped"))

    async def _run(
        self, admitted: Admitted, limits: Limits, progress: Progress, began: float
    ) -> tuple[CallReport, Any]:
        definition = admitted.definition
        command, warm = admitted.command, None
        if admitted.plan.session_id is None:
            taken = self.warm.take(command)
            if taken is not None:
                command, warm = taken
        try:
            await progress.say(f"starting {definition.kind} {definition.name}"
                               + (" (warm)" if warm else ""))
        except BaseException:
            if warm is not None:  # cancelled before the run owns it: end it here
                await self.warm.discard(warm)
            raise
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.heartbeat, self.settings.config.limits.heartbeat_s, began)
            result = await run(command, limits, progress.on_event, started=warm)
            tg.cancel_scope.cancel()
        outcome = report(admitted.tool, result, limits)
        limit = self.settings.config.limits.max_result_chars
        if len(outcome.message) > limit:
            uri = await anyio.to_thread.run_sync(self.answers.keep_text, admitted.call_id,
                                                 outcome.message)
            outcome = bounded(outcome, limit, uri)
        return outcome, result.result.structured_output if result.result else None

    async def _session_refusal(self, tool: str, session_id: str | None) -> Refusal | None:
        """A session resumes only through the tool that created it (the ledger knows which):
        another tool's session would run its conversation under this tool's policy."""
        if session_id is None:
            return None
        owner = await anyio.to_thread.run_sync(self.ledger.session_tool, session_id)
        if owner == tool:
            return None
        if owner is None:
            return Refusal("policy", f"session_id {session_id} is not a session of {tool}: no "
                           "call through this bridge reported it; pass the session_id of an "
                           f"earlier {tool} result, or leave it out to start a new session")
        return Refusal("policy", f"session_id {session_id} belongs to {owner}, not {tool}: a "
                       "session continues only with the tool that started it; call "
                       f"{owner} to follow it up, or leave session_id out")

    def _plan(
        self, definition: Definition, policy: ToolPolicy, arguments: CallArguments,
        json_schema: Mapping[str, Any] | None,
    ) -> tuple[RunPlan, Command] | Refusal:
        settings = self.settings
        plan = plan_call(definition, arguments, policy, depth=settings.depth,
                         max_depth=settings.config.limits.max_depth,
                         project_dir=settings.project_dir)
        if isinstance(plan, Refusal):
            return plan
        if json_schema is not None and plan.tools is not None:
            # The CLI answers a --json-schema through its StructuredOutput tool, which an
            # agent with its own tool list only has when the list names it (2.1.197).
            plan = replace(plan, tools=(*plan.tools, STRUCTURED_OUTPUT_TOOL))
        if settings.claude.path is None:
            return Refusal("setup", settings.claude.missing_message())
        try:
            command = build_command(definition, plan, arguments.prompt, settings,
                                    settings.claude.path, json_schema=json_schema)
        except CommandError as exc:
            return Refusal("policy", str(exc))
        return plan, command

    async def _settle(self, admitted: Admitted, call: CallReport, began: float) -> None:
        reservation, tool = admitted.reservation, admitted.tool
        output = call.output
        cost = output.cost_usd if output.cost_usd is not None else _unknown_cost(admitted)
        settlement = Settlement(
            outcome=call.outcome, cost_usd=cost, num_turns=output.num_turns,
            session_id=output.session_id, usage=_tokens(output.usage),
            error=call.message if call.outcome != "ok" else None,
            duration_ms=output.duration_ms)
        await anyio.to_thread.run_sync(self.ledger.settle, reservation.call_id, settlement)
        _log_end(reservation, tool, call.outcome, cost, began,
                 call.message[:200] if call.outcome != "ok" else None)

    async def _settle_stopped(
        self, admitted: Admitted, outcome: Outcome, why: str, began: float, *, ran: bool
    ) -> None:
        """Settle a call that was refused in the queue or stopped (it has no result)."""
        reservation, tool = admitted.reservation, admitted.tool
        charged = _unknown_cost(admitted) if ran else 0.0
        await anyio.to_thread.run_sync(
            self.ledger.settle, reservation.call_id,
            Settlement(outcome=outcome, cost_usd=charged, error=why))
        _log_end(reservation, tool, outcome, charged, began, why)

    # -- calls in flight, shutdown --------------------------------------------------------

    def _track(self, scope: anyio.CancelScope, key: Hashable | None) -> None:
        self._in_flight[scope] = key
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    def _untrack(self, scope: anyio.CancelScope) -> None:
        self._in_flight.pop(scope, None)
        if not self._in_flight:
            self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Refuse new calls, let running ones finish for up to ``timeout_s``, then stop the
        rest (their children are ended and their ledger rows settled ``cancelled``)."""
        self.draining = True
        if self._in_flight:
            logger.info("shutting down: waiting up to %gs for %d call(s) in flight",
                        timeout_s, len(self._in_flight))
        with anyio.move_on_after(timeout_s):
            await self._idle.wait()
        self.stop_all()
        with anyio.CancelScope(shield=True):
            await self._idle.wait()

    def stop_all(self) -> None:
        """Stop every call in flight now (shutdown)."""
        if self._in_flight:
            logger.warning("shutting down: stopping %d call(s) still running",
                           len(self._in_flight))
        for scope in list(self._in_flight):
            self._stop(scope, "interrupted", "stopped by the bridge shutting down")

    def stop_call(self, key: Hashable, why: str, *, outcome: Outcome = "cancelled") -> bool:
        """Stop the call its transport knows as ``key``; False when none is running."""
        for scope, known_as in list(self._in_flight.items()):
            if known_as == key:
                self._stop(scope, outcome, why)
                return True
        return False

    def _stop(self, scope: anyio.CancelScope, outcome: Outcome, why: str) -> None:
        self._stopped.setdefault(scope, (outcome, why))
        scope.cancel()

    # -- the catalog ----------------------------------------------------------------------

    async def reload(self) -> bool:
        """Rediscover the definitions and use the new catalog; True when the published
        tools changed (the server then tells its clients)."""
        catalog = await anyio.to_thread.run_sync(load_catalog, self.settings)
        before = {t.name: t for t in self.catalog.tools}
        after = {t.name: t for t in catalog.tools}
        self.catalog = catalog
        rejected = sum(1 for d in catalog.registry.diagnostics if d.severity == "error")
        logger.info("definitions reloaded: %d tools, %d files rejected", len(after), rejected,
                    extra={"event": "catalog.reload", "tools": len(after), "rejected": rejected})
        return before != after


def load_catalog(settings: Settings) -> Catalog:
    """Discover definitions and publish them under the config's policy."""
    return build_catalog(load_registry(settings.roots), settings.config, settings.project_dir)


@contextmanager
def open_bridge(settings: Settings) -> Iterator[Bridge]:
    """The bridge with its catalog and its ledger open (crashed calls recovered)."""
    ledger = Ledger.open(settings.ledger_path)
    try:
        yield Bridge(settings, load_catalog(settings), ledger)
    finally:
        ledger.close()


def _log_end(
    reservation: Reservation, tool: str, outcome: str, cost: float | None, began: float,
    error: str | None,
) -> None:
    duration_ms = round((time.monotonic() - began) * 1000)
    level = logging.INFO if outcome == "ok" else logging.WARNING
    logger.log(level, "call %s %s in %d ms, $%s%s", reservation.call_id[:8], outcome, duration_ms,
               "?" if cost is None else f"{cost:g}", f": {error}" if error else "",
               extra={"event": "call.end", "call_id": reservation.call_id,
                      "tool": tool, "outcome": outcome, "cost_usd": cost,
                      "duration_ms": duration_ms})


def _unknown_cost(admitted: Admitted) -> float:
    """What a call whose cost the CLI never reported is charged.

    A capped call may have spent up to its cap (``--max-budget-usd``), so the cap is
    charged: the budget is never overspent. An uncapped call's reservation is all that
    was left of the tightest budget, and charging that for a crash at start-up would
    block the rest of the day, so it is charged 0 and the log says the cost is unknown.
    """
    if admitted.plan.max_budget_usd is not None:
        return admitted.plan.max_budget_usd
    logger.warning("call %s ended without reporting its cost and had no cap; charged $0",
                   admitted.call_id[:8])
    return 0.0


def _tokens(usage: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
