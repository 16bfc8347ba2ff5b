"""MCP handlers on top of the bridge: the one place where MCP meets the domain.

Requests become bridge calls and the bridge's values (``Finished``, ``Refusal``,
``Reply``) become MCP results. Optional features (jobs, router, the test tool)
register their handlers once, when the server is created; a call is a table lookup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler

from . import __version__
from .asking import SessionApprover
from .errors import UnknownToolError
from .listing_cache import Listed, ListingCache, envelope_only
from .mcp_edge import (
    POST_SCOPE_KEY,
    Caller,
    caller_of,
    client_of,
    list_resource_templates,
    list_resources,
    request_key,
    session_progress,
    text_resource,
    to_call_tool_result,
)
from .notifier import Notifier
from .outcomes import Refusal, Reply
from .rounds import Parked, RoundTrips, parked_progress

# Only what answers ``initialize`` is imported here: over stdio the server answers it before
# the bridge is built (Claude Code connects servers in the background and starts its first
# turn without a server that is still starting). The bridge, the catalog and the features
# load with the bridge, after the transport is up.
if TYPE_CHECKING:
    from .bridge import Bridge, load_catalog, open_bridge
    from .catalog import Catalog
    from .jobs import JobBoard
    from .router import Router

__all__ = ["POST_SCOPE_KEY", "Bridge", "Caller", "create_server", "load_catalog",
           "open_bridge"]


def __getattr__(name: str) -> Any:
    """``Bridge``, ``open_bridge`` and ``load_catalog``, re-exported without importing the
    bridge with this module."""
    if name in ("Bridge", "open_bridge", "load_catalog"):
        from . import bridge

        return getattr(bridge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Each tool runs one of the user's Claude Code agents (agent_*) or skills (skill_*) as a "
    "separate headless Claude Code session and returns its final answer, cost and session_id. "
    "Give the tool a complete, self-contained prompt; pass session_id back to ask a follow-up."
)

_HANDSHAKES = frozenset({"initialize", "server/discover"})

Handler = Callable[[ServerRequestContext[Any], str, dict[str, Any]], Awaitable[Reply]]


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


class _Routing:
    """The router index of the current catalog, rebuilt only when the catalog changes."""

    def __init__(self) -> None:
        self._for: Catalog | None = None
        self._router: Router | None = None

    def router(self, catalog: Catalog) -> Router:
        from .router import router_for

        if self._router is None or self._for is not catalog:
            self._router, self._for = router_for(catalog), catalog
        return self._router


class BridgeServer(_BridgeServer):
    """The MCP server of one bridge: its tool table, built once, and its notifier.

    It can be created before its bridge (``attach`` it later): it then answers
    ``initialize`` at once, and requests that need the bridge wait for it.
    """

    def __init__(self, bridge: Bridge | None = None, jobs: JobBoard | None = None) -> None:
        self._bridge: Bridge | None = None
        self._attached: anyio.Event | None = None
        self._contacted = False
        self._contact: anyio.Event | None = None
        self.notifier = Notifier()
        self.rounds = RoundTrips()
        self._handlers: dict[str, Handler] = {}
        self._extra_tools: list[types.Tool] = []
        super().__init__(
            "claude-mcp-bridge",
            version=__version__,
            title="Claude Code agents and skills",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=list_resources,
            on_read_resource=self._read_resource,
            on_list_resource_templates=list_resource_templates,
            on_subscriptions_listen=ListenHandler(self.notifier.bus),
            lifespan=_lifespan,
        )
        self.add_notification_handler("notifications/initialized", types.NotificationParams,
                                      self._on_initialized)
        self.middleware.append(self._note_contact)
        self.middleware.append(ListingCache(self._listed))  # inside: contact is noted first
        if bridge is not None:
            self.attach(bridge, jobs)

    @property
    def bridge(self) -> Bridge:
        if self._bridge is None:
            raise RuntimeError("the bridge is not attached yet")
        return self._bridge

    def attach(self, bridge: Bridge, jobs: JobBoard | None) -> None:
        """Serve ``bridge`` (and ``jobs``' tools); requests waiting for it go on."""
        self._bridge = bridge
        self._register_features(jobs)
        if self._attached is not None:
            self._attached.set()

    async def attached(self) -> Bridge:
        """The bridge, once it is attached."""
        if self._bridge is None:
            if self._attached is None:
                self._attached = anyio.Event()
            await self._attached.wait()
        return self.bridge

    async def contacted(self, within_s: float) -> None:
        """Return once a client's handshake has been answered, or its first other request
        came, or ``within_s`` passed: building the bridge then does not delay the answer."""
        if not self._contacted:
            self._contact = self._contact or anyio.Event()
            with anyio.move_on_after(within_s):
                await self._contact.wait()

    async def _note_contact(self, ctx: ServerRequestContext[Any], call_next: Any) -> Any:
        if ctx.method not in _HANDSHAKES:  # it may need the bridge: build it now
            self._mark_contacted()
        try:
            return await call_next(ctx)
        finally:
            self._mark_contacted()

    def _mark_contacted(self) -> None:
        self._contacted = True
        if self._contact is not None:
            self._contact.set()

    async def reload(self) -> None:
        """Rediscover the definitions; tell every client when the tool list changed."""
        if await self.bridge.reload():
            await self.notifier.tools_changed()

    async def reload_config(self, path: Path) -> None:
        """Re-read the changed config file and swap in its clients (tokens and ceilings);
        a file that does not load leaves the clients as they were."""
        from .clients import Clients
        from .config import load_config
        from .errors import ConfigError

        try:
            config = await anyio.to_thread.run_sync(load_config, path)
        except ConfigError as exc:
            logger.error("the changed config file is not used (%s); the clients stay as "
                         "they were", exc)
            return
        self.bridge.clients = Clients.from_config(config)
        logger.info("config reloaded: %d client(s)", len(config.clients),
                    extra={"event": "config.reload", "clients": len(config.clients)})
        before = self.bridge.settings.config.model_copy(update={"clients": {}})
        if config.model_copy(update={"clients": {}}) != before:
            logger.warning("%s changed beyond [clients]; only clients apply while serving, "
                           "restart the bridge for the rest", path)
        await self.notifier.tools_changed()  # a client's allowed tools may have changed

    def _register_features(self, jobs: JobBoard | None) -> None:
        from .builtin_tools import JOB_TOOLS, ROUTER_TOOLS, agent_test_tool

        catalog = self.bridge.settings.config.catalog
        if catalog.mode != "tools":
            self._register(ROUTER_TOOLS, _router_handler(self.bridge))
        if jobs is not None and catalog.publish_jobs:
            self._register(JOB_TOOLS, _jobs_handler(jobs))
        if catalog.publish_test_tool:
            self._register([agent_test_tool()], _test_handler(self.bridge))

    def _register(self, tools: Any, handler: Handler) -> None:
        for tool in tools:
            self._extra_tools.append(tool)
            self._handlers[tool.name] = handler

    def published(self) -> list[types.Tool]:
        """The tool list: one tool per definition (unless router only), then the features'."""
        tools = [] if self.bridge.settings.config.catalog.mode == "router" else list(
            self.bridge.catalog.tools)
        return tools + self._extra_tools

    async def _on_initialized(self, ctx: ServerRequestContext[Any], params: Any) -> None:
        self.notifier.remember(ctx.session)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self.attached()
        if envelope_only():  # the listing cache shapes the tools itself
            return types.ListToolsResult(tools=[])
        return types.ListToolsResult(tools=self.visible_tools(client_of(ctx)))

    async def _listed(self, ctx: ServerRequestContext[Any]) -> Listed:
        """What the listing cache may answer this ``tools/list`` with."""
        bridge = await self.attached()
        return Listed(bridge.catalog, self.published(), self.visible_tools(client_of(ctx)))

    def visible_tools(self, client: str | None) -> list[types.Tool]:
        """The tools a caller sees: the owner all, a client only those it may call."""
        from .agent_tests.arguments import TOOL_NAME as TEST_TOOL_NAME

        tools = self.published()
        if client is None:
            return tools
        ceiling, catalog = self.bridge.clients.get(client), self.bridge.catalog

        def allowed(tool: types.Tool) -> bool:
            entry = catalog.get(tool.name)
            if entry is None:  # jobs and the router: checked again when they admit a call
                return tool.name != TEST_TOOL_NAME
            return ceiling is not None and ceiling.may_call(tool.name, entry.definition.name)
        return [tool for tool in tools if allowed(tool)]

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        arguments = dict(params.arguments or {})
        bridge = await self.attached()
        handler = self._handlers.get(params.name)
        if params.request_state is not None:  # 2026 era: a retry with the person's answer
            resumed = await self.rounds.resume(params, ctx.session, client_of(ctx))
            if resumed is None:
                raise MCPError(code=types.INVALID_PARAMS, message="unknown or expired "
                               "request_state; call the tool again")
            return resumed
        asking = SessionApprover(ctx)
        if handler is None and self.rounds.available and asking.modern and \
                asking.declares_elicitation and bridge.catalog.get(params.name) is not None:
            return await self._parked_call(ctx, params.name, arguments)
        handler = handler or _definition_handler(bridge)
        try:
            return to_call_tool_result(await handler(ctx, params.name, arguments))
        except UnknownToolError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from exc
        except Exception:
            # The SDK would send the exception text to legacy clients; log it, answer plainly.
            logger.exception("call %s failed inside the bridge", params.name)
            return to_call_tool_result(Reply.refused(
                params.name, "internal error in the bridge; see its log (stderr)"))

    async def _parked_call(self, ctx: ServerRequestContext[Any], name: str,
                           arguments: dict[str, Any]
                           ) -> types.CallToolResult | types.InputRequiredResult:
        """A definition's call in the 2026 era: parked, so its questions are round trips."""
        async def run(parked: Parked) -> Reply:
            try:
                finished = await self.bridge.call(name, arguments, parked_progress(parked),
                                                  str(caller_of(ctx)), None, client_of(ctx),
                                                  parked)
            except Exception:
                logger.exception("call %s failed inside the bridge", name)
                return Reply.refused(name, "internal error in the bridge; see its log (stderr)")
            return Reply.refused(name, finished) if isinstance(finished, Refusal) \
                else finished.reply()
        linger = self.bridge.settings.config.permissions.ask_timeout_s
        return await self.rounds.start(run, ctx.session, client_of(ctx), linger)

    async def _read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        from .answers import RESULTS_URI, visible_to
        from .usage import USAGE_URI, usage_resource

        uri, bridge, client = str(params.uri), await self.attached(), client_of(ctx)
        if uri == USAGE_URI:
            text = await anyio.to_thread.run_sync(usage_resource, bridge.ledger,
                                                  bridge.global_budget, client)
            return text_resource(uri, "application/json", text)
        call_id = uri[len(RESULTS_URI):]
        if uri.startswith(RESULTS_URI) and await anyio.to_thread.run_sync(
                visible_to, bridge.ledger, call_id, client):
            whole = await anyio.to_thread.run_sync(bridge.answers.full_text, call_id)
            if whole is not None:
                return text_resource(uri, "text/plain", whole)
        raise MCPError(code=types.INVALID_PARAMS, message=f"unknown resource {uri}")


def create_server(bridge: Bridge, jobs: JobBoard | None = None) -> BridgeServer:
    """The MCP server of ``bridge``; job tools are published when ``jobs`` is given (its
    ``running()`` must be entered while serving)."""
    return BridgeServer(bridge, jobs)


# -- the handlers of a call -------------------------------------------------------------


def _definition_handler(bridge: Bridge) -> Handler:
    async def call(ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> Reply:
        return await call_definition(bridge, ctx, name, arguments)
    return call


async def call_definition(bridge: Bridge, ctx: ServerRequestContext[Any], name: str,
                          arguments: dict[str, Any]) -> Reply:
    """A call of a published agent or skill: admit, execute, answer."""
    gap_s = bridge.settings.config.limits.progress_gap_s
    finished = await bridge.call(name, arguments, session_progress(ctx.session, gap_s),
                                 str(caller_of(ctx)), request_key(ctx), client_of(ctx),
                                 SessionApprover(ctx))
    if isinstance(finished, Refusal):
        return Reply.refused(name, finished)
    return finished.reply()


def _jobs_handler(jobs: JobBoard) -> Handler:
    async def call(ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> Reply:
        return await jobs.handle(name, arguments, str(caller_of(ctx)), client_of(ctx))
    return call


def _router_handler(bridge: Bridge) -> Handler:
    routing = _Routing()

    async def call(ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> Reply:
        from .router import find_agent, resolve
        from .usage import tool_history

        if name == "find_agent":
            history = await anyio.to_thread.run_sync(tool_history, bridge.ledger)
            return find_agent(routing.router(bridge.catalog), arguments, history)
        target = resolve(bridge.catalog, str(arguments.get("name", "")))
        if isinstance(target, str):
            return Reply.refused(name, target)
        rest = {k: v for k, v in arguments.items() if k != "name"}
        return await call_definition(bridge, ctx, target.name, rest)
    return call


def _test_handler(bridge: Bridge) -> Handler:
    async def call(ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> Reply:
        client = client_of(ctx)
        if client is not None:  # its runs would not be held to the client's ceiling
            return Reply.refused(name, f"client {client} may not run agent tests; run them "
                                 "as the owner (stdio, `claude-mcp-bridge test`)")
        from .agent_tests import mcp_tool as test_tool  # the test runner loads on first use

        return await test_tool.call_tool(bridge, arguments, session_progress(ctx.session))
    return call


@asynccontextmanager
async def _lifespan(server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
    """Parked calls (2026-era round trips) run in the server's own task group."""
    assert isinstance(server, BridgeServer)
    async with server.rounds.running():
        yield {}
