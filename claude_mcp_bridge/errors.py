"""The bridge's exceptions: only for "cannot continue".

A failing agent run is not an exception: it is a tool result with ``isError``
(see ``result.py``). Refusals by policy are values too. What remains:

    BridgeError                 root of everything this package raises
    ├── ConfigError             settings or config file are wrong: the server does not start
    └── UnknownToolError        a client named a tool that is not published
"""

from __future__ import annotations

from pathlib import Path


class BridgeError(Exception):
    """Root of the exceptions raised by claude_mcp_bridge."""


class ConfigError(BridgeError):
    """The configuration cannot be used; the message names where and why."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(str(part) for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownToolError(BridgeError):
    """The named tool is not in the published catalog."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown tool {name!r}; list the published tools with tools/list")
