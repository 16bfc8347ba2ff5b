"""Start an MCP server over stdio as a client would, list its tools, check some are there.

    python .ci/stdio_tools_list.py agent_code-reviewer,skill_changelog -- COMMAND [ARG ...]

The server gets this process's environment (callers set it as an MCP client config would).
Exits 1 naming what is missing; prints the tool names on success.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp import Client, StdioServerParameters


async def list_tools(command: list[str], env: dict[str, str]) -> list[str]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    with anyio.fail_after(120):  # a first `uv run` installs the dependencies
        async with Client(params) as client:
            return [tool.name for tool in (await client.list_tools()).tools]


def main(argv: list[str]) -> int:
    expected, separator, *command = argv
    if separator != "--" or not command:
        sys.exit(__doc__)
    try:
        names = anyio.run(list_tools, command, dict(os.environ))
    except Exception as exc:  # the server's own stderr above says why
        print(f"tools/list from {command[0]} failed: {exc!r}", file=sys.stderr)
        return 1
    missing = [name for name in expected.split(",") if name not in names]
    if missing:
        print(f"tools/list from {command[0]}: missing {missing}; got {names}", file=sys.stderr)
        return 1
    print(f"tools/list: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
