"""The bridge's exceptions: only for "cannot continue".

A failing agent run is not an exception: it is a tool result with ``isError``
(``result.py``). Refusals (policy, budget, a full queue, depth, drain) are values:
``outcomes.Refusal``. What remains, keyed to what the caller does next::

    BridgeError                 root of everything claude_mcp_bridge raises
    ├── ConfigError             settings or config file are wrong: the server does not start
    ├── LedgerError             the ledger (file, database) cannot be used: the message says
    │                           what to do
    ├── UnknownToolError        a client named a tool that is not published: a protocol error
    ├── CommandError            a call cannot become a safe argv: refused, never run
    ├── QueueFull               no slot and no room to wait: becomes a refusal (``slots.py``)
    └── NotJSON                 a child printed a line that is not JSON: kept as stray output

``agents_registry`` raises nothing out of discovery: a file it cannot read becomes a
``Diagnostic`` (its internal ``FrontMatterError`` and ``DefinitionError`` never escape it).
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


class LedgerError(BridgeError):
    """The ledger cannot be used; the message names the file (or the database URL, without
    its password) and what to do."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class UnknownToolError(BridgeError):
    """The named tool is not in the published catalog."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown tool {name!r}; list the published tools with tools/list")


class CommandError(BridgeError):
    """The call cannot be turned into a command (a tool rule that would read as a flag)."""


class QueueFull(BridgeError):
    """Every slot is taken and the queue is full."""

    def __init__(self, running: int, waiting: int) -> None:
        self.running = running
        self.waiting = waiting
        super().__init__(
            f"the bridge is busy: {running} calls running and {waiting} waiting (the queue is "
            "full); retry later, or raise [limits] max_queue / max_concurrency")


class NotJSON(BridgeError):
    """A stdout line of the child that is not a JSON object."""
