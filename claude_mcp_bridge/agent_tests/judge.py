"""The judge: another agent scores an answer against a rubric, from 0 to 1, with its reasons.

The judge runs through the same pipeline as the agent under test (policy, budget, ledger),
with ``--json-schema`` asking for ``{"score", "reasons"}``. A case may name its own judging
agent; otherwise the built-in one below runs, with no tools: it sees only the task, the
answer and the rubric.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents_registry import AgentDefinition
from agents_registry.definitions import build_definition

BUILTIN_JUDGE = "bridge-judge"
FIRST_LINE = "Grade the answer below against the rubric."
"""The judge prompt's first line (a fake CLI's scripts are keyed by it)."""

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reasons": {"type": "string"},
    },
    "required": ["score", "reasons"],
    "additionalProperties": False,
}

_BODY = """You grade the work of another AI agent. You get the task it was given, its final
answer and a rubric. Judge the answer only against the rubric: give a score from 0 (fails
the rubric entirely) to 1 (meets every point of it), and reasons that name what was met
and what was missed, in two to five sentences. Do not redo the task."""


def builtin_judge() -> AgentDefinition:
    definition = build_definition(
        "agent",
        {"name": BUILTIN_JUDGE, "description": "Scores an answer against a rubric (0-1).",
         "tools": []},
        body=_BODY, path=Path(f"(built-in)/{BUILTIN_JUDGE}.md"), scope="extra",
        sha256=hashlib.sha256(_BODY.encode()).hexdigest())
    assert isinstance(definition, AgentDefinition)
    return definition


def judge_prompt(rubric: str, task: str, answer: str) -> str:
    return (f"{FIRST_LINE}\n\n<task>\n{task}\n</task>\n\n<answer>\n{answer}\n</answer>\n\n"
            f"<rubric>\n{rubric}\n</rubric>\n\n"
            'Reply with JSON only: {"score": <0 to 1>, "reasons": "<why>"}.')


@dataclass(frozen=True)
class Verdict:
    score: float
    reasons: str


def read_verdict(structured_output: Any, answer: str) -> Verdict | str:
    """The judge's verdict from its structured output, else from JSON in its answer;
    a string says why there is none."""
    value = structured_output if structured_output is not None else _json_object(answer)
    if not isinstance(value, dict):
        return f"the judge gave no JSON verdict (answer: {answer[:160]!r})"
    score, reasons = value.get("score"), value.get("reasons")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        return f"the judge's score must be a number from 0 to 1, got {score!r}"
    return Verdict(float(score), reasons if isinstance(reasons, str) else json.dumps(reasons))


def _json_object(answer: str) -> Any:
    match = re.search(r"\{.*\}", answer, re.DOTALL)
    if match is None:
        return None
    try:
        return json.loads(match.group(0))
    except ValueError:
        return None
