"""The smallest stdio server the MCP SDK allows: one tool, no files, no state.

The start-up benchmark runs it beside the bridge, so the bridge's own share of start-up is the
difference between the two (both pay the interpreter and the SDK's imports).
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

TOOL = types.Tool(name="echo", description="Echoes its text.",
                  input_schema={"type": "object", "properties": {"text": {"type": "string"}}})


async def _list_tools(ctx: ServerRequestContext[Any],
                      params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[TOOL])


async def _serve() -> None:
    server: Server[Any] = Server("minimal", on_list_tools=_list_tools)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(_serve)
