"""Permission prompts of a running call, answered: by policy first, else by the person.

The child asks (``can_use_tool``, control protocol); a ``PermissionDesk`` answers each
question of one call:

    rules (global, then the definition's: the stricter decides)
      -> no rule matches: allow a tool the definition declares, else ``unmatched``
      -> "ask": the call's ``Approver`` asks the person, within ``ask_timeout_s``
         (no approver, or a client that cannot ask: the ``no_elicitation`` fallback)

Every decision is recorded (who decided, what, and why). The core knows nothing of MCP:
the server implements ``Approver`` with the session's elicitation, jobs with a question
that ``job_approve`` answers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio

from .events import ControlRequest
from .rules import Decision, Rule, decide_level, stricter, subject_of, summary

if TYPE_CHECKING:  # the server imports this module before the bridge (and the config) load
    from .tool_policy import ToolPolicy

logger = logging.getLogger(__name__)

Verdict = Literal["allow_once", "allow_call", "deny"]
"""What a person can answer: allow this use, allow this tool for the rest of the call, no."""
Decider = Literal["policy", "definition", "person", "time_limit", "fallback"]


@dataclass(frozen=True)
class Question:
    """One permission prompt put to a person."""

    question_id: str
    call_id: str
    tool: str
    """The published tool that runs (``agent_code-reviewer``)."""
    definition: str
    """The agent or skill's name."""
    tool_name: str
    summary: str
    """``Bash: `rm -rf build```."""
    tool_input: Mapping[str, Any]
    timeout_s: float

    @property
    def text(self) -> str:
        return (f"{self.definition} wants to run {self.summary}. Allow once, allow "
                f"{self.tool_name} for the rest of this call, or deny (with a reason)?")


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    reason: str = ""


class Approver(Protocol):
    """Puts a question to the person behind the call; ``None`` when it cannot (the client
    has no elicitation): the configured fallback then decides."""

    async def ask(self, question: Question) -> Answer | None: ...


@dataclass(frozen=True)
class DecisionRecord:
    """One answered prompt, as the ledger keeps it."""

    call_id: str
    tool_name: str
    summary: str
    decider: Decider
    decision: Literal["allow", "deny"]
    reason: str = ""
    question_id: str | None = None


Record = Callable[[DecisionRecord], Awaitable[None]]
Say = Callable[[str], Awaitable[None]]


@dataclass
class PermissionDesk:
    """Answers the permission prompts of one call (``runner.OnControl``)."""

    call_id: str
    tool: str
    definition: str
    policy: ToolPolicy
    cwd: Path
    declared: tuple[str, ...] | None
    approver: Approver | None
    record: Record
    say: Say
    allowed_for_call: set[str] = field(default_factory=set)

    async def answer(self, request: ControlRequest) -> dict[str, Any]:
        name, tool_input = request.tool_name, request.tool_input
        shown = summary(name, tool_input)
        decision, why, decider = self._by_policy(name, tool_input)
        question_id = None
        if decision == "ask":
            question_id = uuid.uuid4().hex[:12]
            decision, why, decider = await self._ask(question_id, name, tool_input, shown)
        await self.record(DecisionRecord(self.call_id, name, shown, decider, decision, why,
                                         question_id))
        if decision == "allow":
            return {"behavior": "allow", "updatedInput": dict(tool_input)}
        await self.say(f"denied {shown}")
        return {"behavior": "deny", "message": why}

    def _by_policy(self, name: str, tool_input: Mapping[str, Any]
                   ) -> tuple[Decision, str, Decider]:
        if name in self.allowed_for_call:
            return "allow", f"{name} allowed for this call by the person", "person"
        matched: list[tuple[Decision, Rule]] = []
        for level in self.policy.rules:
            found = decide_level(level, name, tool_input, self.cwd)
            if found is not None:
                matched.append(found)
        if matched:
            decision = matched[0][0]
            for other, _ in matched[1:]:
                decision = stricter(decision, other)
            rule = next(r for d, r in matched if d == decision)
            return decision, f"the rule {rule.tool} = {decision}", "policy"
        if self.declared is not None and any(
                Rule(tool, "allow").matches(name, tool_input, self.cwd) for tool in self.declared):
            return "allow", f"{self.definition} declares {name}", "definition"
        return self.policy.unmatched, f"no rule matches {name}", "policy"

    async def _ask(self, question_id: str, name: str, tool_input: Mapping[str, Any],
                   shown: str) -> tuple[Literal["allow", "deny"], str, Decider]:
        timeout_s = self.policy.ask_timeout_s
        question = Question(question_id, self.call_id, self.tool, self.definition, name, shown,
                            tool_input, timeout_s)
        answer: Answer | None = None
        if self.approver is not None:
            await self.say(f"waiting for approval: {shown}")
            with anyio.move_on_after(timeout_s) as waited:
                answer = await self.approver.ask(question)
            if waited.cancelled_caught:
                return "deny", (f"the person did not answer within {timeout_s:g}s whether to "
                                f"allow {shown}; denied"), "time_limit"
        if answer is None:
            return self._fallback(name, tool_input, shown)
        if answer.verdict == "deny":
            reason = answer.reason.strip() or "no reason given"
            return "deny", f"the person denied {shown}: {reason}", "person"
        if answer.verdict == "allow_call":
            self.allowed_for_call.add(name)
        return "allow", answer.reason or f"allowed by the person ({answer.verdict})", "person"

    def _fallback(self, name: str, tool_input: Mapping[str, Any], shown: str
                  ) -> tuple[Literal["allow", "deny"], str, Decider]:
        if self.policy.no_elicitation == "allow":
            return "allow", "allowed by [permissions] no_elicitation = \"allow\"", "fallback"
        return "deny", (
            f"{shown} needs the person's approval, but the client cannot ask its user "
            "(no elicitation); denied. "
            f"A rule would allow it: [permissions] rules = [{{tool = "
            f"\"{suggested_rule(name, tool_input, self.cwd)}\", decision = \"allow\"}}]"
        ), "fallback"


def suggested_rule(name: str, tool_input: Mapping[str, Any], cwd: Path) -> str:
    """The narrowest rule that allows this tool use: ``Bash(git push)``, ``Write(src/a.py)``."""
    subject = subject_of(tool_input, cwd)
    if subject is None or any(c in subject for c in "()\n"):
        return name
    return f"{name}({subject})"
