"""claude-mcp-bridge: your Claude Code agents and skills as MCP tools.

The flow, one module a stage:

    agents_registry (files -> Registry)
      -> catalog (Registry -> tools and schemas)
      -> command (definition + arguments -> argv, env, cwd, stdin)
      -> runner (one supervised ``claude -p`` child -> RunResult, events on the way)
      -> result (RunResult -> outcome and CallToolResult)
      -> server (the MCP handlers that call these in order)
"""

from .catalog import Catalog, build_catalog, tool_name
from .server import Bridge, create_server

__all__ = ["Bridge", "Catalog", "build_catalog", "create_server", "tool_name"]
