"""Start-and-poll jobs: lifecycle, reconnect, restart, cancel, and policy."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio
import mcp_types as types
import pytest
from mcp import Client

from claude_mcp_bridge.jobs import JobBoard
from claude_mcp_bridge.server import create_server, open_bridge
from tests.support import pid_alive

pytestmark = pytest.mark.anyio

SLOW = [{"init": {}}, {"text": "working on it"}, {"sleep": 1.0},
        {"result": {"result": "Job done.", "total_cost_usd": 0.3}}]


@asynccontextmanager
async def serving(settings) -> AsyncIterator[tuple[Client, object]]:
    with open_bridge(settings) as bridge:
        jobs = JobBoard(bridge)
        async with jobs.running(), Client(create_server(bridge, jobs)) as client:
            yield client, bridge


async def test_a_job_returns_its_id_at_once_then_its_status_and_result(
        workspace, fake_claude, tmp_path):
    workspace.agent("reviewer")
    release = tmp_path / "release"
    fake_claude.script([{"init": {}}, {"text": "working on it"}, {"until": str(release)},
                        {"result": {"result": "Job done.", "total_cost_usd": 0.3}}])
    async with serving(workspace.settings(fake_claude)) as (client, bridge):
        # The agent cannot finish before ``release`` exists: the answer came first.
        started = await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "review"}})
        job_id = started.structured_content["job_id"]
        assert started.structured_content["state"] == "running"
        status = await _status_once(client, job_id, lambda s: "wrote 3 words" in s.get(
            "recent_events", []))
        assert status.structured_content["state"] == "running"
        assert "wrote 3 words" in status.structured_content["recent_events"]
        assert status.structured_content["elapsed_s"] > 0
        early = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0.05})
        assert "still running" in early.content[0].text and not early.is_error
        release.touch()
        done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 30})
        assert done.content[0].text == "Job done."
        assert done.structured_content["cost_usd"] == 0.3
        final = await client.call_tool("job_status", {"job_id": job_id})
        assert final.structured_content["state"] == "ok"
        assert bridge.ledger.get(job_id)["outcome"] == "ok"


async def test_the_result_is_collected_from_another_connection(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script(SLOW)
    with open_bridge(workspace.settings(fake_claude)) as bridge:
        jobs = JobBoard(bridge)
        async with jobs.running():
            async with Client(create_server(bridge, jobs)) as first:
                started = await first.call_tool(
                    "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "go"}})
            job_id = started.structured_content["job_id"]
            async with Client(create_server(bridge, jobs), mode="legacy") as second:
                done = await second.call_tool("job_result", {"job_id": job_id, "wait_s": 30})
    assert done.content[0].text == "Job done."


async def test_after_a_restart_a_finished_job_keeps_its_answer_and_a_cut_one_says_so(
        workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.agent("slowpoke")
    fake_claude.script({"default": SLOW,
                        "hang": [{"init": {}}, {"text": "stuck"}, {"hang": True}]})
    settings = workspace.settings(fake_claude, {"limits": {"kill_grace_s": 1}})
    async with serving(settings) as (client, _):
        finished = (await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "go"}}
        )).structured_content["job_id"]
        await client.call_tool("job_result", {"job_id": finished, "wait_s": 30})
        unfinished = (await client.call_tool(
            "job_start", {"tool": "agent_slowpoke", "arguments": {"prompt": "hang"}}
        )).structured_content["job_id"]
        with anyio.fail_after(10):
            while len(fake_claude.records()) < 2:  # noqa: ASYNC110 - another process
                await anyio.sleep(0.05)
    # the server is gone (its job runner stopped the unfinished job); a new one starts
    async with serving(settings) as (client, _):
        kept = await client.call_tool("job_result", {"job_id": finished, "wait_s": 0})
        lost = await client.call_tool("job_result", {"job_id": unfinished, "wait_s": 0})
        status = await client.call_tool("job_status", {"job_id": unfinished})
    assert kept.content[0].text == "Job done." and not kept.is_error
    assert lost.is_error and "shutting down" in lost.content[0].text
    assert lost.structured_content["state"] == "cancelled"  # stopped by the shutdown
    assert status.structured_content["state"] == "cancelled"
    assert not any(pid_alive(r["pid"]) for r in fake_claude.records())


async def test_job_cancel_stops_the_agent(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    settings = workspace.settings(fake_claude, {"limits": {"kill_grace_s": 1}})
    async with serving(settings) as (client, _):
        job_id = (await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "go"}}
        )).structured_content["job_id"]
        with anyio.fail_after(10):
            while not fake_claude.spawned_pids():  # noqa: ASYNC110 - another process
                await anyio.sleep(0.05)
        cancelled = await client.call_tool("job_cancel", {"job_id": job_id})
        result = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0})
    assert cancelled.structured_content["state"] == "cancelled"
    assert "cancelled with job_cancel" in result.content[0].text
    pids = [r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids()
    assert not any(pid_alive(p) for p in pids)


async def test_jobs_obey_the_budget_and_the_depth_guard(workspace, fake_claude):
    workspace.agent("reviewer")
    budget = {"budget": {"daily_usd": 0.5, "per_call_usd": 0.4}}
    async with serving(workspace.settings(fake_claude, budget)) as (client, _):
        fake_claude.script([{"init": {}}, {"sleep": 0.5}, {"result": {"total_cost_usd": 0.4}}])
        first = await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "one"}})
        second = await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "two"}})
        assert not first.is_error
        assert second.is_error and "daily" in second.content[0].text
        assert "--max-budget-usd=0.4" in (await _argv_of_first_run(fake_claude))
    deep = replace(workspace.settings(fake_claude), depth=3)
    async with serving(deep) as (client, _):
        refused = await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": "go"}})
    assert refused.is_error and "recursion guard" in refused.content[0].text


@pytest.mark.parametrize(("name", "arguments", "problem"), [
    ("job_start", {"tool": "agent_reviewer"}, "invalid arguments"),
    ("job_start", {"tool": "agent_reviewer", "arguments": {"prompt": ""}}, "prompt"),
    ("job_status", {}, "job_id"),
    ("job_status", {"job_id": "nope"}, "unknown job"),
    ("job_result", {"job_id": "nope", "wait_s": "soon"}, "wait_s"),
])
async def test_bad_job_arguments_are_clear_errors(workspace, fake_claude, name, arguments,
                                                  problem):
    workspace.agent("reviewer")
    async with serving(workspace.settings(fake_claude)) as (client, _):
        result = await client.call_tool(name, arguments)
    assert result.is_error and problem in result.content[0].text
    assert fake_claude.records() == []


async def test_job_tools_can_be_turned_off(workspace, fake_claude):
    workspace.agent("reviewer")
    settings = workspace.settings(fake_claude, {"catalog": {"jobs": False, "test_tool": False}})
    async with serving(settings) as (client, _):
        names = [t.name for t in (await client.list_tools()).tools]
    assert names == ["agent_reviewer"]


async def _argv_of_first_run(fake_claude) -> list[str]:
    with anyio.fail_after(10):
        while not fake_claude.records():  # noqa: ASYNC110 - another process
            await anyio.sleep(0.05)
    return fake_claude.records()[0]["argv"]


async def test_a_finished_job_is_not_held_in_memory(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"result": {"result": "quick"}}])
    async with serving(workspace.settings(fake_claude)) as (client, _):
        jobs = [(await client.call_tool(
            "job_start", {"tool": "agent_reviewer", "arguments": {"prompt": f"n{i}"}}
        )).structured_content["job_id"] for i in range(3)]
        answers = [await client.call_tool("job_result", {"job_id": j, "wait_s": 30})
                   for j in jobs]
        # a job leaves memory in the same step that wakes job_result (no await between)
        status = await client.call_tool("job_status", {"job_id": jobs[0]})
    assert [a.content[0].text for a in answers] == ["quick"] * 3
    assert status.structured_content["state"] == "ok"
    assert "recent_events" not in status.structured_content  # from the ledger, not memory


async def _status_once(client, job_id: str, ready) -> types.CallToolResult:
    """The job's status once ``ready(structured status)`` holds (bounded)."""
    with anyio.fail_after(15):
        while True:
            status = await client.call_tool("job_status", {"job_id": job_id})
            if ready(status.structured_content):
                return status
            await anyio.sleep(0.02)


TOUCH = [{"init": {}},
         {"tool_use": {"name": "Bash", "input": {"command": "touch made.txt"}}},
         {"write": {"path": "made.txt", "content": "x"}},
         {"tool_result": {"content": "(Bash completed with no output)"}},
         {"text": "done"}, {"result": {}}]


@pytest.mark.parametrize(("decision", "made"), [("allow_once", True), ("deny", False)])
async def test_a_job_shows_its_question_and_job_approve_answers_it(
        workspace, fake_claude, decision, made):
    workspace.agent("builder", "tools: Bash\n")
    fake_claude.script(TOUCH)
    settings = workspace.settings(fake_claude, {"permissions": {
        "rules": [{"tool": "Bash", "decision": "ask"}]}})
    async with serving(settings) as (client, bridge):
        started = await client.call_tool(
            "job_start", {"tool": "agent_builder", "arguments": {"prompt": "build"}})
        job_id = started.structured_content["job_id"]
        status = await _status_once(client, job_id, lambda s: s.get("waiting_for"))
        waiting = status.structured_content["waiting_for"]
        assert waiting["tool"] == "Bash" and waiting["summary"] == "Bash: `touch made.txt`"
        assert "job_approve" in status.content[0].text
        wrong = await client.call_tool("job_approve", {
            "job_id": job_id, "question_id": "nope", "decision": "allow_once"})
        assert wrong.is_error and "does not wait for question 'nope'" in wrong.content[0].text
        answered = await client.call_tool("job_approve", {
            "job_id": job_id, "question_id": waiting["question_id"], "decision": decision,
            "reason": "not in this job"})
        assert not answered.is_error, answered.content[0].text
        done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 30})
        assert done.structured_content["state"] == "ok"
        rows = [dict(r) for r in bridge.ledger.rows("SELECT * FROM decisions")]
    assert (workspace.project / "made.txt").exists() is made
    assert rows[0]["decider"] == "person"
    assert rows[0]["decision"] == ("allow" if made else "deny")
    if not made:
        assert "not in this job" in rows[0]["reason"]
