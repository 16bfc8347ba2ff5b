"""``tools/list`` from the cache: the same answer the SDK would shape, in every protocol
version, and a new one after a reload. (What each client sees through the cache is tested
over HTTP, where clients exist: ``test_http_clients.py``.)"""

import mcp_types as types
import pytest
from mcp import Client
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from claude_mcp_bridge.arguments import INPUT_SCHEMA, OUTPUT_SCHEMA
from claude_mcp_bridge.listing_cache import CHUNK, wire_forms
from tests.claude_mcp_bridge.test_server import make_server
from tests.support import agent_tools

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["auto", "legacy"])
def mode(request):
    return request.param


def varied_tools(count: int) -> list[types.Tool]:
    """Runs of shared schemas broken by tools with their own, and optional fields set on
    some: what a catalog with router and job tools looks like."""
    own = {"type": "object", "properties": {"job_id": {"type": "string", "title": "Job"}}}
    tools = []
    for i in range(count):
        plain = i % 7 != 3
        tools.append(types.Tool(
            name=f"agent_{i}", title=f"Agent {i}" if i % 2 else None,
            description=f"Agent number {i}.",
            input_schema=INPUT_SCHEMA if plain else own,
            output_schema=OUTPUT_SCHEMA if plain else None,
            annotations=types.ToolAnnotations(read_only_hint=True) if i % 5 == 0 else None,
            meta={"io.example/index": i} if i % 11 == 0 else None))
    return tools


@pytest.mark.parametrize("version", [*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS])
def test_each_tool_is_shaped_as_the_sdk_shapes_the_whole_list(version):
    tools = varied_tools(CHUNK * 2 + 17)
    dumped = types.ListToolsResult(tools=tools).model_dump(by_alias=True, mode="json",
                                                           exclude_none=True)
    expected = serialize_server_result("tools/list", version, dumped)
    envelope = {key: value for key, value in expected.items() if key != "tools"}
    wire = wire_forms(version, envelope, tools)
    assert [wire[id(tool)] for tool in tools] == expected["tools"]


async def test_a_reload_changes_the_cached_answer(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            first = await client.list_tools(cache_mode="bypass")
            again = await client.list_tools(cache_mode="bypass")
            workspace.agent("writer")
            await server.reload()
            after = await client.list_tools(cache_mode="bypass")
    assert agent_tools(first.tools) == agent_tools(again.tools) == ["agent_reviewer"]
    assert again.tools == first.tools
    assert agent_tools(after.tools) == ["agent_reviewer", "agent_writer"]


async def test_a_changed_description_reaches_the_client_after_a_reload(workspace, fake_claude,
                                                                      mode):
    workspace.agent("reviewer", description="Reviews code.")
    with make_server(workspace, fake_claude) as server:
        async with Client(server, mode=mode) as client:
            before = await client.list_tools(cache_mode="bypass")
            workspace.agent("reviewer", description="Reviews prose.")
            await server.reload()
            after = await client.list_tools(cache_mode="bypass")
    described = {t.name: t.description for t in before.tools}
    assert "Reviews code." in described["agent_reviewer"]
    assert "Reviews prose." in {t.name: t.description for t in after.tools}["agent_reviewer"]
