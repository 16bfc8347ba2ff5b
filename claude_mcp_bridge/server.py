"""MCP handlers: tools, resources and change notifications on top of the bridge.

The stages of a call live in ``bridge.py``; this module only turns MCP requests
into bridge calls and bridge answers into MCP results.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from importlib.metadata import version
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler

from .bridge import RESULTS_URI, Bridge, Caller, Progress, load_catalog, open_bridge
from .errors import UnknownToolError
from .result import refusal
from .usage import USAGE_URI, usage_resource

__all__ = ["Bridge", "Caller", "Progress", "create_server", "load_catalog", "open_bridge"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Each tool runs one of the user's Claude Code agents (agent_*) or skills (skill_*) as a "
    "separate headless Claude Code session and returns its final answer, cost and session_id. "
    "Give the tool a complete, self-contained prompt; pass session_id back to ask a follow-up."
)


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
            return await bridge.call(params.name, params.arguments,
                                     Progress.to_session(ctx.session), _caller(ctx),
                                     request_key(ctx))
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
