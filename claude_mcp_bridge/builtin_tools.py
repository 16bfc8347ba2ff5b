"""The tools the bridge publishes besides one per definition: jobs, the router's two,
and ``test_agent``. Their handlers live with their features (``jobs.py``, ``router.py``,
``agent_tests/mcp_tool.py``); this module only describes them to MCP clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import mcp_types as types

from .agent_tests.arguments import TOOL_NAME, TestAgentArguments
from .arguments import INPUT_SCHEMA
from .jobs import MAX_WAIT_S

JOB_TOOLS: tuple[types.Tool, ...] = (
    types.Tool(
        name="job_start",
        title="Start a job",
        description="Start any agent_* or skill_* tool in the background and return its "
                    "job_id at once (for clients whose requests time out). Same arguments and "
                    "policy as calling the tool directly.",
        input_schema={
            "type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
            "properties": {
                "tool": {"type": "string", "description": "the tool to run, e.g. agent_reviewer"},
                "arguments": {"type": "object", "description": "that tool's arguments"}}}),
    types.Tool(
        name="job_status",
        title="Job status",
        description="State, elapsed time, recent events and cost of a job.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["job_id"],
                      "properties": {"job_id": {"type": "string"}}},
        annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(
        name="job_result",
        title="Job result",
        description="The job's answer: waits up to wait_s (at most 60) for it to finish; "
                    "call again while it is still running.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["job_id"],
                      "properties": {"job_id": {"type": "string"},
                                     "wait_s": {"type": "number", "minimum": 0,
                                                "maximum": MAX_WAIT_S, "default": 30}}},
        annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(
        name="job_cancel",
        title="Cancel a job",
        description="Stop a running job (its agent is stopped) and return its final state.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["job_id"],
                      "properties": {"job_id": {"type": "string"}}}),
    types.Tool(
        name="job_approve",
        title="Answer a job's permission question",
        description="Decide the tool use a job waits for (job_status shows its question_id, "
                    "tool and summary): allow_once, allow_call (this tool for the rest of the "
                    "job) or deny (the reason goes to the agent).",
        input_schema={"type": "object", "additionalProperties": False,
                      "required": ["job_id", "question_id", "decision"],
                      "properties": {"job_id": {"type": "string"},
                                     "question_id": {"type": "string"},
                                     "decision": {"type": "string",
                                                  "enum": ["allow_once", "allow_call", "deny"]},
                                     "reason": {"type": "string"}}}),
)


def _run_agent_schema(call_schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = {"name": {"type": "string",
                           "description": "the agent or skill, as find_agent names it"},
                  **call_schema["properties"]}
    return {**call_schema, "properties": properties,
            "required": ["name", *call_schema.get("required", [])]}


def _router_tools(call_schema: Mapping[str, Any]) -> tuple[types.Tool, ...]:
    return (
        types.Tool(
            name="find_agent",
            title="Find an agent or skill",
            description="Find the user's Claude Code agents and skills best suited to a task: "
                        "returns them ranked, with why. Then call run_agent with the name.",
            input_schema={
                "type": "object", "additionalProperties": False, "required": ["task"],
                "properties": {
                    "task": {"type": "string", "minLength": 1,
                             "description": "what needs doing, in a sentence or two"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5}}},
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False)),
        types.Tool(
            name="run_agent",
            title="Run an agent or skill",
            description="Run one of the user's Claude Code agents or skills by name (from "
                        "find_agent) as a separate headless session; returns its answer, cost "
                        "and session_id.",
            input_schema=_run_agent_schema(call_schema),
            annotations=types.ToolAnnotations(destructive_hint=True, open_world_hint=True)),
    )


ROUTER_TOOLS = _router_tools(INPUT_SCHEMA)


@cache
def agent_test_tool() -> types.Tool:
    """``test_agent``, described for clients (its runner loads on the first call)."""
    return types.Tool(
        name=TOOL_NAME,
        title="Test an agent or skill",
        description=(
            "Run the test cases of one of the user's agents or skills (each case a real, "
            "budgeted run in a scratch copy of its fixture) and report each case's checks, "
            "cost and time, the pass rate and judge score, and what got worse since the last "
            "tested version. Use it after editing an agent or skill file."),
        input_schema=TestAgentArguments.model_json_schema(),
        annotations=types.ToolAnnotations(
            title="Test an agent or skill", read_only_hint=False, destructive_hint=False,
            idempotent_hint=False, open_world_hint=True),
    )

