"""MCP handlers on top of the bridge: the one place where MCP meets the domain.

Requests become bridge calls and the bridge's values (``Finished``, ``Refusal``,
``Reply``) become MCP results. Optional features (jobs, router, the test tool)
register their handlers once, when the server is created; a call is a table lookup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler

from .agent_tests import mcp_tool as test_tool
from .answers import RESULTS_URI, visible_to
from .asking import SessionApprover
from .bridge import Bridge, load_catalog, open_bridge
from .builtin_tools import JOB_TOOLS, ROUTER_TOOLS, TEST_TOOL
from .catalog import Catalog
from .clients import CLIENT_SCOPE_KEY, Clients
from .config import load_config
from .errors import ConfigError, UnknownToolError
from .jobs import JobBoard
from .notifier import Notifier
from .outcomes import Refusal, Reply
from .progress import Progress
from .rounds import Parked, RoundTrips, parked_progress
from .router import Router, find_agent, resolve, router_for
from .usage import USAGE_URI, tool_history, usage_resource

__all__ = ["Bridge", "Caller", "create_server", "load_catalog", "open_bridge"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Each tool runs one of the user's Claude Code agents (agent_*) or skills (skill_*) as a "
    "separate headless Claude Code session and returns its final answer, cost and session_id. "
    "Give the tool a complete, self-contained prompt; pass session_id back to ask a follow-up."
)

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
        if self._router is None or self._for is not catalog:
            self._router, self._for = router_for(catalog), catalog
        return self._router


class BridgeServer(_BridgeServer):
    """The MCP server of one bridge: its tool table, built once, and its notifier."""

    def __init__(self, bridge: Bridge, jobs: JobBoard | None) -> None:
        self.bridge = bridge
        self.notifier = Notifier()
        self.rounds = RoundTrips()
        self._handlers: dict[str, Handler] = {}
        self._extra_tools: list[types.Tool] = []
        self._register_features(jobs)
        super().__init__(
            "claude-mcp-bridge",
            version=version("claude-mcp-bridge"),
            title="Claude Code agents and skills",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=_list_resources,
            on_read_resource=self._read_resource,
            on_list_resource_templates=_list_resource_templates,
            on_subscriptions_listen=ListenHandler(self.notifier.bus),
            lifespan=_lifespan,
        )
        self.add_notification_handler("notifications/initialized", types.NotificationParams,
                                      self._on_initialized)

    async def reload(self) -> None:
        """Rediscover the definitions; tell every client when the tool list changed."""
        if await self.bridge.reload():
            await self.notifier.tools_changed()

    async def reload_config(self, path: Path) -> None:
        """Re-read the changed config file and swap in its clients (tokens and ceilings);
        a file that does not load leaves the clients as they were."""
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
        catalog = self.bridge.settings.config.catalog
        if catalog.mode != "tools":
            self._register(ROUTER_TOOLS, _router_handler(self.bridge))
        if jobs is not None and catalog.publish_jobs:
            self._register(JOB_TOOLS, _jobs_handler(jobs))
        if catalog.publish_test_tool:
            self._register([TEST_TOOL], _test_handler(self.bridge))

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
        return types.ListToolsResult(tools=self.visible_tools(client_of(ctx)))

    def visible_tools(self, client: str | None) -> list[types.Tool]:
        """The tools a caller sees: the owner all, a client only those it may call."""
        tools = self.published()
        if client is None:
            return tools
        ceiling, catalog = self.bridge.clients.get(client), self.bridge.catalog

        def allowed(tool: types.Tool) -> bool:
            entry = catalog.get(tool.name)
            if entry is None:  # jobs and the router: checked again when they admit a call
                return tool.name != TEST_TOOL.name
            return ceiling is not None and ceiling.may_call(tool.name, entry.definition.name)
        return [tool for tool in tools if allowed(tool)]

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        arguments = dict(params.arguments or {})
        handler = self._handlers.get(params.name)
        if params.request_state is not None:  # 2026 era: a retry with the person's answer
            resumed = await self.rounds.resume(params, ctx.session, client_of(ctx))
            if resumed is None:
                raise MCPError(code=types.INVALID_PARAMS, message="unknown or expired "
                               "request_state; call the tool again")
            return resumed
        asking = SessionApprover(ctx)
        if handler is None and self.rounds.available and asking.modern and \
                asking.declares_elicitation and self.bridge.catalog.get(params.name) is not None:
            return await self._parked_call(ctx, params.name, arguments)
        handler = handler or _definition_handler(self.bridge)
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
        uri, bridge, client = str(params.uri), self.bridge, client_of(ctx)
        if uri == USAGE_URI:
            text = await anyio.to_thread.run_sync(usage_resource, bridge.ledger,
                                                  bridge.global_budget, client)
            return _text_resource(uri, "application/json", text)
        call_id = uri[len(RESULTS_URI):]
        if uri.startswith(RESULTS_URI) and await anyio.to_thread.run_sync(
                visible_to, bridge.ledger, call_id, client):
            whole = await anyio.to_thread.run_sync(bridge.answers.full_text, call_id)
            if whole is not None:
                return _text_resource(uri, "text/plain", whole)
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
    finished = await bridge.call(name, arguments, session_progress(ctx.session),
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
        return await test_tool.call_tool(bridge, arguments, session_progress(ctx.session))
    return call


# -- MCP at the edge: who calls, where progress goes, what the client gets ---------------


@dataclass(frozen=True)
class Caller:
    """Who made a call, for the ledger: transport and client name."""

    transport: str
    client: str

    def __str__(self) -> str:
        return f"{self.transport}/{self.client}"


def caller_of(ctx: ServerRequestContext[Any]) -> Caller:
    transport = "http" if ctx.request is not None else "stdio"
    params = ctx.session.client_params
    if params is None:
        return Caller(transport, "unknown")
    info = params.client_info
    return Caller(transport, f"{info.name} {info.version}".strip())


def client_of(ctx: ServerRequestContext[Any]) -> str | None:
    """The ``[clients.<name>]`` entry whose token the HTTP request carried; None for the
    owner (stdio, the single token, a tokenless loopback bridge)."""
    scope = getattr(ctx.request, "scope", None)
    client = scope.get(CLIENT_SCOPE_KEY) if isinstance(scope, dict) else None
    return client if isinstance(client, str) else None


POST_SCOPE_KEY = "claude_mcp_bridge.post"
"""Where the HTTP transport puts a unique id of each POST to ``/mcp`` in the ASGI scope."""


def request_key(ctx: ServerRequestContext[Any]) -> Hashable | None:
    """How an HTTP transport names a request: (its POST's id, else the MCP session id;
    the JSON-RPC id). Requests without a session (2026 era, stateless) reuse JSON-RPC ids
    across clients, so the POST's own id keeps one client's disconnect from stopping
    another's call."""
    headers = getattr(ctx.request, "headers", None)
    if headers is None or ctx.request_id is None:
        return None
    scope = getattr(ctx.request, "scope", {})
    post = scope.get(POST_SCOPE_KEY) if isinstance(scope, dict) else None
    return (post or headers.get("mcp-session-id"), str(ctx.request_id))


def session_progress(session: Any) -> Progress:
    """Progress sent to an MCP client; a client that went away is not an error."""
    count = 0

    async def say(message: str) -> None:
        nonlocal count
        count += 1
        try:
            await session.report_progress(count, None, message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            logger.debug("progress not delivered: the client is gone")
    return Progress(say)


@asynccontextmanager
async def _lifespan(server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
    """Parked calls (2026-era round trips) run in the server's own task group."""
    assert isinstance(server, BridgeServer)
    async with server.rounds.running():
        yield {}


def to_call_tool_result(reply: Reply) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=reply.text)],
        structured_content=reply.structured, is_error=reply.is_error)


def _text_resource(uri: str, mime_type: str, text: str) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(
        uri=uri, mime_type=mime_type, text=text)])


async def _list_resources(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=[types.Resource(
        uri=USAGE_URI, name="usage", title="Usage and budget",
        description="Calls, success rate, p50/p95 duration and cost per tool over the last "
                    "7 days, and the budget left today and this month.",
        mime_type="application/json")])


async def _list_resource_templates(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
        uri_template=RESULTS_URI + "{call_id}", name="full-result",
        title="Whole answer of a call",
        description="The whole answer of a call whose result was cut to the size limit "
                    "(its full_result field names this URI).",
        mime_type="text/plain")])
