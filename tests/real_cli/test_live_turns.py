"""Several turns in one `claude -p` process (issue 22, live sessions): the real CLI and the fake
(``tests/fakes/fake_claude.py`` set to the same version) hold the same conversation and pass the
same assertions.

The child runs with the bridge's argv (``command.CONTROL_FLAGS``) and an ``initialize`` first;
after a ``result``, the next user message on stdin is one more turn. Found on 2.1.197 and
2.1.332 with the scripted Messages API (turns of 1000/100 and 3000/300 tokens):
- the same ``session_id``, and a new ``system/init`` before each turn's events (only its
  ``uuid`` differs); the second model request carries the first question and answer first;
- ``total_cost_usd`` adds up over the process's turns: 0.0075 then 0.03 on 2.1.197 (the second
  turn alone cost 0.0225), 0.006 then 0.024 on 2.1.332; so do ``modelUsage`` (tokens and
  ``costUSD``: 4000 input tokens after the second turn) and ``duration_api_ms``. ``usage``
  (3000), ``num_turns`` (1), ``duration_ms`` and ``permission_denials`` are the turn's own;
- ``--max-budget-usd`` caps the process: the turn that takes the total over it ends with
  ``error_max_budget_usd`` (``total_cost_usd`` the process's total, ``usage`` zero), and every
  later message gets that error at once, after an init, without a model request; the process
  stays until stdin closes. ``--max-turns`` counts each message's model turns afresh;
- a message written while a turn runs waits: that turn ends with its own result, then the
  message is answered as the next turn;
- closing stdin ends the process with 0, or 1 when its last result was an error (an error
  turn followed by a good one exits 0); with no user message at all it prints nothing, exit 0.
- Not tested here (the fake does not model it): a *new* process with ``--resume <id>`` reports
  this process's cost only on 2.1.197 (0.0225), but the whole session's on 2.1.332, earlier
  processes included (0.024, ``modelUsage`` 4000 input tokens; a third process 0.03), while
  its ``--max-budget-usd`` still counts this process's spend only (a $0.01 cap was not hit by
  a $0.006 turn whose reported total was 0.012).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from claude_mcp_bridge.command import CONTROL_FLAGS
from tests.fakes.messages_api import ScriptedModel, scripted_model
from tests.real_cli.support import PINNED_VERSION, REPO
from tests.support import INITIALIZE, LiveChild, event_kinds, user_message

pytestmark = pytest.mark.real_cli

FAKE = REPO / "tests" / "fakes" / "fake_claude.py"
ARGS = ("-p", "--output-format", "stream-json", "--verbose", *CONTROL_FLAGS)
U1 = {"input_tokens": 1000, "output_tokens": 100}
U2 = {"input_tokens": 3000, "output_tokens": 300}
"""Three times U1: the second turn costs three times the first, whatever the model's price."""
FAKE_TURNS = {"first question": [{"init": {}}, {"text": "answer one"},
                                 {"result": {}, "turn_cost_usd": 0.01}],
              "second question": [{"init": {}}, {"text": "answer two"},
                                  {"result": {}, "turn_cost_usd": 0.03}],
              "third question": [{"init": {}}, {"text": "answer three"}, {"result": {}}]}


@contextmanager
def child(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[LiveChild]:
    """A started, initialized child; killed with its group if the test leaves it running."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    try:
        live = LiveChild(proc)
        live.send(INITIALIZE)
        live.until("control_response")
        yield live
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout):
            if stream:
                with suppress(BrokenPipeError):
                    stream.close()


@contextmanager
def real(claude: Path, model: ScriptedModel, tmp_path: Path, *args: str
         ) -> Iterator[LiveChild]:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), **model.cli_env(str(home))}
    with child([str(claude), *ARGS, *args], env, tmp_path) as live:
        yield live


@contextmanager
def fake(version: str, tmp_path: Path, *args: str, script: dict[str, Any] = FAKE_TURNS
         ) -> Iterator[LiveChild]:
    (tmp_path / "records").mkdir(parents=True)
    (tmp_path / "script.json").write_text(json.dumps(script))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "FAKE_CLAUDE_VERSION": version, "FAKE_CLAUDE_SCRIPT": str(tmp_path / "script.json"),
           "FAKE_CLAUDE_RECORD_DIR": str(tmp_path / "records")}
    with child([sys.executable, str(FAKE), *ARGS, *args], env, tmp_path) as live:
        yield live


def fake_prompts(tmp_path: Path) -> list[str]:
    """The prompt of each turn the fake played (its record)."""
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    return list(record["prompts"])


def assert_two_turns(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    assert event_kinds(first) == event_kinds(second) == ["system/init", "assistant", "result"]
    assert len({e["session_id"] for e in first + second}) == 1
    one, two = first[-1], second[-1]
    assert (one["result"], two["result"]) == ("answer one", "answer two")
    assert one["total_cost_usd"] > 0
    assert two["total_cost_usd"] == pytest.approx(4 * one["total_cost_usd"])  # 1 + 3
    assert (one["num_turns"], two["num_turns"]) == (1, 1)
    [(_, totals)] = two["modelUsage"].items()
    assert totals["costUSD"] == pytest.approx(two["total_cost_usd"])
    assert totals["inputTokens"] == one["usage"]["input_tokens"] + two["usage"]["input_tokens"]
    assert two["duration_api_ms"] >= one["duration_api_ms"]


def test_two_turns_in_one_process_keep_the_session_and_add_up_the_cost(
        claude_bin, cli_version, tmp_path):
    with scripted_model([{"text": "answer one", "usage": U1},
                         {"text": "answer two", "usage": U2}]) as model:
        with real(claude_bin, model, tmp_path / "real") as live:
            first, second = live.turn("first question"), live.turn("second question")
            assert live.close() == 0
        assert_two_turns(first, second)
        assert second[-1]["usage"]["input_tokens"] == U2["input_tokens"]  # the turn's own
        asked = model.turn_requests[1].message_text
        order = [asked.find(s) for s in ("first question", "answer one", "second question")]
        assert -1 not in order and order == sorted(order)  # the earlier turn went along
    with fake(cli_version, tmp_path / "fake") as live:
        first, second = live.turn("first question"), live.turn("second question")
        assert live.close() == 0
    assert_two_turns(first, second)
    assert fake_prompts(tmp_path / "fake") == ["first question", "second question"]


def assert_over_budget(turns: list[list[dict[str, Any]]], budget: str, version: str) -> None:
    one, two, three = (turn[-1] for turn in turns)
    assert one["subtype"] == "success"
    assert (two["subtype"], two["is_error"]) == ("error_max_budget_usd", True)
    assert two["total_cost_usd"] == pytest.approx(4 * one["total_cost_usd"])
    assert two["errors"] == [f"Reached maximum budget (${budget})"]
    assert two["usage"]["input_tokens"] == 0
    assert two.get("terminal_reason") == (None if version == PINNED_VERSION
                                          else "budget_exhausted")
    assert event_kinds(turns[2]) == ["system/init", "result"]  # no model turn
    assert (three["subtype"], three["stop_reason"]) == ("error_max_budget_usd", None)
    assert three["total_cost_usd"] == two["total_cost_usd"]


def test_the_budget_caps_the_process_not_the_turn(claude_bin, cli_version, tmp_path):
    prompts = ("first question", "second question", "third question")
    with scripted_model([{"text": "answer one", "usage": U1}]) as model:
        with real(claude_bin, model, tmp_path / "probe") as live:
            cost = live.turn("first question")[-1]["total_cost_usd"]  # this version's price
            live.close()
        budget = repr(round(3.5 * cost, 6))  # over the second turn alone, under both turns
        model.add({"text": "answer one", "usage": U1}, {"text": "answer two", "usage": U2})
        asked = len(model.turn_requests)
        with real(claude_bin, model, tmp_path / "real", "--max-budget-usd", budget) as live:
            turns = [live.turn(p) for p in prompts]
            assert live.close() == 1
        assert len(model.turn_requests) - asked == 2
    assert_over_budget(turns, budget, cli_version)
    with fake(cli_version, tmp_path / "fake", "--max-budget-usd", "0.035") as live:
        turns = [live.turn(p) for p in prompts]
        assert live.close() == 1
    assert_over_budget(turns, "0.035", cli_version)


def test_a_message_written_during_a_turn_is_answered_after_its_result(
        claude_bin, cli_version, tmp_path):
    with scripted_model([{"text": "answer one", "hold": "first"},
                         {"text": "answer two"}]) as model:
        with real(claude_bin, model, tmp_path / "real") as live:
            live.send(user_message("first question"))
            assert model.wait_for_turns(1)
            live.send(user_message("second question"))  # the model is still "thinking"
            model.release("first")
            first, second = live.until("result"), live.until("result")
            assert live.close() == 0
        assert "second question" not in model.turn_requests[0].message_text
        asked = model.turn_requests[1].message_text
        order = [asked.find(s) for s in ("first question", "answer one", "second question")]
        assert -1 not in order and order == sorted(order)
    assert (first[-1]["result"], second[-1]["result"]) == ("answer one", "answer two")
    assert event_kinds(second) == ["system/init", "assistant", "result"]
    release = tmp_path / "release"
    script = {**FAKE_TURNS, "first question": [{"init": {}}, {"text": "answer one"},
                                               {"until": str(release)}, {"result": {}}]}
    with fake(cli_version, tmp_path / "fake", script=script) as live:
        live.send(user_message("first question"))
        live.until("assistant")
        live.send(user_message("second question"))
        release.touch()
        fake_first, fake_second = live.until("result"), live.until("result")
        assert live.close() == 0
    assert (fake_first[-1]["result"], fake_second[-1]["result"]) == ("answer one", "answer two")
    assert event_kinds(fake_second) == event_kinds(second)


def test_closing_stdin_before_any_message_prints_nothing_and_exits_0(
        claude_bin, cli_version, tmp_path):
    with scripted_model() as model, real(claude_bin, model, tmp_path / "real") as live:
        assert live.close() == 0
        assert model.turn_requests == []
    with fake(cli_version, tmp_path / "fake") as live:
        assert live.close() == 0
