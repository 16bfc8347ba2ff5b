"""The `test_agent` MCP tool: what it publishes and what a call answers."""

import hashlib

import pytest

from claude_mcp_bridge.agent_tests.history import case_records
from claude_mcp_bridge.agent_tests.mcp_tool import TOOL_NAME, call_tool
from claude_mcp_bridge.builtin_tools import agent_test_tool
from claude_mcp_bridge.ledger import Ledger
from claude_mcp_bridge.server import open_bridge
from tests.agent_tests.conftest import Said, write_tests

pytestmark = pytest.mark.anyio


def test_the_tool_takes_a_name_and_optional_cases_repeat_and_compare():
    published = agent_test_tool()
    assert published.name == TOOL_NAME == "test_agent"
    schema = published.input_schema
    assert schema["required"] == ["name"]
    assert set(schema["properties"]) == {"name", "kind", "cases", "repeat", "compare"}
    assert schema["properties"]["repeat"]["maximum"] == 10


async def test_a_call_tests_the_definition_as_it_is_on_disk_now(workspace, fake_claude):
    path = workspace.agent("reviewer", body="Old.")
    write_tests(workspace.project, "reviewer", """
        cases:
          - {name: ok, prompt: p, checks: [{contains: Fake}]}
          - {name: picky, prompt: p, checks: [{contains: Real}]}
    """)
    said = Said()
    with open_bridge(workspace.settings(fake_claude)) as bridge:
        path.write_text(path.read_text().replace("Old.", "New."))  # edited after start-up
        result = await call_tool(bridge, {"name": "reviewer", "cases": ["picky"]}, said)
    assert result.is_error is False
    report = result.structured
    assert report["passed"] is False
    [definition] = report["definitions"]
    assert definition["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [c["name"] for c in definition["cases"]] == ["picky"]
    assert "FAIL  picky" in result.text
    assert "compare agent reviewer: no earlier version" in result.text
    assert "reviewer/picky: started" in said.messages
    with Ledger.open(workspace.settings(None).ledger_path) as ledger:
        [row] = case_records(ledger, report["run_id"])
    assert row.status == "failed"


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "invalid arguments: name: Field required"),
    ({"name": "../../etc/x.yaml"}, "must be an agent or skill name, not a path"),
    ({"name": "reviewer", "repeat": 50}, "repeat: Input should be less than or equal to 10"),
    ({"name": "nobody"}, "no test file for 'nobody'"),
    ({"name": "reviewer", "cases": ["nope"]}, "no case named 'nope' in the tests of 'reviewer'"),
    ({"name": "reviewer", "kind": "skill"}, "no published skill named 'reviewer'"),
])
async def test_a_call_that_cannot_run_is_an_error(workspace, fake_claude, arguments, message):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: ok, prompt: p}]")
    with open_bridge(workspace.settings(fake_claude)) as bridge:
        result = await call_tool(bridge, arguments, Said())
    assert result.is_error is True
    assert message in result.text
    assert fake_claude.records() == []


async def test_a_long_test_run_keeps_the_client_informed(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: slow, prompt: p}]")
    fake_claude.script([{"init": {}}, {"sleep": 0.3}, {"text": "done"}, {"result": {}}])
    said = Said()
    settings = workspace.settings(fake_claude, {"limits": {"heartbeat_s": 0.01}})
    with open_bridge(settings) as bridge:
        result = await call_tool(bridge, {"name": "reviewer", "compare": False}, said)
    assert result.is_error is False
    # the call's own heartbeat (inside the run) or the test runner's (between runs)
    assert any((m.startswith("still testing (") and "last: reviewer/slow: started" in m)
               or m.startswith("reviewer/slow: still working (") for m in said.messages)
