"""Running cases through the fake CLI: working copies, checks, repeats, the judge, budgets."""

import json
from pathlib import Path

import anyio
import pytest

from claude_mcp_bridge.agent_tests.history import case_records
from claude_mcp_bridge.agent_tests.judge import FIRST_LINE, VERDICT_SCHEMA
from claude_mcp_bridge.agent_tests.summary import summarize
from claude_mcp_bridge.ledger import Ledger
from tests.agent_tests.conftest import Said, run_tests, write_tests

pytestmark = pytest.mark.anyio


def argv_value(record, flag):
    return next((a.split("=", 1)[1] for a in record["argv"] if a.startswith(flag + "=")), None)


def calls(settings):
    with Ledger.open(settings.ledger_path) as ledger:
        return ledger.rows("SELECT * FROM calls ORDER BY rowid")


async def test_a_case_runs_in_a_copy_of_its_fixture_and_the_original_stays(workspace,
                                                                           fake_claude):
    # declared: an undeclared tool would be a question, and no one answers in a test run
    workspace.agent("reviewer", "tools: Write\n")
    fixture = workspace.project / ".claude" / "agent-tests" / "fixtures" / "repo"
    fixture.mkdir(parents=True)
    (fixture / "notes.md").write_text("original")
    write_tests(workspace.project, "reviewer", """
        cases:
          - name: edits
            prompt: Fix the notes
            fixture: fixtures/repo
            checks:
              - file_changed: [notes.md, out/report.md]
              - file_contains: {path: notes.md, text: rewritten}
              - file_exists: out/report.md
    """)
    fake_claude.script([
        {"init": {}}, {"tool_use": {"name": "Write", "input": {"file_path": "notes.md"}}},
        {"write": {"path": "notes.md", "content": "rewritten"}},
        {"write": {"path": "out/report.md", "content": "done"}},
        {"tool_result": {"content": "ok"}}, {"text": "Rewrote the notes."}, {"result": {}}])
    suite = await run_tests(workspace.settings(fake_claude))
    [run] = suite.runs
    assert run.status == "passed", run.message
    assert (fixture / "notes.md").read_text() == "original"
    assert sorted(p.name for p in fixture.iterdir()) == ["notes.md"]
    cwd = Path(fake_claude.last()["cwd"])
    assert cwd.name == "repo" and cwd != fixture.resolve()
    assert not await anyio.Path(cwd).exists()  # the working copy is removed after the run


async def test_a_case_without_fixture_runs_in_an_empty_scratch_folder(workspace, fake_claude):
    workspace.agent("reviewer")
    (workspace.project / "precious.txt").write_text("keep")
    write_tests(workspace.project, "reviewer", """
        cases:
          - {name: looks, prompt: Look around, checks: [{file_exists: precious.txt}]}
    """)
    suite = await run_tests(workspace.settings(fake_claude))
    [run] = suite.runs
    assert (run.status, run.failed_check) == ("failed", "file_exists")
    cwd = Path(fake_claude.last()["cwd"])
    assert cwd != workspace.project.resolve() and cwd.name == "work"


async def test_tools_and_structured_output_come_from_the_stream(workspace, fake_claude):
    workspace.agent("reviewer", "tools: Read, Grep\n")
    schema = {"type": "object", "required": ["bugs"],
              "properties": {"bugs": {"type": "integer"}}}
    write_tests(workspace.project, "reviewer", f"""
        cases:
          - name: structured
            prompt: Count the bugs
            checks:
              - json_schema: {json.dumps(schema)}
              - tools_used: [Read, Grep]
              - tools_not_used: Bash
              - turns_at_most: 3
              - cost_at_most: 0.05
    """)
    fake_claude.script([
        {"init": {}}, {"tool_use": {"name": "Read", "input": {}}},
        {"tool_result": {"content": "x"}}, {"tool_use": {"name": "Grep", "input": {}}},
        {"tool_result": {"content": "y"}}, *structured({"bugs": 2}, 0.04)[1:]])
    suite = await run_tests(workspace.settings(fake_claude))
    [run] = suite.runs
    assert run.status == "passed", run.message
    assert (run.num_turns, run.cost_usd) == (3, 0.04)
    argv = fake_claude.last()["argv"]
    assert json.loads(argv_value(fake_claude.last(), "--json-schema")) == schema
    assert json.loads(argv_value(fake_claude.last(), "--agents"))["reviewer"]["tools"] == \
        ["Read", "Grep", "StructuredOutput"]
    assert "--tools=Read,Grep,StructuredOutput" in argv
    assert "--allowedTools" not in argv  # the bridge allows declared tools when asked
    assert [c.check for c in run.checks] == \
        ["json_schema", "tools_used", "tools_not_used", "turns_at_most", "cost_at_most"]


async def test_a_failing_check_fails_the_case_and_says_which(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", """
        cases:
          - name: picky
            prompt: Review
            checks: [{contains: Looks}, {not_contains: good}, {turns_at_most: 1}]
    """)
    fake_claude.script([{"init": {}}, {"text": "Looks good."}, {"result": {}}])
    [run] = (await run_tests(workspace.settings(fake_claude))).runs
    assert (run.status, run.failed_check) == ("failed", "not_contains")
    assert run.message == "not_contains: 'good' found in the answer (answer: 'Looks good.')"
    assert [c.passed for c in run.checks] == [True, False, True]


async def test_a_failed_run_is_an_error_with_the_cli_message(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p, checks: "
                                               "[{contains: x}]}]")
    fake_claude.script([{"init": {}}, {"result": {"is_error": True, "result": "API Error: 529"}}])
    [run] = (await run_tests(workspace.settings(fake_claude))).runs
    assert run.status == "error" and "API Error: 529" in (run.message or "")
    assert run.checks == ()


async def test_repeat_runs_each_case_n_times_and_sums_them_up(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", """
        cases:
          - {name: steady, prompt: Review, checks: [{contains: fine}]}
    """)
    answers = {1: ("All fine.", 0.01, 1000), 2: ("Broken.", 0.02, 3000),
               3: ("Fine, fine.", 0.03, 2000)}

    def script_for_attempt(message):  # runs are sequential: script each before it starts
        if message.endswith(": started"):
            text, cost, ms = answers[int(message.split("#")[1].split(":")[0])]
            fake_claude.script([{"init": {}}, {"text": text},
                                {"result": {"total_cost_usd": cost, "duration_ms": ms}}])

    said = Said(on=script_for_attempt)
    suite = await run_tests(workspace.settings(fake_claude), said=said, repeat=3)
    assert [(r.attempt, r.status) for r in suite.runs] == \
        [(1, "passed"), (2, "failed"), (3, "passed")]
    summary = summarize(suite.definitions[0].records)
    assert (summary.runs, summary.passed, summary.failed) == (3, 2, 1)
    assert summary.pass_rate == pytest.approx(2 / 3)
    assert summary.cost_usd == pytest.approx(0.06)
    assert summary.p50_ms == 2000
    assert len(fake_claude.records()) == 3
    assert "[2/3] reviewer/steady #2: FAILED in 3.0s, $0.0200 (contains: 'fine' not in the " \
           "answer (answer: 'Broken.'))" in said.messages


async def test_parallel_runs_every_case_and_keeps_their_order(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", """
        cases:
          - {name: one, prompt: one}
          - {name: two, prompt: two}
          - {name: three, prompt: three}
    """)
    suite = await run_tests(workspace.settings(fake_claude), parallel=3, repeat=2)
    assert [(r.case, r.attempt, r.status) for r in suite.runs] == [
        (case, attempt, "passed") for case in ("one", "two", "three") for attempt in (1, 2)]
    assert sorted(r["prompt"] for r in fake_claude.records()) == \
        ["one", "one", "three", "three", "two", "two"]


async def test_every_run_is_a_ledger_call_and_a_test_record(workspace, fake_claude):
    path = workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p}]")
    settings = workspace.settings(fake_claude)
    suite = await run_tests(settings, repeat=2)
    [call_a, call_b] = calls(settings)
    assert {call_a["tool"], call_a["outcome"]} == {"agent_reviewer", "ok"}
    assert call_a["caller"].startswith("test ")
    with Ledger.open(settings.ledger_path) as ledger:
        records = case_records(ledger, suite.run_id)
    assert [(r.case_name, r.attempt, r.status) for r in records] == \
        [("a", 1, "passed"), ("a", 2, "passed")]
    import hashlib
    assert {r.definition_sha256 for r in records} == \
        {hashlib.sha256(path.read_bytes()).hexdigest()}
    assert {r.call_id for r in records} == {call_a["id"], call_b["id"]}


# ---- the judge
def structured(value, cost=0.002):
    """What the real CLI prints when the model answers a --json-schema: a StructuredOutput
    tool call, its result, and a result event carrying the value."""
    return [{"init": {}}, {"tool_use": {"name": "StructuredOutput", "input": value}},
            {"tool_result": {"content": "Structured output provided successfully"}},
            {"result": {"structured_output": value, "result": json.dumps(value),
                        "total_cost_usd": cost}}]


def judge_script(verdict, cost=0.002):
    return structured(verdict, cost)


JUDGED = """
    cases:
      - name: judged
        prompt: Review paging.py
        checks: [{contains: paging}]
        judge:
          rubric: Names the off-by-one.
          pass_score: 0.6
"""


async def test_the_judge_scores_the_answer_against_the_rubric(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", JUDGED)
    fake_claude.script({
        FIRST_LINE: judge_script({"score": 0.9, "reasons": "Names it."}),
        "default": [{"init": {}}, {"text": "paging.py:3 off-by-one"}, {"result": {}}]})
    settings = workspace.settings(fake_claude)
    [run] = (await run_tests(settings)).runs
    assert run.status == "passed", run.message
    assert (run.judge_score, run.judge_reasons, run.judge_cost_usd) == (0.9, "Names it.", 0.002)
    assert run.checks[-1].check == "judge" and run.checks[-1].detail.startswith("score 0.90")
    agent_run, judge_run = fake_claude.records()
    assert "--agent=bridge-judge" in judge_run["argv"]
    # no tools but the one the CLI answers a --json-schema with
    assert json.loads(argv_value(judge_run, "--agents"))["bridge-judge"]["tools"] == \
        ["StructuredOutput"]
    assert json.loads(argv_value(judge_run, "--json-schema")) == VERDICT_SCHEMA
    for part in ("Names the off-by-one.", "Review paging.py", "paging.py:3 off-by-one"):
        assert part in judge_run["prompt"]
    assert judge_run["cwd"] == agent_run["cwd"]  # the judge may look at the working copy
    assert [c["tool"] for c in calls(settings)] == ["agent_reviewer", "agent_bridge-judge"]


async def test_a_low_score_fails_the_case(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", JUDGED)
    fake_claude.script({FIRST_LINE: judge_script({"score": 0.4, "reasons": "Misses it."}),
                        "default": [{"init": {}}, {"text": "paging is fine"}, {"result": {}}]})
    [run] = (await run_tests(workspace.settings(fake_claude))).runs
    assert (run.status, run.failed_check, run.judge_score) == ("failed", "judge", 0.4)
    assert run.message == "judge: score 0.40 (pass 0.60): Misses it."


async def test_a_named_judge_agent_judges_instead(workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.agent("strict-judge", "tools: Read\n")
    write_tests(workspace.project, "reviewer", JUDGED.replace(
        "pass_score: 0.6", "pass_score: 0.6\n          agent: strict-judge"))
    fake_claude.script({FIRST_LINE: judge_script({"score": 1, "reasons": "ok"}),
                        "default": [{"init": {}}, {"text": "paging!"}, {"result": {}}]})
    [run] = (await run_tests(workspace.settings(fake_claude))).runs
    assert run.status == "passed" and run.judge_score == 1.0
    assert "--agent=strict-judge" in fake_claude.last()["argv"]


@pytest.mark.parametrize(("judge", "message"), [
    ([{"init": {}}, {"text": "I think it is good."}, {"result": {}}],
     "judge: the judge gave no JSON verdict"),
    (judge_script({"score": 7, "reasons": "?"}), "judge's score must be a number from 0 to 1"),
    ([{"init": {}}, {"result": {"is_error": True, "result": "Not logged in"}}],
     "judge: the judge's run failed: agent_bridge-judge: Not logged in"),
])
async def test_a_judge_without_a_usable_verdict_is_an_error(workspace, fake_claude, judge,
                                                            message):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", JUDGED)
    fake_claude.script({FIRST_LINE: judge,
                        "default": [{"init": {}}, {"text": "paging"}, {"result": {}}]})
    [run] = (await run_tests(workspace.settings(fake_claude))).runs
    assert run.status == "error" and message in (run.message or "")


async def test_the_judge_falls_back_to_json_in_its_answer(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", JUDGED)
    fake_claude.script({
        FIRST_LINE: [{"init": {}}, {"text": 'Verdict: {"score": 0.75, "reasons": "ok"}'},
                     {"result": {}}],
        "default": [{"init": {}}, {"text": "paging"}, {"result": {}}]})
    [run] = (await run_tests(workspace.settings(fake_claude))).runs
    assert (run.status, run.judge_score) == ("passed", 0.75)


# ---- policy and budget
async def test_the_budget_refuses_a_run_that_would_overspend(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p}]")
    fake_claude.script([{"init": {}}, {"text": "ok"}, {"result": {"total_cost_usd": 0.5}}])
    settings = workspace.settings(fake_claude, {"budget": {"per_call_usd": 0.6,
                                                          "daily_usd": 1.0}})
    suite = await run_tests(settings, repeat=3)
    assert [r.status for r in suite.runs] == ["passed", "error", "error"]
    message = suite.runs[1].message or ""
    assert message.startswith("daily budget: $0.50 of $1.00 spent or reserved")
    assert "this call needs up to $0.60" in message  # the ledger's own refusal
    assert len(fake_claude.records()) == 1  # the refused runs never started
    assert argv_value(fake_claude.last(), "--max-budget-usd") == "0.6"
    assert [c["outcome"] for c in calls(settings)] == ["ok", "refused", "refused"]


async def test_a_policy_refusal_is_an_error_and_nothing_runs(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p, model: opus}]")
    settings = workspace.settings(fake_claude, {"permissions": {"allow_model_override": False}})
    [run] = (await run_tests(settings)).runs
    assert run.status == "error" and "allow_model_override = false" in (run.message or "")
    assert fake_claude.records() == []


async def test_a_file_for_an_unpublished_definition_is_a_diagnostic(workspace, fake_claude):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p}]")
    settings = workspace.settings(fake_claude, {"agents": {"reviewer": {"enabled": False}}})
    suite = await run_tests(settings)
    assert suite.runs == [] and not suite.passed
    assert "no published agent or skill named 'reviewer'" in suite.diagnostics[0].reason
