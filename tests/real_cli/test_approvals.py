"""Permission prompts of the real CLI answered by the person through MCP elicitation (2025 era).

The scripted model asks for a Bash ``touch``; the real CLI asks the bridge (``can_use_tool``
over the control protocol), the rule says "ask", and the test's client is the person.
Assertions are on the file system, the Messages API requests and processes.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from claude_mcp_bridge.bridge import open_bridge
from claude_mcp_bridge.server import create_server
from tests.real_cli.support import bridge_settings, wait_until_dead

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

ASK_BASH = {"permissions": {"rules": [{"tool": "Bash", "decision": "ask"}]}}


class Person:
    """The elicitation callback: answers with ``content`` (None: never answers)."""

    def __init__(self, content: dict[str, Any] | None) -> None:
        self.content = content
        self.asked: list[str] = []
        self.waiting = anyio.Event()

    async def __call__(self, context: Any, params: types.ElicitRequestParams
                       ) -> types.ElicitResult:
        self.asked.append(params.message)
        self.waiting.set()
        if self.content is None:
            await anyio.sleep_forever()
        return types.ElicitResult(action="accept", content=self.content)


def script_touch(workspace: Any, real_cli: Any) -> None:
    workspace.agent("builder", "tools: Bash, Read\n", body="You build things.")
    real_cli.server.add({"tool_use": {"name": "Bash", "input": {"command": "touch made.txt",
                                                                "description": "make a file"}}},
                        {"text": "Done."})


async def run(workspace: Any, real_cli: Any, person: Person, config: dict[str, Any]) -> Any:
    settings = bridge_settings(workspace, real_cli, config)
    with open_bridge(settings) as bridge:
        async with Client(create_server(bridge), mode="legacy",
                          elicitation_callback=person) as client:
            with anyio.fail_after(90):
                result = await client.call_tool("agent_builder", {"prompt": "build"})
        rows = [dict(r) for r in bridge.ledger.rows("SELECT * FROM decisions ORDER BY id")]
    return result, rows


async def test_the_person_allows_and_the_command_runs(workspace, real_cli):
    script_touch(workspace, real_cli)
    person = Person({"decision": "allow_once"})
    result, rows = await run(workspace, real_cli, person, ASK_BASH)
    assert not result.is_error, result.content[0].text
    assert "wants to run Bash: `touch made.txt`" in person.asked[0]
    assert (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "person" and rows[0]["decision"] == "allow"


async def test_the_person_denies_and_the_model_gets_the_reason(workspace, real_cli):
    script_touch(workspace, real_cli)
    person = Person({"decision": "deny", "reason": "REASON-SENTINEL not in this repo"})
    result, rows = await run(workspace, real_cli, person, ASK_BASH)
    assert not (workspace.project / "made.txt").exists()
    results = json.dumps(real_cli.server.last.tool_results)
    assert "REASON-SENTINEL not in this repo" in results
    assert result.structured_content["permission_denials"][0]["tool_name"] == "Bash"
    assert rows[0]["decider"] == "person" and rows[0]["decision"] == "deny"


async def test_an_unanswered_question_is_denied_at_the_time_limit(workspace, real_cli):
    script_touch(workspace, real_cli)
    config = {"permissions": {**ASK_BASH["permissions"], "ask_timeout_s": 1}}
    result, rows = await run(workspace, real_cli, Person(None), config)
    assert not (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "time_limit"
    assert result.structured_content["permission_denials"][0]["tool_name"] == "Bash"


async def test_cancelling_while_the_question_waits_leaves_no_process(workspace, real_cli):
    script_touch(workspace, real_cli)
    person = Person(None)
    settings = bridge_settings(workspace, real_cli, ASK_BASH)
    with open_bridge(settings) as bridge:
        async with Client(create_server(bridge), mode="legacy",
                          elicitation_callback=person) as client, anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "agent_builder", {"prompt": "build"})
            with anyio.fail_after(60):
                await person.waiting.wait()
            tg.cancel_scope.cancel()
    pids = real_cli.pids()
    assert pids
    assert await wait_until_dead(pids) == []
    assert not (workspace.project / "made.txt").exists()


async def test_a_2026_client_allows_through_the_round_trip(workspace, real_cli):
    script_touch(workspace, real_cli)
    person = Person({"decision": "allow_once"})
    settings = bridge_settings(workspace, real_cli, ASK_BASH)
    with open_bridge(settings) as bridge:
        async with Client(create_server(bridge), elicitation_callback=person) as client:
            assert client.protocol_version == "2026-07-28"
            with anyio.fail_after(90):
                result = await client.call_tool("agent_builder", {"prompt": "build"})
    assert not result.is_error, result.content[0].text
    assert "wants to run Bash: `touch made.txt`" in person.asked[0]
    assert (workspace.project / "made.txt").exists()
