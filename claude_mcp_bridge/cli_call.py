"""``claude-mcp-bridge call``: one call through the real MCP server, in process.

Going through ``Client(server)`` rather than calling the stages directly means the
terminal sees exactly what an MCP client sees: the same validation, progress and
result.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError

from .errors import UnknownToolError
from .server import Bridge, create_server
from .signals import cancel_on_signal


async def call_once(bridge: Bridge, tool: str, arguments: dict[str, Any], as_json: bool) -> int:
    if bridge.catalog.get(tool) is None:
        print(f"claude-mcp-bridge: {UnknownToolError(tool)}", file=sys.stderr)
        return 2
    result: types.CallToolResult | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(cancel_on_signal, tg.cancel_scope)
        try:
            async with Client(create_server(bridge)) as client:
                result = await client.call_tool(tool, arguments, progress_callback=_show)
        except MCPError as exc:
            print(f"claude-mcp-bridge: {exc}", file=sys.stderr)
            return 2
        finally:
            tg.cancel_scope.cancel()
    if result is None:
        print("claude-mcp-bridge: interrupted; the agent was stopped", file=sys.stderr)
        return 130
    if as_json:
        meta = {"_meta": result.meta} if result.meta else {}
        print(json.dumps({**(result.structured_content or {}), **meta}, indent=2))
    else:
        print("\n".join(c.text for c in result.content if isinstance(c, types.TextContent)))
    return 1 if result.is_error else 0


async def _show(progress: float, total: float | None, message: str | None) -> None:
    if message:
        print(f"[{progress:>3.0f}] {message}", file=sys.stderr, flush=True)
