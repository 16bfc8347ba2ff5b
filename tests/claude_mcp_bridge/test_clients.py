"""Clients: tokens known by their hash, and ceilings that hold (budget, tools, permissions,
concurrency, other clients' jobs and answers)."""

from __future__ import annotations

import io
import tomllib

import anyio
import pytest

from claude_mcp_bridge.answers import visible_to
from claude_mcp_bridge.bridge import Admitted
from claude_mcp_bridge.clients import Clients, new_token, token_hash
from claude_mcp_bridge.config import Config
from claude_mcp_bridge.jobs import JobBoard
from claude_mcp_bridge.outcomes import Refusal
from claude_mcp_bridge.server import open_bridge
from claude_mcp_bridge.slots import Slots
from claude_mcp_bridge.tokens import token_command
from claude_mcp_bridge.tool_policy import stricter

pytestmark = pytest.mark.anyio

CI, CI_TOKEN = "ci-bot", new_token()
DEV, DEV_TOKEN = "dev", new_token()


def clients_config(**ci: object) -> dict[str, object]:
    return {"clients": {CI: {"token_sha256": token_hash(CI_TOKEN), **ci},
                        DEV: {"token_sha256": token_hash(DEV_TOKEN)}}}


def test_a_token_is_known_by_its_hash_and_a_revoked_one_by_nobody() -> None:
    config = Config.model_validate(clients_config())
    clients = Clients.from_config(config)
    assert (clients.identify(CI_TOKEN), clients.identify(DEV_TOKEN)) == (CI, DEV)
    assert clients.identify(CI_TOKEN[:-1]) is None
    assert clients.identify("") is None
    assert CI_TOKEN not in config.model_dump_json()
    revoked = Config.model_validate({"clients": {CI: {"tools": ["reviewer"]}}})
    assert Clients.from_config(revoked).identify(CI_TOKEN) is None
    assert not Clients.from_config(revoked).any_token


def test_a_client_mode_is_a_ceiling_that_never_widens() -> None:
    assert stricter("acceptEdits", "plan") == "plan"
    assert stricter(None, "plan") == "plan"
    assert stricter("plan", "acceptEdits") == "plan"
    assert stricter(None, "acceptEdits") is None  # the CLI's default is stricter already
    assert stricter("bypassPermissions", "default") == "default"


async def test_a_client_budget_refuses_naming_the_client_while_others_still_run(
        workspace, fake_claude) -> None:
    workspace.agent("reviewer")
    config = clients_config(budget={"per_call_usd": 0.6, "daily_usd": 1.0})
    with open_bridge(workspace.settings(fake_claude, config)) as bridge:
        first = await bridge.admit("agent_reviewer", {"prompt": "a"}, "http/x", CI)
        second = await bridge.admit("agent_reviewer", {"prompt": "b"}, "http/x", CI)
        other = await bridge.admit("agent_reviewer", {"prompt": "c"}, "http/x", DEV)
        owner = await bridge.admit("agent_reviewer", {"prompt": "d"}, "http/x")
        assert isinstance(first, Admitted) and first.reservation.reserved_usd == 0.6
        assert isinstance(second, Refusal) and second.kind == "budget"
        assert str(second).startswith(f"daily budget of client {CI}: $0.60 of $1.00")
        assert isinstance(other, Admitted) and isinstance(owner, Admitted)
        rows = bridge.ledger.rows("SELECT caller, client, outcome FROM calls ORDER BY rowid")
    assert [tuple(row) for row in rows] == [
        (CI, CI, "running"), (CI, CI, "refused"), (DEV, DEV, "running"),
        ("http/x", None, "running")]


async def test_a_client_cannot_call_a_tool_outside_its_list(workspace, fake_claude) -> None:
    workspace.agent("reviewer")
    workspace.agent("writer")
    workspace.skill("changelog")
    config = clients_config(tools=["reviewer", "skill_changelog"])
    with open_bridge(workspace.settings(fake_claude, config)) as bridge:
        refused = await bridge.admit("agent_writer", {"prompt": "x"}, "http/x", CI)
        by_name = await bridge.admit("agent_reviewer", {"prompt": "x"}, "http/x", CI)
        by_tool = await bridge.admit("skill_changelog", {"prompt": "x"}, "http/x", CI)
        [row] = bridge.ledger.rows("SELECT * FROM calls WHERE tool = 'agent_writer'")
    assert isinstance(refused, Refusal) and refused.kind == "policy"
    assert f"client {CI} may not call agent_writer" in str(refused)
    assert isinstance(by_name, Admitted) and isinstance(by_tool, Admitted)
    assert (row["outcome"], row["client"]) == ("refused", CI)


async def test_a_client_permission_ceiling_narrows_the_run(workspace, fake_claude) -> None:
    workspace.agent("reviewer", "tools: Read, Grep, Bash\npermissionMode: acceptEdits\n")
    config = {**clients_config(permissions={
        "mode": "plan", "allowed_tools": ["Read", "Bash"], "disallowed_tools": ["WebFetch"],
        "allow_model_override": False})}
    with open_bridge(workspace.settings(fake_claude, config)) as bridge:
        admitted = await bridge.admit("agent_reviewer", {"prompt": "x"}, "http/x", CI)
        model = await bridge.admit("agent_reviewer", {"prompt": "x", "model": "opus"},
                                   "http/x", CI)
        owner = await bridge.admit("agent_reviewer", {"prompt": "x"}, "http/x")
    assert isinstance(admitted, Admitted)
    assert admitted.plan.tools == ("Read", "Bash")
    assert admitted.plan.permission_mode == "plan"
    assert "WebFetch" in admitted.plan.disallowed_tools
    assert isinstance(model, Refusal) and f"client {CI} may not choose the model" in str(model)
    assert isinstance(owner, Admitted) and owner.plan.permission_mode == "acceptEdits"


async def test_a_client_share_of_slots_holds_its_calls_while_others_run() -> None:
    slots = Slots(max_concurrency=4, max_queue=10)
    started: list[str] = []
    queued: list[str] = []
    release = anyio.Event()

    async def call(name: str, client: str) -> None:
        async def on_queued(position: int) -> None:
            queued.append(name)
        async with slots.slot("agent_a", None, on_queued, (client, 1)):
            started.append(name)
            await release.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name, client in (("ci1", CI), ("ci2", CI), ("dev1", DEV)):
                tg.start_soon(call, name, client)
                await anyio.wait_all_tasks_blocked()
            assert (started, queued) == (["ci1", "dev1"], ["ci2"])
            release.set()
    assert started == ["ci1", "dev1", "ci2"]


async def test_a_client_cannot_read_another_clients_job_or_answer(
        workspace, fake_claude) -> None:
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "x" * 3000},
                        {"result": {"result": "x" * 3000, "total_cost_usd": 0.1}}])
    config = {**clients_config(), "limits": {"max_result_chars": 1000}}
    with open_bridge(workspace.settings(fake_claude, config)) as bridge:
        jobs = JobBoard(bridge)
        async with jobs.running():
            started = await jobs.handle("job_start", {"tool": "agent_reviewer",
                                                      "arguments": {"prompt": "go"}}, "h", CI)
            job_id = started.structured["job_id"]
            mine = await jobs.handle("job_result", {"job_id": job_id, "wait_s": 30}, "h", CI)
            for name in ("job_status", "job_result", "job_cancel"):
                theirs = await jobs.handle(name, {"job_id": job_id}, "h", DEV)
                assert theirs.is_error and theirs.text == f"unknown job {job_id!r}", name
            owners = await jobs.handle("job_status", {"job_id": job_id}, "h")
        assert mine.structured["state"] == "ok" and not owners.is_error
        assert mine.structured["full_result"] == f"bridge://results/{job_id}"
        assert visible_to(bridge.ledger, job_id, CI) and visible_to(bridge.ledger, job_id, None)
        assert not visible_to(bridge.ledger, job_id, DEV)


def test_token_add_writes_only_the_hash_keeping_the_file_and_revoke_removes_it(
        tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# mine\n[budget]\ndaily_usd = 5\n\n[clients.ci-bot]\ntools = ['a']\n")
    out, err = io.StringIO(), io.StringIO()
    assert token_command("add", CI, path, print_toml=False, out=out, err=err) == 0
    token = out.getvalue().strip()
    text = path.read_text()
    assert len(token) == 43 and token not in text and token not in err.getvalue()
    assert f'token_sha256 = "{token_hash(token)}"' in text
    assert text.startswith("# mine\n[budget]") and "tools = ['a']" in text
    assert Clients.from_config(Config.model_validate(tomllib.loads(text))).identify(token) == CI
    quiet = {"print_toml": False, "out": io.StringIO(), "err": io.StringIO()}
    assert token_command("revoke", CI, path, **quiet) == 0
    assert "token_sha256 =" not in path.read_text() and "tools = ['a']" in path.read_text()
    assert token_command("revoke", CI, path, **quiet) == 2
    inline = "[clients]\nci-bot = { tools = ['a'] }\n"
    path.write_text(inline)
    assert token_command("add", CI, path, **quiet) == 1
    assert path.read_text() == inline  # left alone; the TOML to paste was printed
