"""Property-based fuzzing of tool arguments through the real server, in memory (issue 14.6).

Whatever a client sends as arguments, the bridge answers with a result: never a crash,
never an "internal error", and nothing the caller wrote reaches the child's argv as an
option (the prompt goes on stdin). The child is the strict fake ``claude``, whose records
give each argv. Bounded for CI: the module takes well under a minute on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError

from claude_mcp_bridge.server import create_server, open_bridge

TOOLS = ["agent_reviewer", "skill_notes", "run_agent", "find_agent", "test_agent"]
# Every option the bridge itself puts in argv; anything else starting with "-" came from input.
BRIDGE_FLAGS = ("-p", "--output-format", "--verbose", "--agents=", "--agent=",
                "--append-system-prompt=", "--add-dir", "--tools=", "--allowedTools",
                "--disallowedTools", "--model=", "--permission-mode=", "--max-turns=",
                "--max-budget-usd=", "--resume=", "--mcp-config", "--strict-mcp-config",
                "--json-schema=", "--input-format", "--permission-prompt-tool", "--settings=")
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

flagish = st.one_of(
    st.sampled_from(["-p", "--mcp-config", "--dangerously-skip-permissions", "--resume=x",
                     "--tools=Bash", "-rf", "--", "-", "--permission-mode=bypassPermissions",
                     "--add-dir=/", "--settings={}"]),
    st.text(max_size=20).map(lambda t: "-" + t))
text = st.one_of(st.text(max_size=40), flagish)
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text)
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
known = ["prompt", "cwd", "model", "max_turns", "max_budget_usd", "session_id", "name",
         "task", "limit", "tool", "arguments", "cases", "repeat", "kind", "compare"]
any_arguments = st.dictionaries(st.one_of(st.sampled_from(known), st.text(max_size=10)),
                                value, max_size=6)


def valid_arguments(project: Path) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments that pass validation, so a child starts: the flag-like values are where
    they are accepted (the prompt, a cwd inside the project)."""
    prompt = st.one_of(flagish, st.text(min_size=1, max_size=60)).filter(lambda p: p.strip())
    optional = {
        "cwd": st.sampled_from([str(project), str(project / "-sub"),
                                str(project / "--mcp-config")]),
        "model": st.sampled_from(["haiku", "sonnet", "claude-sonnet-4-5"]),
        "max_turns": st.integers(1, 1000),
        "max_budget_usd": st.floats(0.000001, 10_000),
    }
    return st.fixed_dictionaries({"prompt": prompt}, optional=optional)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.fixture
def client(workspace, fake_claude) -> Iterator[tuple[anyio.from_thread.BlockingPortal, Client]]:
    workspace.agent("reviewer", "tools: Read, Grep\n")
    workspace.skill("notes", "allowed-tools: Read\n")
    for name in ("-sub", "--mcp-config"):
        (workspace.project / name).mkdir()
    settings_ = workspace.settings(fake_claude, {"catalog": {"mode": "both"}})
    with open_bridge(settings_) as bridge, \
            anyio.from_thread.start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(Client(create_server(bridge))) as connected:
        yield portal, connected


def call(portal: anyio.from_thread.BlockingPortal, client: Client, tool: str,
         arguments: dict[str, Any]) -> Any:
    async def go() -> Any:
        with anyio.fail_after(30):
            return await client.call_tool(tool, arguments)
    return portal.call(go)


def assert_answered_plainly(result: Any) -> None:
    words = " ".join(getattr(c, "text", "") for c in result.content).lower()
    assert "internal error" not in words and "traceback" not in words, words


def assert_no_input_became_a_flag(records: list[dict[str, Any]], arguments: Any,
                                  baseline: list[str]) -> None:
    """No flag-like string of the input is in argv more often than in ``baseline`` (the
    argv of a plain call: ``-p`` is the bridge's own), and every option is the bridge's."""
    flags = {s for s in strings(arguments) if s.startswith("-")}
    for record in records:
        argv = record["argv"]
        extra = [f for f in flags if argv.count(f) > baseline.count(f)]
        assert not extra, (extra, argv)
        for arg in argv:
            if arg.startswith("-"):
                assert arg.startswith(BRIDGE_FLAGS), (arg, argv)


def baseline_argv(portal: anyio.from_thread.BlockingPortal, client: Client, fake_claude: Any,
                  tool: str) -> list[str]:
    result = call(portal, client, tool, {"prompt": "a plain call"})
    assert not result.is_error, result.content[0].text
    return list(fake_claude.last()["argv"])


def test_any_arguments_to_any_tool_get_an_answer_never_a_crash(client, fake_claude):
    portal, connected = client
    baselines = {tool: baseline_argv(portal, connected, fake_claude, tool)
                 for tool in ("agent_reviewer", "skill_notes")}

    @FUZZ
    @given(tool=st.sampled_from(TOOLS), arguments=any_arguments)
    def check(tool: str, arguments: dict[str, Any]) -> None:
        before = len(fake_claude.records())
        try:
            result = call(portal, connected, tool, arguments)
        except MCPError as exc:  # a protocol-level refusal is an answer, not a crash
            assert "internal" not in str(exc).lower(), exc
            return
        assert_answered_plainly(result)
        # run_agent runs one of the two; their baselines hold the same bare flags but --add-dir
        baseline = baselines.get(tool, baselines["skill_notes"])
        assert_no_input_became_a_flag(fake_claude.records()[before:], arguments, baseline)

    check()


def test_flag_like_input_that_reaches_the_child_stays_out_of_its_options(
        client, fake_claude, workspace):
    portal, connected = client
    prompts: list[str] = []
    baselines = {tool: baseline_argv(portal, connected, fake_claude, tool)
                 for tool in ("agent_reviewer", "skill_notes")}

    @settings(FUZZ, max_examples=30)
    @given(tool=st.sampled_from(["agent_reviewer", "skill_notes"]),
           arguments=valid_arguments(workspace.project))
    def check(tool: str, arguments: dict[str, Any]) -> None:
        before = len(fake_claude.records())
        prompts.append(arguments["prompt"])
        result = call(portal, connected, tool, arguments)
        assert_answered_plainly(result)  # an error result is fine (a tiny budget runs out)
        [record] = fake_claude.records()[before:]
        assert record["prompt"] == arguments["prompt"]  # the prompt went on stdin, whole
        prompt = arguments["prompt"]
        assert record["argv"].count(prompt) == baselines[tool].count(prompt)
        assert_no_input_became_a_flag([record], arguments, baselines[tool])
        if "cwd" in arguments:
            assert Path(record["cwd"]) == Path(arguments["cwd"]).resolve()

    check()
    assert any(p.startswith("-") for p in prompts)  # the strategy did send flag-like prompts

