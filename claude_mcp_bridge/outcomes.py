"""How a call ends, as values: the one outcome set, the one refusal, the one reply.

The core (``bridge.py`` and the stages below it) answers with these; only the server
turns them into MCP results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["running", "ok", "error", "timeout", "cancelled", "refused", "interrupted"]
"""A call's state in the ledger. ``running`` until it is settled; then one of:

- ``ok``: the agent answered; ``error``: it ran and failed; ``timeout``: it ran past its
  time limit; ``refused``: it never ran (policy, budget, queue, depth, drain);
- ``cancelled``: its client cancelled it or went away;
- ``interrupted``: the bridge stopped it while shutting down, or the bridge process that
  ran it died before settling it (found by the next bridge that opens the ledger).
"""

RefusalKind = Literal["arguments", "policy", "budget", "queue", "depth", "drain", "setup"]


@dataclass(frozen=True)
class Refusal:
    """Why a call did not run (or, for ``queue``, did not get to run)."""

    kind: RefusalKind
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Reply:
    """A tool's answer before it becomes an MCP result: text for the model, facts for
    programs, and whether it is an error."""

    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False
    meta: dict[str, Any] | None = None
    """Facts for programs, not for the calling model (the MCP result's ``_meta``)."""

    @classmethod
    def refused(cls, tool: str, why: Refusal | str) -> Reply:
        """A call refused before any child started."""
        return cls(f"{tool}: {why}", is_error=True)
