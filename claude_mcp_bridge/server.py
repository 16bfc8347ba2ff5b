"""MCP handlers: the one place that calls the stages in order.

    look up -> validate -> plan under policy -> build the command -> reserve budget
      -> wait for a slot -> run -> settle in the ledger -> answer
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext

from agents_registry import load_registry

from .admission import QueueFull, Slots
from .catalog import Catalog, ToolEntry, build_catalog
from .command import CommandError, build_command
from .errors import UnknownToolError
from .events import Event, ProgressNarrator
from .ledger import Budget, BudgetRefusal, CallStart, Ledger, Reservation, Settlement
from .policy import Refused, RunPlan, plan_call
from .result import CallReport, refusal, report, to_call_tool_result
from .runner import Command, Limits, run
from .schemas import parse_arguments
from .settings import Settings
from .usage import USAGE_URI, usage_resource

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Each tool runs one of the user's Claude Code agents (agent_*) or skills (skill_*) as a "
    "separate headless Claude Code session and returns its final answer, cost and session_id. "
    "Give the tool a complete, self-contained prompt; pass session_id back to ask a follow-up."
)


class Progress:
    """Sends a call's progress to its client; a client that went away is not an error."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._count = 0
        self._narrator = ProgressNarrator()

    async def say(self, message: str) -> None:
        self._count += 1
        try:
            await self._session.report_progress(self._count, None, message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            logger.debug("progress not delivered: the client is gone")

    async def on_event(self, event: Event) -> None:
        message = self._narrator.describe(event)
        if message:
            await self.say(message)

    async def queued(self, position: int) -> None:
        await self.say(f"queued, position {position}")


@dataclass(frozen=True)
class Caller:
    """Who made a call, for the ledger: transport and client name."""

    transport: str
    client: str

    def __str__(self) -> str:
        return f"{self.transport}/{self.client}"


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

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, progress: Progress, caller: Caller
    ) -> types.CallToolResult:
        entry = self.catalog.get(name)
        if entry is None:
            raise UnknownToolError(name)
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return refusal(name, parsed)
        start = self._call_start(entry, parsed.prompt, caller)
        planned = self._plan(entry, parsed)
        if isinstance(planned, Refused):
            return await self._refuse(start, planned.reason)
        plan, command = planned
        reservation = await anyio.to_thread.run_sync(
            self.ledger.reserve, start, plan.max_budget_usd, entry.policy.budget,
            self.global_budget)
        if isinstance(reservation, BudgetRefusal):
            return refusal(name, str(reservation))
        return await self._run_reserved(entry, plan, command, reservation, progress)

    def _plan(self, entry: ToolEntry, arguments: Any) -> tuple[RunPlan, Command] | Refused:
        settings = self.settings
        plan = plan_call(entry.definition, arguments, entry.policy, depth=settings.depth,
                         max_depth=settings.config.limits.max_depth,
                         project_dir=settings.project_dir)
        if isinstance(plan, Refused):
            return plan
        if settings.claude.path is None:
            return Refused(settings.claude.missing_message())
        try:
            command = build_command(entry.definition, plan, arguments.prompt, settings,
                                    settings.claude.path)
        except CommandError as exc:
            return Refused(str(exc))
        return plan, command

    async def _run_reserved(
        self, entry: ToolEntry, plan: RunPlan, command: Command, reservation: Reservation,
        progress: Progress,
    ) -> types.CallToolResult:
        limits = Limits(timeout_s=plan.timeout_s,
                        kill_grace_s=self.settings.config.limits.kill_grace_s,
                        result_grace_s=self.settings.result_grace_s)
        settled = False
        try:
            async with self.slots.slot(entry.name, entry.policy.max_concurrency, progress.queued):
                definition = entry.definition
                await progress.say(f"starting {definition.kind} {definition.name}")
                outcome = report(entry.name, await run(command, limits, progress.on_event),
                                 plan.timeout_s)
            await self._settle(reservation, outcome)
            settled = True
            return to_call_tool_result(outcome)
        except QueueFull as exc:
            await self._settle_without_run(reservation, "refused", str(exc))
            settled = True
            return refusal(entry.name, str(exc))
        finally:
            if not settled:  # cancelled (client, disconnect, shutdown) or a bug
                with anyio.CancelScope(shield=True):
                    await self._settle_without_run(reservation, "cancelled", "cancelled")

    async def _settle(self, reservation: Reservation, call: CallReport) -> None:
        output = call.output
        cost = output.cost_usd
        if cost is None and call.outcome != "ok":
            cost = reservation.reserved_usd  # unknown spend is charged in full, never lost
        settlement = Settlement(
            outcome=call.outcome, cost_usd=cost, num_turns=output.num_turns,
            session_id=output.session_id, usage=_tokens(output.usage),
            error=call.message if call.outcome != "ok" else None,
            duration_ms=output.duration_ms)
        await anyio.to_thread.run_sync(self.ledger.settle, reservation.call_id, settlement)
        logger.info("call %s %s: %s, $%s", reservation.call_id[:8], call.outcome,
                    call.message[:120] if call.outcome != "ok" else "answered", cost)

    async def _settle_without_run(self, reservation: Reservation, outcome: Any, why: str) -> None:
        charged = reservation.reserved_usd if outcome == "cancelled" else 0.0
        await anyio.to_thread.run_sync(
            self.ledger.settle, reservation.call_id,
            Settlement(outcome=outcome, cost_usd=charged, error=why))

    async def _refuse(self, start: CallStart, reason: str) -> types.CallToolResult:
        await anyio.to_thread.run_sync(self.ledger.refuse, start, reason)
        return refusal(start.tool, reason)

    def _call_start(self, entry: ToolEntry, prompt: str, caller: Caller) -> CallStart:
        definition = entry.definition
        return CallStart(
            tool=entry.name, kind=definition.kind, definition_path=str(definition.path),
            definition_sha256=definition.sha256, caller=str(caller), prompt=prompt,
            store_prompt=self.settings.config.ledger.store_prompts)


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


def _tokens(usage: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


def _caller(ctx: ServerRequestContext[Any]) -> Caller:
    transport = "http" if ctx.request is not None else "stdio"
    params = ctx.session.client_params
    if params is None:
        return Caller(transport, "unknown")
    info = params.client_info
    return Caller(transport, f"{info.name} {info.version}".strip())


def create_server(bridge: Bridge) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(bridge.catalog.tools))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            return await bridge.call(params.name, params.arguments, Progress(ctx.session),
                                     _caller(ctx))
        except UnknownToolError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from exc
        except Exception:
            # The SDK would send the exception text to legacy clients; log it, answer plainly.
            logger.exception("call %s failed inside the bridge", params.name)
            return refusal(params.name, "internal error in the bridge; see its log (stderr)")

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(
            uri=USAGE_URI, name="usage", title="Usage and budget",
            description="Calls, success rate, p50/p95 duration and cost per tool over the last "
                        "7 days, and the budget left today and this month.",
            mime_type="application/json")])

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != USAGE_URI:
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown resource {params.uri}")
        text = await anyio.to_thread.run_sync(usage_resource, bridge.ledger, bridge.global_budget)
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=USAGE_URI, mime_type="application/json", text=text)])

    return Server(
        "claude-mcp-bridge",
        version=version("claude-mcp-bridge"),
        title="Claude Code agents and skills",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )
