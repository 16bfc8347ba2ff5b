"""The tools a narrowed call offers the model, as the real CLI sends them (issue 14, item 1).

Found by experiment with 2.1.197 (recorded Messages API requests):
- with no ``--tools`` the model is offered the CLI's whole default set (24 tools: Agent, Bash,
  Edit, Write, WebFetch, ...), whatever ``--allowedTools`` says;
- ``--tools=A,B`` offers exactly A and B; it takes tool names, not rules (``Bash(git *)``
  offers nothing), and ``--tools=`` offers none;
- the CLI adds ``StructuredOutput`` when ``--json-schema`` is given, and every tool of every
  MCP server it connected (``mcp__<server>__<tool>``), whatever ``--tools`` says; a
  ``--disallowedTools`` rule ``mcp__*`` (or ``mcp__<server>``) removes them. Nothing else.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.real_cli.support import DEMO_MCP_SERVER, bridge_settings, call

pytestmark = [pytest.mark.real_cli, pytest.mark.anyio]

DEMO = {"mcpServers": {"demo": {"command": sys.executable, "args": [str(DEMO_MCP_SERVER)],
                                "alwaysLoad": True}}}
NARROW = {"permissions": {"allowed_tools": ["Read"]}}


async def test_a_skill_under_a_narrow_policy_offers_the_model_only_the_allowed_tools(
        workspace, real_cli):
    workspace.skill("notes", "allowed-tools: Read, Write, Glob\n")
    result = await call(bridge_settings(workspace, real_cli, NARROW), real_cli, "skill_notes",
                        prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert real_cli.server.last.tool_names == ["Read"]


async def test_a_skills_own_allowed_tools_are_the_whole_builtin_set(workspace, real_cli):
    workspace.skill("notes", "allowed-tools: Read, Glob, Bash(git log:*)\n")
    result = await call(bridge_settings(workspace, real_cli), real_cli, "skill_notes",
                        prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert sorted(real_cli.server.last.tool_names) == ["Bash", "Glob", "Read"]


async def test_a_narrowed_call_is_not_offered_the_tools_of_forwarded_mcp_servers(
        workspace, real_cli):
    workspace.skill("notes", "allowed-tools: Read\n")
    settings = bridge_settings(workspace, real_cli, mcp_configs=(json.dumps(DEMO),),
                               strict_mcp_config=True)
    result = await call(settings, real_cli, "skill_notes", prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert real_cli.server.last.tool_names == ["Read"]


async def test_a_narrowed_call_that_names_an_mcp_tool_is_offered_it(workspace, real_cli):
    workspace.skill("notes", "allowed-tools: Read, mcp__demo__echo\n")
    settings = bridge_settings(workspace, real_cli, mcp_configs=(json.dumps(DEMO),),
                               strict_mcp_config=True)
    result = await call(settings, real_cli, "skill_notes", prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert sorted(real_cli.server.last.tool_names) == ["Read", "mcp__demo__echo"]


async def test_an_agent_under_a_narrow_policy_offers_the_model_only_the_allowed_tools(
        workspace, real_cli):
    workspace.agent("helper", "tools: Read, Write, Bash\n")
    result = await call(bridge_settings(workspace, real_cli, NARROW), real_cli, "agent_helper",
                        prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert real_cli.server.last.tool_names == ["Read"]


async def test_an_unrestricted_skill_keeps_the_clis_default_set(workspace, real_cli):
    workspace.skill("notes")
    result = await call(bridge_settings(workspace, real_cli), real_cli, "skill_notes",
                        prompt="Say done")
    assert not result.is_error, result.content[0].text
    offered = set(real_cli.server.last.tool_names)
    assert {"Agent", "Bash", "Edit", "Write", "WebFetch", "Read"} <= offered


async def test_an_allowed_definition_server_reaches_the_model_and_others_are_cut(
        workspace, real_cli):
    # A mapping, as people write it: the real CLI 2.1.197 drops an agent whose mcpServers is
    # a mapping ("--agent 'x' not found"), so the bridge passes the list form.
    entry = json.dumps(DEMO["mcpServers"]["demo"])
    workspace.agent("helper", f"tools: Read, mcp__own__echo, mcp__demo__echo\n"
                              f"mcpServers:\n  own: {entry}\n")
    settings = bridge_settings(
        workspace, real_cli, {"mcp": {"definition_servers": ["own"],
                                      "allowed_servers": ["own"]}},
        mcp_configs=(json.dumps(DEMO),))
    result = await call(settings, real_cli, "agent_helper", prompt="Say done")
    assert not result.is_error, result.content[0].text
    assert sorted(real_cli.server.last.tool_names) == ["Read", "mcp__own__echo"]
