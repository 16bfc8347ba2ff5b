"""A call answers before its settlement is written (issue 18): a bridge killed in between
leaves the row ``running`` with its reservation held, and the next bridge charges exactly
the cost the child reported. That note is queued as the result arrives, so its write
overlaps the child's exit, and made before the answer: here it is slow, and the bridge is
killed right after answering."""

from __future__ import annotations

import signal

from tests.faults.harness import (
    assert_ledger_sound,
    assert_no_traceback,
    call_request,
    config_text,
    ledger_rows,
    run_cli,
    start_stdio,
    wait_for,
)

CAP = 0.5
DAILY = 5.0
REPORTED = 0.3
CONFIG = config_text(budget={"daily_usd": DAILY, "per_call_usd": CAP},
                     reload={"enabled": False})
NEVER_SETTLES = (
    "-c", "import time, claude_mcp_bridge.ledger as ledger; "
    "ledger.Ledger.settle = lambda self, *args, **kwargs: None; "  # the crash comes first
    "note = ledger.Ledger.note_cost; "  # a slow disk: the note is written after 1 s
    "ledger.Ledger.note_cost = lambda self, *args: (time.sleep(1), note(self, *args)); "
    "from claude_mcp_bridge.cli import main; raise SystemExit(main())")


def test_a_bridge_killed_after_answering_before_settling_is_charged_what_was_reported(
        workspace, fake_claude, data_dir, bridges):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "done"},
                        {"result": {"result": "done", "total_cost_usd": REPORTED}}])
    bridge = start_stdio(workspace, fake_claude, data_dir, config=CONFIG, python=NEVER_SETTLES)
    bridges.append(bridge)
    bridge.send(call_request(1, "agent_reviewer", {"prompt": "go"}))
    answered = []
    wait_for("the call's answer", lambda: answered.extend(
        m for m in bridge.responses(0.05) if m.get("id") == 1) or answered)
    assert answered[0]["result"]["structuredContent"]["cost_usd"] == REPORTED
    [row] = ledger_rows(data_dir)
    assert row["outcome"] == "running" and row["reserved_usd"] == CAP  # held, not released
    bridge.signal(signal.SIGKILL)
    bridge.wait(timeout=10)
    recovered = run_cli(workspace, fake_claude, data_dir, "usage", "--json", config=CONFIG)
    assert recovered.returncode == 0, recovered.stderr
    rows = ledger_rows(data_dir)
    assert [row["outcome"] for row in rows] == ["interrupted"]
    assert_ledger_sound(rows, calls=1, reported=[REPORTED], budget_usd=DAILY,
                        caps={rows[0]["id"]: REPORTED})
    assert_no_traceback(recovered.stderr)
