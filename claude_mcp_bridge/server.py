"""MCP handlers: the one place that calls the stages in order.

    look up -> validate -> plan under policy -> build the command -> reserve budget
      -> wait for a slot -> run -> settle in the ledger -> answer
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

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


class Notifier:
    """Tells every connected client that the tool list changed, in both protocol eras.

    2026 clients hold a ``subscriptions/listen`` stream fed by the bus; 2025 clients
    are told on their connection, remembered from their ``notifications/initialized``
    until the connection ends.
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    def remember(self, session: Any) -> None:
        self._sessions.add(session)
        connection = getattr(session, "_connection", None)  # no public on-disconnect hook
        if connection is not None:
            connection.exit_stack.callback(self._sessions.discard, session)

    async def tools_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for session in list(self._sessions):
            try:
                await session.send_tool_list_changed()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._sessions.discard(session)


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
        self.notifier = Notifier()
        self.started = time.monotonic()
        self.draining = False
        self._in_flight: dict[anyio.CancelScope, Hashable | None] = {}
        """Each running call's stop scope, with the key its transport knows it by."""
        self._stopped: dict[anyio.CancelScope, str] = {}
        """Why the bridge stopped a call (shutdown, client gone), for its answer and row."""
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def reload(self) -> None:
        """Rediscover the definitions and publish the new catalog if it differs."""
        catalog = await anyio.to_thread.run_sync(load_catalog, self.settings)
        before = {t.name: t for t in self.catalog.tools}
        after = {t.name: t for t in catalog.tools}
        self.catalog = catalog
        rejected = sum(1 for d in catalog.registry.diagnostics if d.severity == "error")
        logger.info("definitions reloaded: %d tools, %d files rejected", len(after), rejected,
                    extra={"event": "catalog.reload", "tools": len(after), "rejected": rejected})
        if before != after:
            await self.notifier.tools_changed()

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
            self._stop(scope, "stopped by the bridge shutting down")

    def stop_call(self, key: Hashable, why: str) -> bool:
        """Stop the call its transport knows as ``key``; False when none is running."""
        for scope, known_as in list(self._in_flight.items()):
            if known_as == key:
                self._stop(scope, why)
                return True
        return False

    def _stop(self, scope: anyio.CancelScope, why: str) -> None:
        self._stopped.setdefault(scope, why)
        scope.cancel()

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, progress: Progress, caller: Caller,
        key: Hashable | None = None,
    ) -> types.CallToolResult:
        """Run one tool call through every stage; ``key`` lets the transport stop it."""
        entry = self.catalog.get(name)
        if entry is None:
            raise UnknownToolError(name)
        if self.draining:
            return refusal(name, "the bridge is shutting down; retry the call when it is back")
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
        return await self._run_reserved(entry, plan, command, reservation, progress, key)

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
        progress: Progress, key: Hashable | None,
    ) -> types.CallToolResult:
        limits = Limits(timeout_s=plan.timeout_s,
                        kill_grace_s=self.settings.config.limits.kill_grace_s,
                        result_grace_s=self.settings.result_grace_s)
        settled = False
        began = time.monotonic()
        logger.info("call %s %s started", reservation.call_id[:8], entry.name, extra={
            "event": "call.start", "call_id": reservation.call_id, "tool": entry.name})
        with anyio.CancelScope() as stop:
            self._track(stop, key)
            try:
                async with self.slots.slot(entry.name, entry.policy.max_concurrency,
                                           progress.queued):
                    definition = entry.definition
                    await progress.say(f"starting {definition.kind} {definition.name}")
                    outcome = report(entry.name, await run(command, limits, progress.on_event),
                                     plan.timeout_s)
                await self._settle(reservation, entry.name, outcome, began)
                settled = True
                return to_call_tool_result(outcome)
            except QueueFull as exc:
                await self._settle_without_run(reservation, entry.name, "refused", str(exc), began)
                settled = True
                return refusal(entry.name, str(exc))
            finally:
                if not settled:  # cancelled (client, disconnect, shutdown) or a bug
                    why = self._stopped.get(stop, "cancelled by the client")
                    with anyio.CancelScope(shield=True):
                        await self._settle_without_run(reservation, entry.name, "cancelled", why,
                                                      began)
                self._untrack(stop)
        # only a stop by the bridge (our own scope) gets here; a client's cancel propagates
        why = self._stopped.pop(stop, "stopped")
        return refusal(entry.name, f"{why} before the call finished; the agent was stopped")

    def _track(self, scope: anyio.CancelScope, key: Hashable | None) -> None:
        self._in_flight[scope] = key
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    def _untrack(self, scope: anyio.CancelScope) -> None:
        self._in_flight.pop(scope, None)
        if not self._in_flight:
            self._idle.set()

    async def _settle(
        self, reservation: Reservation, tool: str, call: CallReport, began: float
    ) -> None:
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
        _log_end(reservation, tool, call.outcome, cost, began,
                 call.message[:200] if call.outcome != "ok" else None)

    async def _settle_without_run(
        self, reservation: Reservation, tool: str, outcome: Any, why: str, began: float
    ) -> None:
        charged = reservation.reserved_usd if outcome == "cancelled" else 0.0
        await anyio.to_thread.run_sync(
            self.ledger.settle, reservation.call_id,
            Settlement(outcome=outcome, cost_usd=charged, error=why))
        _log_end(reservation, tool, outcome, charged, began, why)

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


def _tokens(usage: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


def request_key(ctx: ServerRequestContext[Any]) -> Hashable | None:
    """How an HTTP transport names a request: (MCP session id, JSON-RPC id)."""
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is None or ctx.request_id is None:
        return None
    return (headers.get("mcp-session-id"), str(ctx.request_id))


def _caller(ctx: ServerRequestContext[Any]) -> Caller:
    transport = "http" if ctx.request is not None else "stdio"
    params = ctx.session.client_params
    if params is None:
        return Caller(transport, "unknown")
    info = params.client_info
    return Caller(transport, f"{info.name} {info.version}".strip())


class _BridgeServer(Server[Any]):
    """Advertises ``tools.listChanged`` to 2025 clients on every transport (the SDK's HTTP
    and in-memory transports build the options without arguments)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities, extensions)


def create_server(bridge: Bridge) -> Server[Any]:
    async def on_initialized(ctx: ServerRequestContext[Any], params: Any) -> None:
        bridge.notifier.remember(ctx.session)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(bridge.catalog.tools))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            return await bridge.call(params.name, params.arguments, Progress(ctx.session),
                                     _caller(ctx), request_key(ctx))
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

    server = _BridgeServer(
        "claude-mcp-bridge",
        version=version("claude-mcp-bridge"),
        title="Claude Code agents and skills",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscriptions_listen=ListenHandler(bridge.notifier.bus),
    )
    server.add_notification_handler("notifications/initialized", types.NotificationParams,
                                    on_initialized)
    return server
