"""MCP handlers: tools, resources and change notifications on top of the bridge.

The stages of a call live in ``bridge.py``; this module only turns MCP requests
into bridge calls and bridge answers into MCP results.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler

from . import agent_tests
from .bridge import RESULTS_URI, Bridge, Caller, Progress, load_catalog, open_bridge
from .catalog import Catalog
from .errors import UnknownToolError
from .jobs import JOB_TOOL_NAMES, JOB_TOOLS, JobBoard
from .result import refusal
from .router import Router, find_agent_answer, resolve, router_for, router_tools
from .schemas import INPUT_SCHEMA
from .usage import USAGE_URI, usage_resource

__all__ = ["Bridge", "Caller", "Progress", "create_server", "load_catalog", "open_bridge"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Each tool runs one of the user's Claude Code agents (agent_*) or skills (skill_*) as a "
    "separate headless Claude Code session and returns its final answer, cost and session_id. "
    "Give the tool a complete, self-contained prompt; pass session_id back to ask a follow-up."
)


async def _job_call(jobs: JobBoard, name: str, arguments: dict[str, Any],
                    caller: Caller) -> types.CallToolResult:
    if name == "job_start":
        tool, inner = arguments.get("tool"), arguments.get("arguments", {})
        if not isinstance(tool, str) or not isinstance(inner, dict) or set(arguments) - {
                "tool", "arguments"}:
            return refusal(name, "invalid arguments: expected {tool: string, arguments: object}")
        return await jobs.start(tool, inner, caller)
    job_id = arguments.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        return refusal(name, "invalid arguments: job_id (a string) is required")
    if name == "job_status":
        return await jobs.status(job_id)
    if name == "job_cancel":
        return await jobs.cancel(job_id)
    wait_s = arguments.get("wait_s", 30)
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float):
        return refusal(name, "invalid arguments: wait_s must be a number of seconds")
    return await jobs.result(job_id, float(wait_s))


async def _find_agent(bridge: Bridge, router: Router,
                      arguments: dict[str, Any]) -> types.CallToolResult:
    task, limit = arguments.get("task"), arguments.get("limit", 5)
    if not isinstance(task, str) or not task.strip():
        return refusal("find_agent", "invalid arguments: task (a non-empty string) is required")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 20:
        return refusal("find_agent", "invalid arguments: limit must be an integer from 1 to 20")
    history = await anyio.to_thread.run_sync(_history, bridge)
    return find_agent_answer(router.rank(task, limit, history), task)


def _history(bridge: Bridge) -> dict[str, tuple[int, int]]:
    """(successful, finished) calls per tool over the last 30 days."""
    since = datetime.now(UTC) - timedelta(days=30)
    return {row.key: (row.ok, row.calls - row.refused)
            for row in bridge.ledger.usage(since=since, by="tool") if row.key != "total"}


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


ROUTER_TOOLS = router_tools(INPUT_SCHEMA)
ROUTER_TOOL_NAMES = frozenset(tool.name for tool in ROUTER_TOOLS)


class _Routing:
    """The router index of the current catalog, rebuilt only when the catalog changes."""

    def __init__(self) -> None:
        self._for: Catalog | None = None
        self._router: Router | None = None

    def router(self, catalog: Catalog) -> Router:
        if self._router is None or self._for is not catalog:
            self._router, self._for = router_for(catalog), catalog
        return self._router


def published(bridge: Bridge, jobs: JobBoard | None) -> list[types.Tool]:
    """The tool list: per-definition tools, router tools and job tools, per the config."""
    mode = bridge.settings.config.catalog.mode
    tools = list(bridge.catalog.tools) if mode in ("tools", "both") else []
    if mode in ("router", "both"):
        tools += ROUTER_TOOLS
    if jobs is not None and bridge.settings.config.catalog.publish_jobs:
        tools += JOB_TOOLS
    if bridge.settings.config.catalog.publish_test_tool:
        tools.append(agent_tests.tool())
    return tools


def create_server(bridge: Bridge, jobs: JobBoard | None = None) -> Server[Any]:
    """The MCP server of ``bridge``; job tools are published when ``jobs`` is given (its
    ``running()`` must be entered while serving)."""
    routing = _Routing()

    async def on_initialized(ctx: ServerRequestContext[Any], params: Any) -> None:
        bridge.notifier.remember(ctx.session)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=published(bridge, jobs))

    async def dispatch(ctx: ServerRequestContext[Any], name: str,
                       arguments: dict[str, Any]) -> types.CallToolResult:
        caller = _caller(ctx)
        if name == agent_tests.TOOL_NAME and bridge.settings.config.catalog.publish_test_tool:
            return await agent_tests.call_tool(bridge, arguments,
                                               Progress.to_session(ctx.session))
        catalog = bridge.settings.config.catalog
        if name in JOB_TOOL_NAMES and jobs is not None and catalog.publish_jobs:
            return await _job_call(jobs, name, arguments, caller)
        if name in ROUTER_TOOL_NAMES and bridge.settings.config.catalog.mode != "tools":
            if name == "find_agent":
                return await _find_agent(bridge, routing.router(bridge.catalog), arguments)
            target = resolve(bridge.catalog, str(arguments.get("name", "")))
            if isinstance(target, str):
                return refusal(name, target)
            rest = {k: v for k, v in arguments.items() if k != "name"}
            return await bridge.call(target.name, rest, Progress.to_session(ctx.session), caller,
                                     request_key(ctx))
        return await bridge.call(name, arguments, Progress.to_session(ctx.session), caller,
                                 request_key(ctx))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            return await dispatch(ctx, params.name, dict(params.arguments or {}))
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

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template=RESULTS_URI + "{call_id}", name="full-result",
            title="Whole answer of a call",
            description="The whole answer of a call whose result was cut to the size limit "
                        "(its full_result field names this URI).",
            mime_type="text/plain")])

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == USAGE_URI:
            text = await anyio.to_thread.run_sync(usage_resource, bridge.ledger,
                                                  bridge.global_budget)
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=USAGE_URI, mime_type="application/json", text=text)])
        if uri.startswith(RESULTS_URI):
            whole = await anyio.to_thread.run_sync(bridge.full_result, uri[len(RESULTS_URI):])
            if whole is not None:
                return types.ReadResourceResult(contents=[types.TextResourceContents(
                    uri=uri, mime_type="text/plain", text=whole)])
        raise MCPError(code=types.INVALID_PARAMS, message=f"unknown resource {uri}")

    server = _BridgeServer(
        "claude-mcp-bridge",
        version=version("claude-mcp-bridge"),
        title="Claude Code agents and skills",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_list_resource_templates=list_resource_templates,
        on_subscriptions_listen=ListenHandler(bridge.notifier.bus),
    )
    server.add_notification_handler("notifications/initialized", types.NotificationParams,
                                    on_initialized)
    return server
