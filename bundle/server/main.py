"""The bundle's entry point: Claude Desktop runs it as manifest.json says, through ``uv run``.

It serves over stdio with the arguments the manifest passes (``--project-dir``), after one
fix-up the host needs: an optional field the user left empty arrives as ``""`` (the manifest's
default) or, from a host that skips unset fields, as the literal ``${user_config.x}``. Either
means unset, so the variable is removed; an empty ``ANTHROPIC_API_KEY`` would otherwise be
passed to ``claude`` and beat its own login.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

FROM_USER_CONFIG = ("ANTHROPIC_API_KEY", "CLAUDE_MCP_BRIDGE_CLAUDE_BIN", "CLAUDE_MCP_BRIDGE_CONFIG")


def drop_unset(environ: MutableMapping[str, str]) -> None:
    """Remove the user_config variables that the user left empty."""
    for name in FROM_USER_CONFIG:
        value = environ.get(name)
        if value is not None and (not value.strip() or value.startswith("${user_config.")):
            del environ[name]


def main() -> int:
    drop_unset(os.environ)
    from claude_mcp_bridge.cli import main as bridge

    return bridge(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
