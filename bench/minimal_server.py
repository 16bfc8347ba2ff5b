"""The smallest stdio server the MCP SDK allows: one tool, no files, no state.

The start-up benchmark runs it beside the bridge, so the bridge's own share of start-up is the
difference between the two (both pay the interpreter and the SDK's imports). With
``$BENCH_CLAUDE`` set it also publishes ``run``, which runs ``$BENCH_CLAUDE -p PROMPT`` and
answers its output, nothing more (no policy, ledger or progress): the peers benchmark's floor
for a Python server on this SDK.
"""

from __future__ import annotations

import os
import sys
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


async def _serve_http() -> None:
    """The same tools over the SDK's own Streamable HTTP app (its defaults: stateful
    sessions, SSE answers), served by uvicorn on a free loopback port; prints ``PORT n``
    once listening."""
    import socket

    import uvicorn

    server: Server[Any] = Server("minimal-http", on_list_tools=_list_tools,
                                 on_call_tool=_call_tool)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # connections wait in the backlog until uvicorn takes them
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    web = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning",
                                        access_log=False, ws="none", lifespan="on"))
    await web.serve(sockets=[listener])


if __name__ == "__main__":
    anyio.run(_serve_http if "--http" in sys.argv else _serve)
