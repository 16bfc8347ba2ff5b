"""What the ledger knows of a session a call follows up: the tool that owns it, and what its
earlier calls cost (a resumed process of a recent CLI counts them in its total)."""

from __future__ import annotations

import anyio

from .ledger import Ledger
from .outcomes import Refusal


async def session_refusal(ledger: Ledger, tool: str, session_id: str | None) -> Refusal | None:
    """A session resumes only through the tool that created it (the ledger knows which):
    another tool's session would run its conversation under this tool's policy."""
    if session_id is None:
        return None
    owner = await anyio.to_thread.run_sync(ledger.session_tool, session_id)
    if owner == tool:
        return None
    if owner is None:
        return Refusal("policy", f"session_id {session_id} is not a session of {tool}: no "
                       "call through this bridge reported it; pass the session_id of an "
                       f"earlier {tool} result, or leave it out to start a new session")
    return Refusal("policy", f"session_id {session_id} belongs to {owner}, not {tool}: a "
                   "session continues only with the tool that started it; call "
                   f"{owner} to follow it up, or leave session_id out")


async def session_cost(ledger: Ledger, session_id: str | None) -> float:
    """What the earlier calls of ``session_id`` reported, all together; 0 when one of them
    never reported its cost (then nothing is subtracted: the call is charged in full)."""
    if session_id is None:
        return 0.0
    rows = await anyio.to_thread.run_sync(
        ledger.rows, "SELECT COUNT(*) AS calls, COUNT(reported_usd) AS reported, "
        "SUM(reported_usd) AS total FROM calls WHERE session_id = ?", (session_id,))
    row = rows[0]
    if not row["calls"] or row["calls"] != row["reported"]:
        return 0.0
    return float(row["total"] or 0.0)
