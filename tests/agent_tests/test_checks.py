"""Each check kind, passing and failing, on what a run produced."""

from dataclasses import replace
from pathlib import Path

import pytest

from claude_mcp_bridge.agent_tests.checks import CHECK_KINDS, Observation, parse_check

SCHEMA = {"type": "object", "required": ["severity"],
          "properties": {"severity": {"enum": ["high", "low"]}}}


@pytest.fixture
def seen(tmp_path: Path) -> Observation:
    fixture = tmp_path / "fixture"
    fixture.mkdir()
    (fixture / "kept.md").write_text("same")
    (fixture / "edited.md").write_text("before")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "kept.md").write_text("same")
    (workdir / "edited.md").write_text("after: off-by-one fixed")
    (workdir / "new.md").write_text("created")
    (workdir / "escape.md").symlink_to(fixture / "kept.md")
    return Observation(
        answer="paging.py:14 has an off-by-one.\nFix: use ceil.", structured_output=None,
        cost_usd=0.25, num_turns=3, tools_used=("Read", "Grep", "Read", "mcp__gh__get_pr"),
        workdir=workdir, fixture=fixture)


CASES = [
    # (check, how the observation differs, passes, words in the detail)
    ({"contains": "paging.py"}, {}, True, "found 'paging.py'"),
    ({"contains": ["paging.py", "race"]}, {}, False, "'race' not in the answer (answer: "),
    ({"contains": "x"}, {"answer": ""}, False, "(the answer is empty)"),
    ({"not_contains": ["TODO", "race"]}, {}, True, "none of"),
    ({"not_contains": "off-by-one"}, {}, False, "'off-by-one' found in the answer"),
    ({"matches": r"^Fix: use \w+"}, {}, True, "matched 'Fix: use ceil'"),
    ({"matches": r"paging\.py:\d{3}"}, {}, False, "no match for /paging"),
    ({"json_schema": SCHEMA}, {"structured_output": {"severity": "high"}}, True,
     "the structured output matches"),
    ({"json_schema": SCHEMA}, {"structured_output": {"severity": "urgent"}}, False,
     "at $.severity: 'urgent' is not one of ['high', 'low']"),
    ({"json_schema": SCHEMA}, {"answer": '```json\n{"severity": "low"}\n```'}, True,
     "the answer matches"),
    ({"json_schema": SCHEMA}, {"answer": '{"level": 1}'}, False,
     "at the value: 'severity' is a required property"),
    ({"json_schema": SCHEMA}, {}, False, "no structured output, and the answer is not JSON"),
    ({"cost_at_most": 0.25}, {}, True, "cost $0.2500, at most $0.2500"),
    ({"cost_at_most": 0.1}, {}, False, "cost $0.2500, at most $0.1000"),
    ({"cost_at_most": 1}, {"cost_usd": None}, False, "reported no cost"),
    ({"turns_at_most": 3}, {}, True, "3 turns, at most 3"),
    ({"turns_at_most": 2}, {}, False, "3 turns, at most 2"),
    ({"tools_used": ["Read", "mcp__gh__*"]}, {}, True, "used Read, Grep, mcp__gh__get_pr"),
    ({"tools_used": ["Read", "Edit"]}, {}, False, "never used 'Edit'"),
    ({"tools_used": "Read"}, {"tools_used": ()}, False, "used no tools"),
    ({"tools_not_used": ["Bash", "Write"]}, {}, True, "none of 'Bash', 'Write' used"),
    ({"tools_not_used": ["Bash", "mcp__*"]}, {}, False, "used 'mcp__gh__get_pr'"),
    ({"file_exists": ["new.md", "edited.md"]}, {}, True, "present"),
    ({"file_exists": ["new.md", "gone.md"]}, {}, False, "'gone.md' missing"),
    ({"file_exists": "escape.md"}, {}, False, "'escape.md' missing"),  # links outside
    ({"file_contains": {"path": "edited.md", "text": "off-by-one"}}, {}, True, "holds"),
    ({"file_contains": {"path": "edited.md", "text": ["fixed", "tests"]}}, {}, False,
     "'tests' not in 'edited.md'"),
    ({"file_contains": {"path": "gone.md", "text": "x"}}, {}, False, "'gone.md' missing"),
    ({"file_changed": ["edited.md", "new.md"]}, {}, True, "changed or created"),
    ({"file_changed": ["kept.md", "gone.md"]}, {}, False, "'kept.md' unchanged; 'gone.md'"),
]


@pytest.mark.parametrize(("check", "differs", "passes", "detail"), CASES,
                         ids=[f"{next(iter(c[0]))}-{'pass' if c[2] else 'fail'}-{i}"
                              for i, c in enumerate(CASES)])
def test_check(seen, check, differs, passes, detail):
    result = parse_check(check).evaluate(replace(seen, **differs))
    assert result.check == next(iter(check))
    assert (result.passed, detail in result.detail) == (passes, True), result.detail


def test_every_kind_is_covered_passing_and_failing():
    covered = {(next(iter(check)), passes) for check, _, passes, _ in CASES}
    assert covered == {(kind, passes) for kind in CHECK_KINDS for passes in (True, False)}
