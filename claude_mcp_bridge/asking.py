"""The person behind an MCP client answers a call's permission questions (``Approver``).

2025 era: the question goes to the client as ``elicitation/create`` while the call's
request is open, the child paused on its prompt. A client that did not declare
elicitation cannot be asked: ``ask`` returns None and the configured fallback decides.
In the 2026-07-28 era a call is parked instead and its questions are ``InputRequiredResult``
round trips (``rounds.py``); a call that is not parked there gets the fallback.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .approvals import Answer, Question

logger = logging.getLogger(__name__)

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "title": "Decision",
                     "enum": ["allow_once", "allow_call", "deny"],
                     "enumNames": ["Allow once", "Allow for this call", "Deny"]},
        "reason": {"type": "string", "title": "Reason (told to the agent when denied)"},
    },
    "required": ["decision"],
}


class SessionApprover:
    """Asks through the session of the request that made the call."""

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        self._ctx = ctx

    @property
    def modern(self) -> bool:
        """The 2026-07-28 era: no back channel; questions are round trips (``rounds.py``)."""
        return self._ctx.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def declares_elicitation(self) -> bool:
        """The client can show a form (2025: its initialize; 2026: each request's envelope)."""
        capabilities = self._ctx.session.client_capabilities
        return capabilities is not None and capabilities.elicitation is not None

    def can_ask(self) -> bool:
        return not self.modern and self.declares_elicitation

    async def ask(self, question: Question) -> Answer | None:
        if not self.can_ask():
            return None
        try:
            result = await self._ctx.session.elicit_form(
                question.text, DECISION_SCHEMA, related_request_id=self._ctx.request_id)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return Answer("deny", "the client went away before answering")
        return to_answer(result)


def to_answer(result: types.ElicitResult) -> Answer:
    if result.action != "accept" or not result.content:
        return Answer("deny", f"the person chose {result.action}")
    decision = result.content.get("decision")
    reason = str(result.content.get("reason") or "")
    if decision == "allow_once":
        return Answer("allow_once", reason)
    if decision == "allow_call":
        return Answer("allow_call", reason)
    return Answer("deny", reason)
