"""Long runs: heartbeats while the agent is silent, stalls, and answers cut to size."""

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge.server import create_server, open_bridge
from claude_mcp_bridge.usage import usage_rows

pytestmark = pytest.mark.anyio


@contextmanager
def server_for(workspace, fake, config) -> Iterator:
    with open_bridge(workspace.settings(fake, config)) as bridge:
        yield create_server(bridge)


async def test_a_silent_agent_still_sends_heartbeats_naming_its_last_step(
        workspace, fake_claude, tmp_path):
    workspace.agent("reviewer")
    release = tmp_path / "release"
    # The agent stays silent after its Grep until the test has seen two heartbeats.
    fake_claude.script([{"init": {}}, {"tool_use": {"name": "Grep", "input": {"pattern": "x"}}},
                        {"until": str(release)}, {"text": "done"}, {"result": {}}])
    messages: list[str] = []

    def beats_since_grep() -> list[str]:
        if "running tool Grep" not in messages:
            return []
        since = messages[messages.index("running tool Grep") + 1:]
        return [m for m in since if m.startswith("still working")]

    async def on_progress(done, total, message):
        messages.append(message)
        if len(beats_since_grep()) >= 2:
            release.touch()

    with server_for(workspace, fake_claude, {"limits": {"heartbeat_s": 0.3}}) as server:
        async with Client(server) as client:
            with anyio.fail_after(60):
                result = await client.call_tool("agent_reviewer", {"prompt": "go"},
                                                progress_callback=on_progress)
    assert not result.is_error
    # Beats before the Grep (a slow start) name an earlier step; every one after names it.
    assert len(beats_since_grep()) >= 2, messages
    assert all("last: running tool Grep" in beat for beat in beats_since_grep()), messages


async def test_without_silence_there_are_no_heartbeats(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "quick"}, {"result": {}}])
    messages: list[str] = []

    async def on_progress(done, total, message):
        messages.append(message)

    with server_for(workspace, fake_claude, {"limits": {"heartbeat_s": 60}}) as server:
        async with Client(server) as client:
            await client.call_tool("agent_reviewer", {"prompt": "go"},
                                   progress_callback=on_progress)
    assert not any(m.startswith("still working") for m in messages)


async def test_a_stalled_agent_is_a_clear_error_and_its_row_says_so(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "hmm"}, {"hang": True}])
    config = {"limits": {"stall_s": 0.5, "kill_grace_s": 1}}
    with open_bridge(workspace.settings(fake_claude, config)) as bridge:
        async with Client(create_server(bridge)) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
        [row] = usage_rows(bridge.ledger, since=_long_ago(), by="tool")[:1]
    assert result.is_error
    assert "stalled" in result.content[0].text and "0.5s" in result.content[0].text
    assert row.calls == 1 and row.ok == 0


async def test_a_long_answer_is_cut_with_a_marker_and_kept_whole_as_a_resource(
        workspace, fake_claude):
    workspace.agent("writer")
    answer = "".join(f"line {i:05d} of a very long report\n" for i in range(3000))
    fake_claude.script([{"init": {}}, {"result": {"result": answer}}])
    with server_for(workspace, fake_claude, {"limits": {"max_result_chars": 5000}}) as server:
        async with Client(server) as client:
            result = await client.call_tool("agent_writer", {"prompt": "report"})
            uri = result.structured_content["full_result"]
            whole = await client.read_resource(uri)
            templates = (await client.list_resource_templates()).resource_templates
    text = result.content[0].text
    assert not result.is_error
    assert len(text) <= 5000
    assert text.startswith("line 00000")
    assert f"5,000 of {len(answer):,} characters shown" in text
    assert uri in text and uri.startswith("bridge://results/")
    assert result.structured_content["result"] == text
    assert whole.contents[0].text == answer
    assert templates[0].uri_template == "bridge://results/{call_id}"


async def test_an_answer_within_the_limit_is_untouched(workspace, fake_claude):
    workspace.agent("writer")
    fake_claude.script([{"init": {}}, {"result": {"result": "short"}}])
    with server_for(workspace, fake_claude, {"limits": {"max_result_chars": 5000}}) as server:
        async with Client(server) as client:
            result = await client.call_tool("agent_writer", {"prompt": "report"})
    assert result.content[0].text == "short"
    assert "full_result" not in result.structured_content  # only when the answer was cut


def _long_ago():
    from datetime import UTC, datetime
    return datetime(2000, 1, 1, tzinfo=UTC)
