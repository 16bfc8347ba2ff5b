"""The smallest stdio server the MCP SDK allows: one tool, no files, no state.

The start-up benchmark runs it beside the bridge, so the bridge's own share of start-up is the
difference between the two (both pay the interpreter and the SDK's imports). With
``$BENCH_CLAUDE`` set it also publishes ``run``, which runs ``$BENCH_CLAUDE -p PROMPT`` and
answers its output, nothing more (no policy, ledger or progress): the peers benchmark's floor
for a Python server on this SDK.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

TOOL = types.Tool(name="echo", description="Echoes its text.",
                  input_schema={"type": "object", "properties": {"text": {"type": "string"}}})


RUN = types.Tool(name="run", description="Runs claude -p.",
                 input_schema={"type": "object", "properties": {"prompt": {"type": "string"}}})
CLAUDE = os.environ.get("BENCH_CLAUDE")


async def _list_tools(ctx: ServerRequestContext[Any],
                      params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[TOOL, RUN] if CLAUDE else [TOOL])


async def _call_tool(ctx: ServerRequestContext[Any],
                     params: types.CallToolRequestParams) -> types.CallToolResult:
    prompt = str((params.arguments or {}).get("prompt", ""))
    if params.name != "run" or CLAUDE is None:
        return types.CallToolResult(content=[types.TextContent(type="text", text=prompt)])
    done = await anyio.run_process([CLAUDE, "-p", prompt], check=False)
    return types.CallToolResult(content=[types.TextContent(
        type="text", text=done.stdout.decode(errors="replace"))], is_error=done.returncode != 0)


async def _serve() -> None:
    server: Server[Any] = Server("minimal", on_list_tools=_list_tools,
                                 on_call_tool=_call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(_serve)
