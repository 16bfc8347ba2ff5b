"""Several bridges behind one URL: with ``[http] stateless = true`` and one shared ledger,
any replica answers any request, and a job started on one is collected from another."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx2
import pytest
from mcp import Client

from tests.claude_mcp_bridge.test_http import Running, start

pytestmark = pytest.mark.anyio

STATELESS = "[http]\nstateless = true\n"
HEADERS = {"Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-06-18"}


@pytest.fixture
def replicas(workspace, fake_claude) -> Iterator[tuple[Running, Running]]:
    """Two processes on one data dir (one ledger file, one folder of kept answers)."""
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "Reviewed."},
                        {"result": {"result": "Reviewed.", "total_cost_usd": 0.05}}])
    first = start(workspace, fake_claude, config=STATELESS)
    second = start(workspace, fake_claude, config=STATELESS)
    yield first, second
    first.close()
    second.close()


def sse_result(body: str) -> dict:
    """The JSON-RPC result in an SSE response body."""
    for line in body.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[len("data:"):])
            if "result" in message or "error" in message:
                return message
    raise AssertionError(f"no JSON-RPC answer in {body!r}")


async def test_requests_without_a_session_go_to_any_replica_sharing_one_ledger(replicas):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "agent_reviewer", "arguments": {"prompt": "go"}}}
    async with httpx2.AsyncClient(headers=HEADERS, timeout=30) as http:
        for replica in replicas:  # a 2025-era request, no initialize, no session id
            answer = await http.post(replica.url + "/mcp", json=call)
            assert answer.status_code == 200
            assert "mcp-session-id" not in answer.headers
            result = sse_result(answer.text)["result"]
            assert result["content"][0]["text"] == "Reviewed."
    for replica in replicas:  # 2026-era requests carry no session in any mode
        async with Client(replica.url + "/mcp") as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "again"})
            assert result.content[0].text == "Reviewed."
    first, second = replicas
    assert first.stop() == 0 and second.stop() == 0
    rows = first.ledger_rows()
    assert [row["outcome"] for row in rows] == ["ok"] * 4
    assert len({row["owner"] for row in rows}) == 2  # each replica ran its share


async def test_a_job_started_on_one_replica_is_collected_from_another(replicas):
    first, second = replicas
    async with Client(first.url + "/mcp") as client:
        started = await client.call_tool("job_start", {"tool": "agent_reviewer",
                                                       "arguments": {"prompt": "go"}})
    job_id = started.structured_content["job_id"]
    async with Client(second.url + "/mcp") as client:
        with anyio.fail_after(30):
            while True:
                done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 1})
                if done.structured_content["state"] != "running":
                    break
                await anyio.sleep(0.1)
    assert (done.structured_content["state"], done.content[0].text) == ("ok", "Reviewed.")
