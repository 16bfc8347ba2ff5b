"""A structured-output case and its judge against the real `claude` CLI and a scripted model.

What the fake-CLI tests assume, proved here: ``--json-schema`` makes the CLI offer a
``StructuredOutput`` tool (to a tool-restricted agent only when its list names it), and the
model's call of it ends the run with ``structured_output`` in the result event.
"""

import os
from dataclasses import replace
from pathlib import Path

import pytest

from claude_mcp_bridge.settings import ClaudeExecutable
from tests.agent_tests.conftest import run_tests, write_tests
from tests.fakes.messages_api import scripted_model

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]


def real_claude() -> Path:
    configured = os.environ.get("CLAUDE_MCP_BRIDGE_REAL_CLAUDE")
    path = Path(configured) if configured else \
        REPO / ".cache" / "claude-cli" / "node_modules" / ".bin" / "claude"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"the real claude CLI is not installed at {path}: run .ci/run or set "
                    "CLAUDE_MCP_BRIDGE_REAL_CLAUDE")
    return path


async def test_structured_output_and_the_judge_through_the_real_cli(workspace):
    claude = real_claude()
    workspace.agent("reviewer", "tools: Read\n")
    write_tests(workspace.project, "reviewer", """
        cases:
          - name: counts
            prompt: Count the bugs.
            checks:
              - json_schema: {type: object, required: [bugs], properties: {bugs: {type: integer}}}
              - tools_not_used: Bash
            judge: {rubric: Counts two bugs.}
    """)
    turns = [{"tool_use": {"name": "StructuredOutput", "input": {"bugs": 2}}},
             {"tool_use": {"name": "StructuredOutput",
                           "input": {"score": 0.8, "reasons": "Counts both."}}}]
    with scripted_model(turns) as model:
        workspace.extra_env.update(model.cli_env(str(workspace.home)))
        settings = replace(workspace.settings(None), claude=ClaudeExecutable(claude, "real"))
        suite = await run_tests(settings)
        agent_tools, judge_tools = (r.tool_names for r in model.turn_requests)
    [run] = suite.runs
    assert run.status == "passed", run.message
    assert [c.check for c in run.checks] == ["json_schema", "tools_not_used", "judge"]
    assert run.checks[0].detail == "the structured output matches the schema"
    assert (run.judge_score, run.judge_reasons) == (0.8, "Counts both.")
    assert sorted(agent_tools) == ["Read", "StructuredOutput"]
    assert judge_tools == ["StructuredOutput"]
    assert run.cost_usd is not None and run.judge_cost_usd is not None
