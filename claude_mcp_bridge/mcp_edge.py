"""MCP at the edge: who calls, where progress goes, what the client gets.

The server's handlers use these to turn an MCP request into the bridge's terms (a caller,
a client, a key the transport can stop the call by, progress to the session) and the
bridge's ``Reply`` back into a ``CallToolResult``.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext

from .outcomes import Reply

if TYPE_CHECKING:
    from .progress import Progress

logger = logging.getLogger(__name__)

CLIENT_SCOPE_KEY = "claude_mcp_bridge.client"
"""Where the HTTP transport puts the name of the client whose token a request carried."""


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


def session_progress(session: Any, gap_s: float = 0.0) -> Progress:
    """Progress sent to an MCP client, at most one per ``gap_s``; a client that went away
    is not an error."""
    from .progress import Progress

    count = 0

    async def say(message: str) -> None:
        nonlocal count
        count += 1
        try:
            await session.report_progress(count, None, message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            logger.debug("progress not delivered: the client is gone")
    return Progress(say, gap_s)


def to_call_tool_result(reply: Reply) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=reply.text)],
        structured_content=reply.structured, is_error=reply.is_error, _meta=reply.meta)


def text_resource(uri: str, mime_type: str, text: str) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(
        uri=uri, mime_type=mime_type, text=text)])


async def list_resources(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    from .usage import USAGE_URI

    return types.ListResourcesResult(resources=[types.Resource(
        uri=USAGE_URI, name="usage", title="Usage and budget",
        description="Calls, success rate, p50/p95 wall time and cost per tool over the last "
                    "7 days, and the budget left today and this month.",
        mime_type="application/json")])


async def list_resource_templates(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    from .answers import RESULTS_URI

    return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
        uri_template=RESULTS_URI + "{call_id}", name="full-result",
        title="Whole answer of a call",
        description="The whole answer of a call whose result was cut to the size limit "
                    "(its full_result field names this URI).",
        mime_type="text/plain")])
