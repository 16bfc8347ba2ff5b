"""Clients over the real HTTP server: each token sees and runs only its own, a revoked
token stops working once the config file is reloaded, and no token reaches the logs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from claude_mcp_bridge.clients import new_token, token_hash
from claude_mcp_bridge.tokens import token_command
from tests.claude_mcp_bridge.test_http import Running, start
from tests.support import agent_tools

pytestmark = pytest.mark.anyio

OWNER, CI, DEV = new_token(), new_token(), new_token()
CONFIG = f"""
[reload]
poll_s = 0.1
debounce_s = 0.1

[clients.ci-bot]
token_sha256 = "{token_hash(CI)}"
tools = ["reviewer"]

[clients.dev]
token_sha256 = "{token_hash(DEV)}"
"""


@pytest.fixture
def running(workspace, fake_claude) -> Iterator[Running]:
    workspace.agent("reviewer")
    workspace.agent("writer")
    fake_claude.script([{"init": {}}, {"text": "Reviewed."},
                        {"result": {"result": "Reviewed.", "total_cost_usd": 0.05}}])
    server = start(workspace, fake_claude, "--log-level", "DEBUG", config=CONFIG,
                   env={"CLAUDE_MCP_BRIDGE_TOKEN": OWNER})
    yield server
    server.close()


@asynccontextmanager
async def client_with(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http, \
            Client(streamable_http_client(url + "/mcp", http_client=http), mode=mode) as client:
        yield client


async def job_answer(client: Client, job_id: str) -> dict:
    with anyio.fail_after(30):
        while True:
            done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 5})
            if done.structured_content["state"] != "running":
                return done.structured_content


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_sees_and_calls_only_its_tools_and_jobs(running, workspace, mode):
    async with client_with(running.url, CI, mode) as ci:
        listed = [t.name for t in (await ci.list_tools()).tools]
        assert agent_tools_of(listed) == ["agent_reviewer"] and "test_agent" not in listed
        outside = await ci.call_tool("agent_writer", {"prompt": "x"})
        assert outside.is_error and "client ci-bot may not call agent_writer" in \
            outside.content[0].text
        started = await ci.call_tool("job_start", {"tool": "agent_reviewer",
                                                   "arguments": {"prompt": "go"}})
        job_id = started.structured_content["job_id"]
        assert (await job_answer(ci, job_id))["state"] == "ok"
    async with client_with(running.url, DEV, mode) as dev:
        assert agent_tools((await dev.list_tools()).tools) == ["agent_reviewer", "agent_writer"]
        theirs = await dev.call_tool("job_result", {"job_id": job_id, "wait_s": 0})
        assert theirs.is_error and theirs.content[0].text == f"unknown job {job_id!r}"
    async with client_with(running.url, OWNER, mode) as owner:
        assert (await job_answer(owner, job_id))["state"] == "ok"
    async with httpx2.AsyncClient(base_url=running.url) as http:
        assert (await http.get("/ready")).status_code == 401  # clients turn the check on
    running.stop()
    rows = {row["caller"]: row["client"] for row in running.ledger_rows()}
    assert rows == {"ci-bot": "ci-bot"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_cached_listing_shows_a_client_only_its_tools_and_follows_a_config_reload(
        running, workspace, mode):
    # tools/list is served from a cache of its wire form (issue 18); the owner's listing
    # fills it first, and a client must still see only what it may call (issue 20)
    async with client_with(running.url, OWNER, mode) as owner:
        listed = [t.name for t in (await owner.list_tools()).tools]
        assert agent_tools_of(listed) == ["agent_reviewer", "agent_writer"]
        assert "test_agent" in listed
    async with client_with(running.url, CI, mode) as ci:
        for _ in range(2):
            listed = [t.name for t in (await ci.list_tools(cache_mode="bypass")).tools]
            assert agent_tools_of(listed) == ["agent_reviewer"] and "test_agent" not in listed
    config = workspace.home / "config.toml"
    config.write_text(config.read_text().replace('tools = ["reviewer"]',
                                                 'tools = ["reviewer", "writer"]'))
    with anyio.fail_after(15):
        while True:  # a new session each time: one open across the reload is not the point
            async with client_with(running.url, CI, mode) as ci:
                listed = [t.name for t in (await ci.list_tools()).tools]
            if len(agent_tools_of(listed)) == 2:
                break
            await anyio.sleep(0.1)  # the reload is another process's
    assert "test_agent" not in listed


def agent_tools_of(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith(("agent_", "skill_"))]


async def test_a_revoked_token_is_refused_after_the_config_reloads_and_none_is_logged(
        running, workspace, fake_claude):
    async with client_with(running.url, CI) as ci:
        result = await ci.call_tool("agent_reviewer", {"prompt": "go"})
        assert result.content[0].text == "Reviewed."
    quiet = {"print_toml": False, "out": io.StringIO(), "err": io.StringIO()}
    assert token_command("revoke", "ci-bot", workspace.home / "config.toml", **quiet) == 0
    ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2026-07-28"}
    async with httpx2.AsyncClient(base_url=running.url, headers=headers) as http:
        with anyio.fail_after(15):
            while (await http.post("/mcp", json=ping, headers={  # noqa: ASYNC110 - another process
                    "Authorization": f"Bearer {CI}"})).status_code != 401:
                await anyio.sleep(0.05)
        dev = await http.post("/mcp", json=ping, headers={"Authorization": f"Bearer {DEV}"})
        assert dev.status_code != 401  # only the revoked token stopped working
    assert running.stop() == 0
    assert any(e.get("event") == "config.reload" for e in running.log_events())
    for token in (OWNER, CI, DEV):
        assert not any(token in line for line in running.stderr_lines)
    usage = subprocess.run(  # noqa: ASYNC221 - the server is gone; nothing to await
        [sys.executable, "-m", "claude_mcp_bridge", "usage", "--by", "client", "--json",
         "--project-dir", str(workspace.project)],
        env={**workspace.cli_env(fake_claude),
             "CLAUDE_MCP_BRIDGE_DATA_DIR": str(running.data_dir)},
        capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(usage.stdout)
    assert [(row["key"], row["calls"]) for row in report["rows"]] == [("ci-bot", 1)]
