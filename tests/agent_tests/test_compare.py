"""`--compare`: what changed since the last run of an earlier version of the definition."""

import json

from claude_mcp_bridge.agent_tests.compare import compare
from claude_mcp_bridge.agent_tests.history import CaseRecord
from tests.agent_tests.conftest import write_tests

CASES = """
    agent: reviewer
    cases:
      - {name: finds-bugs, prompt: bugs, checks: [{contains: bug}]}
      - {name: stays-calm, prompt: calm, checks: [{not_contains: PANIC}]}
"""


def script(fake, bug_answer, cost, ms=1000):
    result = {"result": {"total_cost_usd": cost, "duration_ms": ms}}
    fake.script({"bugs": [{"init": {}}, {"text": bug_answer}, result],
                 "calm": [{"init": {}}, {"text": "All calm."}, result]})


def test_compare_flags_a_regression_after_the_agent_file_changed(workspace, fake_claude,
                                                                 run_cli):
    path = workspace.agent("reviewer", body="Find bugs.")
    write_tests(workspace.project, "reviewer", CASES)
    settings = workspace.settings(fake_claude)
    script(fake_claude, "One bug on line 3.", 0.01)
    first = run_cli(settings, "reviewer", "--compare", "--repeat", "2")
    assert first.code == 0, first.out
    assert "compare agent reviewer: no earlier version of it was tested" in first.out

    same = run_cli(settings, "reviewer", "--compare")  # same file: nothing earlier to compare
    assert same.code == 0 and "no earlier version" in same.out

    path.write_text(path.read_text().replace("Find bugs.", "Be brief."))
    script(fake_claude, "Looks fine.", 0.03, ms=1500)
    after = run_cli(settings, "reviewer", "--compare", "--repeat", "2")
    assert after.code == 1
    lines = after.out.splitlines()
    head = next(line for line in lines if line.startswith("compare agent reviewer: "))
    assert "REGRESSED, over 2 case(s)" in head
    assert "  pass rate          100% ->       50%  WORSE" in lines
    assert "  cost per run    $0.0100 ->   $0.0300  WORSE" in lines
    assert "  p50 time           1.0s ->      1.5s  WORSE" in lines
    assert "  mean score            - ->         -" in lines


def test_compare_is_quiet_within_the_threshold_and_reports_json(workspace, fake_claude,
                                                                run_cli):
    path = workspace.agent("reviewer", body="Find bugs.")
    write_tests(workspace.project, "reviewer", CASES)
    settings = workspace.settings(fake_claude)
    script(fake_claude, "One bug.", 0.010)
    assert run_cli(settings, "reviewer").code == 0
    path.write_text(path.read_text() + "\nBe kind.\n")
    script(fake_claude, "One bug.", 0.011)  # 10 % dearer: not beyond a 0.2 threshold
    ran = run_cli(settings, "reviewer", "--compare", "--threshold", "0.2", "--json")
    assert ran.code == 0
    [comparison] = json.loads(ran.out)["comparisons"]
    assert comparison["regressed"] is False and comparison["cases"] == ["finds-bugs",
                                                                         "stays-calm"]
    metrics = {m["name"]: m for m in comparison["metrics"]}
    assert metrics["cost per run"]["before"] == 0.01
    assert metrics["cost per run"]["after"] == 0.011


def record(case, status, sha="new", score=None, cost=0.01, ms=1000):
    return CaseRecord(run_id=sha, kind="agent", name="reviewer", definition_path="r.md",
                      definition_sha256=sha, test_file="t.yaml", case_name=case, attempt=1,
                      status=status, judge_score=score, cost_usd=cost, duration_ms=ms,
                      recorded_at="2025-01-01T00:00:00.000000Z")


def test_only_the_cases_both_runs_have_are_compared_and_scores_count():
    before = [record("a", "passed", "old", score=0.9), record("gone", "failed", "old")]
    after = [record("a", "passed", score=0.5), record("added", "failed")]
    result = compare(after, before, threshold=0.1)
    assert result.cases == ("a",)
    metrics = {m.name: m for m in result.metrics}
    assert metrics["pass rate"].worse is False  # 'gone' and 'added' do not count
    assert (metrics["mean score"].before, metrics["mean score"].after) == (0.9, 0.5)
    assert metrics["mean score"].worse and result.regressed
    disjoint = compare([record("x", "passed")], before, threshold=0.1)
    assert disjoint.cases == () and not disjoint.regressed
