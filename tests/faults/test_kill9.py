"""A bridge killed by SIGKILL mid-call (issue 13, contracts 1, 2 and 7): its children end
with it, and the next bridge that opens the ledger charges every interrupted call once,
never less than it cost."""

from __future__ import annotations

import signal

import httpx2

from tests.faults.harness import (
    assert_all_end,
    assert_ledger_sound,
    assert_no_traceback,
    call_request,
    config_text,
    ledger_rows,
    run_cli,
    start_client,
    start_http,
    start_stdio,
    wait_for,
    wait_spawned,
)
from tests.support import pid_alive

CAP = 0.5
DAILY = 5.0
REPORTED = 0.3
CONFIG = config_text(
    budget={"daily_usd": DAILY, "per_call_usd": CAP},
    limits={"result_grace_s": 120, "kill_grace_s": 1},
    ledger={"store_prompts": True},
    reload={"enabled": False},
    # a child that gave its result and runs on is a call in flight here, not a live session
    warm={"live_sessions": 0},
)


def busy(*, reported: float | None = None, stubborn: bool = False) -> list[dict]:
    """A call that leaks a sleeper in its group and one that left it (setsid, deaf to
    SIGTERM), then works forever; with ``reported``, it gives its result (and so its cost)
    first and then does not exit."""
    steps: list[dict] = [{"init": {}}, {"spawn": "sleeper"}, {"spawn": "setsid_sleeper"},
                         {"text": "busy"}]
    if reported is not None:
        steps.append({"result": {"result": "done", "total_cost_usd": reported}})
    steps.append({"hang": "ignore_term" if stubborn else True})
    return steps


SCRIPT = {"one": busy(), "two": busy(stubborn=True), "three": busy(reported=REPORTED),
          "job": busy()}


def http_calls_in_flight(workspace, fake_claude, data_dir, bridges, clients):
    """An HTTP bridge running three calls (the third has reported its cost) and a job."""
    workspace.agent("reviewer")
    fake_claude.script(SCRIPT)
    bridge = start_http(workspace, fake_claude, data_dir, config=CONFIG)
    bridges.append(bridge)
    client = start_client(bridge.url, ["one", "two", "three"], job="job")
    clients.append(client)
    client.read_until('"job"')  # the job was started
    client.read_until("finished")  # the bridge read the third call's result and cost
    pids = wait_spawned(fake_claude, calls=4, per_call=2)
    return bridge, client, pids


def expected_charges(data_dir, reported_by: str = "three") -> dict[str, float]:
    return {row["id"]: REPORTED if row["prompt"] == reported_by else CAP
            for row in ledger_rows(data_dir)}


def test_sigkill_over_http_ends_every_child_of_three_calls_and_a_job(
        workspace, fake_claude, data_dir, bridges, clients):
    bridge, _, pids = http_calls_in_flight(workspace, fake_claude, data_dir, bridges, clients)
    bridge.signal(signal.SIGKILL)
    assert bridge.wait(timeout=10) == -signal.SIGKILL
    # no other bridge opens the ledger yet: the children must end on their own account
    assert_all_end(pids, why="after the HTTP bridge was SIGKILLed")
    recovered = run_cli(workspace, fake_claude, data_dir, "usage", "--json", config=CONFIG)
    assert recovered.returncode == 0, recovered.stderr
    assert_ledger_sound(ledger_rows(data_dir), calls=4, reported=[REPORTED], budget_usd=DAILY,
                        caps=expected_charges(data_dir))
    assert_no_traceback(recovered.stderr)


def test_sigkill_over_stdio_ends_every_child_of_the_calls_in_flight(
        workspace, fake_claude, data_dir, bridges):
    workspace.agent("reviewer")
    fake_claude.script({"one": busy(), "two": busy(stubborn=True)})
    bridge = start_stdio(workspace, fake_claude, data_dir, config=CONFIG)
    bridges.append(bridge)
    bridge.send(call_request(1, "agent_reviewer", {"prompt": "one"}))
    bridge.send(call_request(2, "agent_reviewer", {"prompt": "two"}))
    pids = wait_spawned(fake_claude, calls=2, per_call=2)
    bridge.signal(signal.SIGKILL)
    assert bridge.wait(timeout=10) == -signal.SIGKILL
    assert_all_end(pids, why="after the stdio bridge was SIGKILLed")
    recovered = run_cli(workspace, fake_claude, data_dir, "usage", "--json", config=CONFIG)
    assert recovered.returncode == 0, recovered.stderr
    assert_ledger_sound(ledger_rows(data_dir), calls=2, budget_usd=DAILY,
                        caps=expected_charges(data_dir))


def test_the_next_usage_run_charges_each_interrupted_call_its_cost_or_its_cap(
        workspace, fake_claude, data_dir, bridges, clients):
    bridge, _, pids = http_calls_in_flight(workspace, fake_claude, data_dir, bridges, clients)
    bridge.signal(signal.SIGKILL)
    bridge.wait(timeout=10)
    recovered = run_cli(workspace, fake_claude, data_dir, "usage", "--json", config=CONFIG)
    assert recovered.returncode == 0, recovered.stderr
    rows = ledger_rows(data_dir)
    assert {row["outcome"] for row in rows} == {"interrupted"}
    assert_ledger_sound(rows, calls=4, reported=[REPORTED], budget_usd=DAILY,
                        caps=expected_charges(data_dir))
    assert_no_traceback(recovered.stderr)
    # whatever survived the bridge, the recovering bridge ends (groups of dead owners)
    assert_all_end(pids, why="after `usage` recovered the dead bridge's calls")


async def test_a_restarted_serve_recovers_the_killed_bridges_calls_and_is_ready(
        workspace, fake_claude, data_dir, bridges):
    workspace.agent("reviewer")
    fake_claude.script({"one": busy(), "two": busy(reported=REPORTED)})
    first = start_stdio(workspace, fake_claude, data_dir, config=CONFIG)
    bridges.append(first)
    first.send(call_request(1, "agent_reviewer", {"prompt": "one"}))
    first.send(call_request(2, "agent_reviewer", {"prompt": "two"}))
    pids = wait_spawned(fake_claude, calls=2, per_call=2)
    wait_for("the bridge read the second call's result", lambda: any(
        "finished" in str(m.get("params", {}).get("message", "")) for m in first.responses(0.05)))
    first.signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = start_http(workspace, fake_claude, data_dir, config=CONFIG)
    bridges.append(second)
    async with httpx2.AsyncClient(base_url=second.url) as http:
        ready = (await http.get("/ready")).json()
    assert ready["ready"] is True, ready
    assert ready["calls_in_flight"] == 0
    assert ready["budget_left_today_usd"] <= DAILY - CAP  # the unknown cost is charged
    assert_all_end(pids, why="after a new bridge opened the ledger")
    assert_ledger_sound(ledger_rows(data_dir), calls=2, reported=[REPORTED], budget_usd=DAILY,
                        caps={row["id"]: REPORTED if row["prompt"] == "two" else CAP
                              for row in ledger_rows(data_dir)})
    assert_no_traceback(second.stderr())


def test_sigkill_ends_the_live_sessions_the_bridge_held(workspace, fake_claude, data_dir,
                                                       bridges):
    # An idle live process (issue 22) belongs to no call in flight: only the watchdog
    # knows it when the bridge dies.
    workspace.agent("reviewer")
    fake_claude.script({"one": [{"init": {}}, {"spawn": "setsid_sleeper"},
                                {"result": {"result": "done", "total_cost_usd": REPORTED}}]})
    live = config_text(limits={"kill_grace_s": 1}, reload={"enabled": False},
                       warm={"live_sessions": 2})
    bridge = start_stdio(workspace, fake_claude, data_dir, config=live)
    bridges.append(bridge)
    bridge.send(call_request(1, "agent_reviewer", {"prompt": "one"}))
    wait_for("the call's answer", lambda: any(m.get("id") == 1 and "result" in m
                                              for m in bridge.responses(0.05)))
    pids = wait_spawned(fake_claude, calls=1, per_call=1)
    assert all(pid_alive(pid) for pid in pids), "the session's process waits, alive"
    bridge.signal(signal.SIGKILL)
    assert bridge.wait(timeout=10) == -signal.SIGKILL
    assert_all_end(pids, why="after the bridge holding a live session was SIGKILLed")
    [row] = ledger_rows(data_dir)
    if row["outcome"] == "running":  # answered before its settlement was written (issue 18)
        assert row["reported_usd"] == REPORTED
        recovered = run_cli(workspace, fake_claude, data_dir, "usage", "--json", config=live)
        assert recovered.returncode == 0, recovered.stderr
        [row] = ledger_rows(data_dir)
        assert row["outcome"] == "interrupted"
    assert row["outcome"] in ("ok", "interrupted") and row["cost_usd"] == REPORTED
    assert not row["reserved_usd"]
