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
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio

from agents_registry import Definition, load_registry

from . import sandbox
from .answers import kept_answers
from .approvals import Approver, DecisionRecord, PermissionDesk
from .arguments import CallArguments, parse_arguments
from .budget import Budget, BudgetRefusal, applicable_limits
from .catalog import Catalog, build_catalog
from .clients import ClientPolicy, Clients
from .command import Command, build_command
from .decisions import record_decision
from .errors import CommandError, QueueFull, UnknownToolError
from .events import Event, ResultEvent
from .followups import session_cost, session_refusal
from .inflight import InFlight
from .kept import Kept
from .ledger import CallStart, Ledger, Reservation
from .ledger_schema import LEDGER_ERRORS
from .outcomes import Refusal, Reply
from .policy import RunPlan, plan_call
from .processes import Identity
from .progress import Progress
from .result import CallReport, bounded, reply, report
from .runner import Limits, run
from .settings import Settings
from .settle import Settler, made, now_or_later, promptly, retried
from .slots import Slots
from .tool_policy import ToolPolicy
from .warm import LiveLimits, WarmPool, how

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
    client: ClientPolicy | None = None
    """The client that made the call, whose share of the slots it takes."""

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


@dataclass
class _Spend:
    """What is known of a running call's spending, for charging it if it is stopped."""

    ran: bool = False
    """Its child was started (it may have spent)."""
    reported: float | None = None
    """The cost its child reported in a ``result`` event."""
    noted: Future[None] | None = None
    """The queued ledger write of ``reported``, made before the call answers."""


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
        self.clients = Clients.from_config(settings.config)
        """The current clients; replaced as a whole when the config file changes."""
        warm = settings.config.warm
        self.warm = WarmPool(warm.size, warm.idle_s, limits.kill_grace_s, LiveLimits(
            warm.live_sessions, warm.live_memory_mb << 20))
        self.answers = kept_answers(ledger, settings.ledger_path.parent / "results")
        self.settler = Settler(ledger)
        self.started = time.monotonic()
        self.calls = InFlight()
        """The calls running now: how the transports stop one, and how shutdown drains."""

    # -- a call ---------------------------------------------------------------------------

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, progress: Progress, caller: str,
        key: Hashable | None = None, client: str | None = None,
        approver: Approver | None = None,
    ) -> Finished | Refusal:
        """Run one tool call through every stage; ``key`` lets the transport stop it, and
        ``approver`` asks the person what policy leaves to them."""
        admitted = await self.admit(name, arguments, caller, client)
        if isinstance(admitted, Refusal):
            return admitted
        return await self.execute(admitted, progress, key, approver)

    async def admit(
        self, name: str, arguments: Mapping[str, Any] | None, caller: str,
        client: str | None = None,
    ) -> Admitted | Refusal:
        """Policy and budget, before anything runs: an ``Admitted`` call or the refusal."""
        entry = self.catalog.get(name)
        if entry is None:
            raise UnknownToolError(name)
        if self.calls.draining:
            return Refusal("drain", "the bridge is shutting down; retry the call when it is back")
        if self.ledger.problem:
            return Refusal("setup", self.ledger.problem)
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return Refusal("arguments", parsed)
        return await self.admit_definition(entry.name, entry.definition, entry.policy, parsed,
                                           caller, client=client)

    async def admit_definition(
        self, tool: str, definition: Definition, policy: ToolPolicy, arguments: CallArguments,
        caller: str, *, json_schema: Mapping[str, Any] | None = None,
        client: str | None = None,
    ) -> Admitted | Refusal:
        """Plan ``definition`` under ``policy`` (held to ``client``'s ceiling), build its
        command and reserve its budget: an ``Admitted`` call, or why not (recorded in the
        ledger). ``json_schema`` asks for structured output (``--json-schema``)."""
        start = CallStart(
            tool=tool, kind=definition.kind, definition_path=str(definition.path),
            definition_sha256=definition.sha256, caller=client or caller,
            prompt=arguments.prompt, store_prompt=self.settings.config.ledger.store_prompts,
            client=client)
        ceiling = None if client is None else self.clients.get(client)
        planned: tuple[RunPlan, Command] | Refusal
        if (session := await session_refusal(self.ledger, tool, arguments.session_id)):
            planned = session
        elif client is not None and ceiling is None:  # removed from the config since
            planned = Refusal("policy", f"client {client} is no longer configured")
        elif ceiling is not None and (refused := ceiling.refusal(
                tool, definition.name, model=arguments.model)):
            planned = refused
        else:
            policy = policy if ceiling is None else ceiling.narrow(policy)
            planned = self._plan(definition, policy, arguments, json_schema)
        if not isinstance(planned, Refusal) and planned[0].sandbox is not None:
            unable = await anyio.to_thread.run_sync(sandbox.problem)
            if unable is not None:
                planned = Refusal("setup", f"{tool} must run sandboxed ([permissions] sandbox), "
                                  f"and the sandbox cannot run here: {unable}")
        try:
            if isinstance(planned, Refusal):
                await anyio.to_thread.run_sync(self.ledger.refuse, start, planned.message)
                return planned
            plan, command = planned
            client_budget = ceiling.budget if ceiling else None
            reserve = partial(self.ledger.reserve, start, plan.max_budget_usd, policy.budget,
                              self.global_budget, client_budget=client_budget)
            # a budget's sum over its period's calls is work for a thread; an insert is not
            budgets = applicable_limits(tool, policy.budget, self.global_budget, start.client,
                                        client_budget)
            reservation = await (anyio.to_thread.run_sync(reserve) if budgets
                                 else promptly(reserve))
        except LEDGER_ERRORS as exc:  # nothing runs that the ledger cannot hold
            logger.error("the ledger cannot record a call of %s: %s", tool, exc)
            return Refusal("setup", str(self.ledger.explain(exc)))
        if isinstance(reservation, BudgetRefusal):
            return reservation.refusal()
        return Admitted(tool, definition, policy, plan, command, reservation, ceiling)

    async def execute(
        self, admitted: Admitted, progress: Progress, key: Hashable | None = None,
        approver: Approver | None = None,
    ) -> Finished:
        """Wait for a slot, run, settle. Always settles the reservation, even when cancelled
        (a client's cancellation propagates; a stop by the bridge is a ``Finished``)."""
        tool, reservation = admitted.tool, admitted.reservation
        configured = self.settings.config.limits
        limits = Limits(timeout_s=admitted.plan.timeout_s, kill_grace_s=configured.kill_grace_s,
                        result_grace_s=configured.result_grace_s, stall_s=configured.stall_s)
        call_id, cap = reservation.call_id, admitted.plan.max_budget_usd
        settled = False
        why = "stopped"
        spend = _Spend()
        began = time.monotonic()
        logger.info("call %s %s started", call_id[:8], tool, extra={
            "event": "call.start", "call_id": call_id, "tool": tool})
        with anyio.CancelScope() as stop:
            self.calls.track(stop, key)
            try:
                client = admitted.client
                share = (client.name, client.max_concurrency) if client else None
                async with self.slots.slot(tool, admitted.policy.max_concurrency,
                                           progress.queued, share):
                    spend.ran = True
                    desk = self._desk(admitted, progress, approver)
                    outcome, structured = await self._run(admitted, limits, progress, began,
                                                          spend, desk)
                if spend.noted is not None:  # a crash after the answer is charged the note
                    await made(spend.noted)
                settled = True
                self.settler.finished(call_id, tool, outcome, cap, began)  # written after
                return Finished(tool, outcome, structured)
            except QueueFull as exc:
                settled = True
                self.settler.stopped(call_id, tool, "refused", str(exc), began,
                                     ran=False, reported_usd=None, cap=cap)
                return Finished(tool, None, refusal=Refusal("queue", str(exc)))
            finally:
                ended, why = self.calls.why_stopped(stop)
                try:
                    if not settled:  # cancelled (client, disconnect, shutdown) or a bug
                        self.settler.stopped(call_id, tool, ended, why, began,
                                             ran=spend.ran, reported_usd=spend.reported,
                                             cap=cap)
                finally:
                    self.calls.untrack(stop)
        # only a stop by the bridge (our own scope) gets here; a client's cancel propagates
        return Finished(tool, None, refusal=Refusal(
            "drain", f"{why} before the call finished; the agent was stopped"))

    def _desk(self, admitted: Admitted, progress: Progress, approver: Approver | None
              ) -> PermissionDesk:
        """Who answers the call's permission prompts, each answer recorded in the ledger."""
        async def record(decision: DecisionRecord) -> None:
            await retried(lambda: record_decision(self.ledger, admitted.tool, decision),
                          f"recording a permission decision of call {admitted.call_id[:8]}")

        return PermissionDesk(
            call_id=admitted.call_id, tool=admitted.tool, definition=admitted.definition.name,
            policy=admitted.policy, cwd=admitted.plan.cwd, declared=admitted.plan.tools,
            approver=approver, record=record, say=progress.say)

    async def _run(
        self, admitted: Admitted, limits: Limits, progress: Progress, began: float,
        spend: _Spend, desk: PermissionDesk,
    ) -> tuple[CallReport, Any]:
        definition, call_id, seen = admitted.definition, admitted.call_id, []
        before = await session_cost(self.ledger, admitted.plan.session_id)
        command, started = self.warm.take_for(admitted.command, admitted.plan.session_id)
        starting = f"starting {definition.kind} {definition.name}{how(started)}"

        async def on_event(event: Event) -> None:
            seen.append(True)
            if isinstance(event, ResultEvent) and event.total_cost_usd is not None:
                spend.reported = cost = event.total_cost_usd
                # made before the answer: a crash before the settlement is charged this
                spend.noted = now_or_later(self.ledger, lambda: self.ledger.note_cost(
                    call_id, cost), f"recording the cost of call {call_id[:8]}")
            await progress.on_event(event)

        async def on_spawn(child: Identity | None) -> None:
            nonlocal starting
            if child is not None:
                now_or_later(self.ledger, lambda: self.ledger.note_child(call_id, child),
                             f"recording the child of call {call_id[:8]}")
            if starting:  # said while the child starts up, once (a fallback runs again)
                message, starting = starting, ""
                await progress.say(message)

        keep = admitted.policy.live_idle_s > 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.heartbeat, self.settings.config.limits.heartbeat_s, began)
            result = await run(command, limits, on_event, started=started, keep=keep,
                               session_cost=before, on_spawn=on_spawn, on_control=desk.answer)
            if isinstance(started, Kept) and result.result is None and not seen:
                # the live process died before it took the follow-up: resume it instead
                logger.info("call %s: the live session did not answer (%s); resuming",
                            admitted.call_id[:8], result.exit_code)
                result = await run(admitted.command, limits, on_event, keep=keep,
                                   session_cost=before, on_spawn=on_spawn,
                                   on_control=desk.answer)
            tg.cancel_scope.cancel()
        if result.kept is not None and result.result and result.result.session_id:
            await self.warm.keep(result.result.session_id, admitted.tool, admitted.command,
                                 result.kept, admitted.policy.live_idle_s)
        outcome = await self._bounded(admitted.call_id, report(admitted.tool, result, limits))
        return outcome, result.result.structured_output if result.result else None

    async def _bounded(self, call_id: str, outcome: CallReport) -> CallReport:
        """The report with its answer cut to the size limit, the whole text kept aside; when
        it cannot be kept (disk full), the cut answer says so."""
        limit = self.settings.config.limits.max_result_chars
        if len(outcome.message) <= limit:
            return outcome
        try:
            uri = await anyio.to_thread.run_sync(self.answers.keep_text, call_id,
                                                 outcome.message)
        except OSError as exc:
            logger.error("call %s: the whole answer (%d characters) could not be kept: %s",
                         call_id[:8], len(outcome.message), exc)
            return bounded(outcome, limit, None, exc.strerror or str(exc))
        return bounded(outcome, limit, uri)

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

    # -- the catalog ----------------------------------------------------------------------

    async def reload(self) -> bool:
        """Rediscover the definitions and use the new catalog; True when the published
        tools changed (the server then tells its clients)."""
        catalog = await anyio.to_thread.run_sync(load_catalog, self.settings)
        before = {t.name: t for t in self.catalog.tools}
        after = {t.name: t for t in catalog.tools}
        changed = [name for name, entry in self.catalog.entries.items()
                   if (new := catalog.get(name)) is None
                   or new.definition.sha256 != entry.definition.sha256]
        self.catalog = catalog
        await self.warm.end_sessions(changed)
        rejected = sum(1 for d in catalog.registry.diagnostics if d.severity == "error")
        logger.info("definitions reloaded: %d tools, %d files rejected", len(after), rejected,
                    extra={"event": "catalog.reload", "tools": len(after), "rejected": rejected})
        return before != after


def load_catalog(settings: Settings) -> Catalog:
    """Discover definitions and publish them under the config's policy."""
    registry = load_registry(settings.roots, cache=settings.definitions_cache)
    return build_catalog(registry, settings.config, settings.project_dir)


@contextmanager
def open_bridge(settings: Settings) -> Iterator[Bridge]:
    """The bridge with its catalog and its ledger open (crashed calls recovered)."""
    ledger = Ledger.open(settings.ledger_target, lease_s=settings.config.ledger.lease_s)
    try:
        yield Bridge(settings, load_catalog(settings), ledger)
    finally:
        ledger.close()
