"""Warm starts with the real CLI: a process started ahead answers the next call."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge.server import create_server, open_bridge
from tests.real_cli.support import bridge_settings

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]


async def test_a_warm_real_cli_answers_with_the_agent_body_tools_and_model(workspace, real_cli):
    workspace.agent("reviewer", "tools: Read, Grep\nmodel: haiku\n", body="WARM-BODY-SENTINEL")
    real_cli.server.add({"text": "cold answer"}, {"text": "warm answer"})
    settings = bridge_settings(workspace, real_cli, {"warm": {"size": 1}})
    with open_bridge(settings) as bridge, anyio.fail_after(60):
        async with bridge.warm.running(), Client(create_server(bridge)) as client:
            cold = await client.call_tool("agent_reviewer", {"prompt": "first question"})
            while bridge.warm.waiting() < 1:  # noqa: ASYNC110 - the pool has no event
                await anyio.sleep(0.05)
            await anyio.sleep(1.0)  # let the warm CLI finish starting
            warm = await client.call_tool("agent_reviewer", {"prompt": "second question"},
                                          progress_callback=real_cli.on_progress)
            assert bridge.warm.hits == 1
    assert cold.content[0].text == "cold answer"
    assert warm.content[0].text == "warm answer" and not warm.is_error
    assert "starting agent reviewer (warm)" in real_cli.progress
    request = real_cli.server.last
    assert "WARM-BODY-SENTINEL" in request.system_text
    assert request.tool_names == ["Read", "Grep"]
    assert "haiku" in (request.model or "")
    assert "second question" in request.message_text
    assert warm.structured_content["cost_usd"] > 0
