"""Permission prompts answered per call: policy rules, the person, the time limit, the fallback.

The fake CLI speaks the control protocol (``can_use_tool`` on stdout, the answer on stdin) as
the real one does; the core is driven here with an ``Approver`` of its own, no MCP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from claude_mcp_bridge.approvals import Answer, Question
from claude_mcp_bridge.bridge import Bridge, Finished, open_bridge
from claude_mcp_bridge.progress import Progress
from tests.support import pid_alive

pytestmark = pytest.mark.anyio

WRITE = [{"init": {}},
         {"tool_use": {"name": "Bash", "input": {"command": "touch made.txt"}}},
         {"write": {"path": "made.txt", "content": "x"}},
         {"tool_result": {"content": "(Bash completed with no output)"}},
         {"text": "done"}, {"result": {}}]


class Person:
    """An approver that answers every question with ``answer`` (None: cannot ask; "never":
    never answers)."""

    def __init__(self, answer: Answer | str | None) -> None:
        self.answer = answer
        self.questions: list[Question] = []
        self.asked = anyio.Event()

    async def ask(self, question: Question) -> Answer | None:
        self.questions.append(question)
        self.asked.set()
        if self.answer == "never":
            await anyio.sleep_forever()
        assert not isinstance(self.answer, str)
        return self.answer


@contextmanager
def bridge_for(workspace: Any, fake_claude: Any, permissions: dict[str, Any]
               ) -> Iterator[Bridge]:
    workspace.agent("builder", "tools: Bash\n")
    fake_claude.script(WRITE)
    with open_bridge(workspace.settings(fake_claude, {"permissions": permissions})) as bridge:
        yield bridge


async def call(bridge: Bridge, approver: Any = None) -> Finished:
    async def quiet(message: str) -> None:
        pass
    with anyio.fail_after(20):
        finished = await bridge.call("agent_builder", {"prompt": "build"}, Progress(quiet),
                                     "test", approver=approver)
    assert isinstance(finished, Finished), finished
    return finished


def decided(bridge: Bridge) -> list[dict[str, Any]]:
    return [dict(row) for row in bridge.ledger.rows("SELECT * FROM decisions ORDER BY id")]


def denials(finished: Finished) -> list[Any]:
    assert finished.report is not None
    return list(finished.report.output.permission_denials)


async def test_a_declared_tool_is_allowed_when_the_child_asks(workspace, fake_claude):
    with bridge_for(workspace, fake_claude, {}) as bridge:
        await call(bridge)
        rows = decided(bridge)
    assert (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "definition" and rows[0]["decision"] == "allow"


async def test_a_deny_rule_wins_and_the_model_gets_the_reason(workspace, fake_claude):
    rules = [{"tool": "Bash", "decision": "allow"}, {"tool": "Bash(touch *)", "decision": "deny"}]
    with bridge_for(workspace, fake_claude, {"rules": rules}) as bridge:
        finished = await call(bridge)
    assert not (workspace.project / "made.txt").exists()
    assert denials(finished)[0]["tool_name"] == "Bash"
    stdin = fake_claude.last()["stdin"]
    assert "can_use_tool" not in stdin  # the record keeps what came before the prompt only
    assert json.loads(stdin.splitlines()[0])["request"]["subtype"] == "initialize"


async def test_ask_without_elicitation_falls_back_to_deny_naming_the_rule(workspace, fake_claude):
    rules = [{"tool": "Bash", "decision": "ask"}]
    with bridge_for(workspace, fake_claude, {"rules": rules}) as bridge:
        await call(bridge, Person(None))
        rows = decided(bridge)
    assert not (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "fallback"
    assert 'tool = "Bash(touch made.txt)", decision = "allow"' in rows[0]["reason"]


@pytest.mark.parametrize(("answer", "made"), [(Answer("allow_once"), True),
                                              (Answer("deny", "not today"), False)])
async def test_the_person_decides_what_ask_leaves_open(workspace, fake_claude, answer, made):
    person = Person(answer)
    with bridge_for(workspace, fake_claude, {"rules": [{"tool": "Bash", "decision": "ask"}]}
                    ) as bridge:
        await call(bridge, person)
        rows = decided(bridge)
    assert (workspace.project / "made.txt").exists() is made
    assert person.questions[0].text.startswith("builder wants to run Bash: `touch made.txt`")
    assert rows[0]["decider"] == "person"
    assert ("not today" in rows[0]["reason"]) is not made


async def test_an_unanswered_question_is_denied_at_its_time_limit(workspace, fake_claude):
    person = Person("never")
    permissions = {"rules": [{"tool": "Bash", "decision": "ask"}], "ask_timeout_s": 0.5}
    with bridge_for(workspace, fake_claude, permissions) as bridge:
        await call(bridge, person)
        rows = decided(bridge)
    assert not (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "time_limit"


async def test_cancelling_while_the_question_waits_ends_the_child(workspace, fake_claude):
    person = Person("never")
    with bridge_for(workspace, fake_claude, {"rules": [{"tool": "Bash", "decision": "ask"}]}
                    ) as bridge:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, bridge, person)
            with anyio.fail_after(20):
                await person.asked.wait()
            tg.cancel_scope.cancel()
    pid = fake_claude.last()["pid"]
    assert not pid_alive(pid)


# -- through MCP: the client's elicitation callback ------------------------------------------


async def test_a_2025_client_with_elicitation_is_asked_and_its_answer_decides(
        workspace, fake_claude):
    import mcp_types as types
    from mcp import Client

    from claude_mcp_bridge.server import create_server

    asked: list[str] = []

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"decision": "allow_once"})

    with bridge_for(workspace, fake_claude, {"rules": [{"tool": "Bash", "decision": "ask"}]}
                    ) as bridge:
        async with Client(create_server(bridge), mode="legacy",
                          elicitation_callback=person) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("agent_builder", {"prompt": "build"})
        rows = decided(bridge)
    assert not result.is_error, result
    assert asked and "builder wants to run Bash: `touch made.txt`" in asked[0]
    assert (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "person"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_client_without_elicitation_gets_the_fallback_denial(
        workspace, fake_claude, mode):
    from mcp import Client

    from claude_mcp_bridge.server import create_server

    with bridge_for(workspace, fake_claude, {"rules": [{"tool": "Bash", "decision": "ask"}]}
                    ) as bridge:
        async with Client(create_server(bridge), mode=mode) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("agent_builder", {"prompt": "build"})
        rows = decided(bridge)
    assert not (workspace.project / "made.txt").exists()
    assert rows[0]["decider"] == "fallback"
    assert result.structured_content["permission_denials"][0]["tool_name"] == "Bash"


async def test_a_sandboxed_call_where_the_sandbox_cannot_run_is_refused(
        workspace, fake_claude, monkeypatch, tmp_path):
    from claude_mcp_bridge import sandbox
    from claude_mcp_bridge.outcomes import Refusal
    from tests.support import path_without

    monkeypatch.setenv("PATH", path_without("bwrap", tmp_path))
    sandbox.problem.cache_clear()
    try:
        with bridge_for(workspace, fake_claude, {"sandbox": {"enabled": True}}) as bridge:
            async def quiet(message: str) -> None:
                pass
            refused = await bridge.call("agent_builder", {"prompt": "build"}, Progress(quiet),
                                        "test")
    finally:
        sandbox.problem.cache_clear()
    assert isinstance(refused, Refusal)
    assert "agent_builder must run sandboxed" in refused.message
    assert "the sandbox needs bwrap" in refused.message
    assert not fake_claude.records(), "nothing ran"


# -- the 2026-07-28 era: InputRequiredResult round trips --------------------------------------


@pytest.mark.parametrize(("decision", "made"), [("allow_once", True), ("deny", False)])
async def test_a_2026_client_answers_through_the_input_required_round_trip(
        workspace, fake_claude, decision, made):
    import mcp_types as types
    from mcp import Client

    from claude_mcp_bridge.server import create_server

    asked: list[str] = []
    paused: list[bool] = []

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        # the child is paused on its prompt while the person thinks: nothing written yet
        paused.append(not (workspace.project / "made.txt").exists())
        return types.ElicitResult(action="accept", content={"decision": decision,
                                                            "reason": "not now"})

    with bridge_for(workspace, fake_claude, {"rules": [{"tool": "Bash", "decision": "ask"}]}
                    ) as bridge:
        async with Client(create_server(bridge), elicitation_callback=person) as client:
            assert client.protocol_version == "2026-07-28"
            with anyio.fail_after(20):
                result = await client.call_tool("agent_builder", {"prompt": "build"})
        rows = decided(bridge)
    assert not result.is_error, result
    assert asked and "builder wants to run Bash: `touch made.txt`" in asked[0]
    assert paused == [True]
    assert (workspace.project / "made.txt").exists() is made
    assert rows[0]["decider"] == "person"
    assert rows[0]["decision"] == ("allow" if made else "deny")


async def test_a_2026_retry_with_an_unknown_request_state_is_refused(workspace, fake_claude):
    import mcp_types as types
    from mcp import Client, MCPError

    from claude_mcp_bridge.server import create_server

    with bridge_for(workspace, fake_claude, {}) as bridge:
        async with Client(create_server(bridge)) as client:
            with pytest.raises(MCPError, match="unknown or expired request_state"):
                await client.call_tool("agent_builder", {"prompt": "build"},
                                       request_state="forged",
                                       input_responses={"q": types.ElicitResult(action="cancel")})


async def test_a_2026_call_left_waiting_is_stopped_when_the_server_stops(workspace, fake_claude):
    """The 2026 era has no request open while the person thinks, so a client that gives up
    tells the server nothing: the question's time limit bounds the wait, and a server that
    stops ends the parked call and its child."""
    import mcp_types as types
    from mcp import Client

    from claude_mcp_bridge.server import create_server

    asked = anyio.Event()

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError

    with bridge_for(workspace, fake_claude, {"rules": [{"tool": "Bash", "decision": "ask"}]}
                    ) as bridge:
        async with Client(create_server(bridge), elicitation_callback=person) as client, \
                anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "agent_builder", {"prompt": "build"})
            with anyio.fail_after(20):
                await asked.wait()
            tg.cancel_scope.cancel()
        rows = decided(bridge)
    assert not pid_alive(fake_claude.last()["pid"])
    assert not (workspace.project / "made.txt").exists()
    assert rows == [] or rows[0]["decision"] == "deny"
