"""Reports: JUnit XML (parsed and checked against the JUnit structure), JSON and text."""

import json
import xml.etree.ElementTree as ET

import pytest

from tests.agent_tests.conftest import write_tests

MIXED = """
    cases:
      - {name: passes, prompt: good, checks: [{contains: Fine}]}
      - {name: fails, prompt: bad, checks: [{contains: Fine}, {not_contains: Broken}]}
      - {name: errs, prompt: crash}
"""
SCRIPT = {
    "good": [{"init": {}}, {"text": "Fine."}, {"result": {"total_cost_usd": 0.01,
                                                         "duration_ms": 1500}}],
    "bad": [{"init": {}}, {"text": "Broken & <odd>."}, {"result": {"total_cost_usd": 0.02}}],
    "crash": [{"init": {}}, {"crash": "SIGSEGV"}],
}


@pytest.fixture
def mixed(workspace, fake_claude, run_cli, tmp_path):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", MIXED)
    write_tests(workspace.project, "broken", "cases: {")
    fake_claude.script(SCRIPT)
    junit = tmp_path / "junit.xml"
    ran = run_cli(workspace.settings(fake_claude), "--repeat", "2", "--junit", str(junit))
    return ran, junit


# The JUnit structure CI tools read (the Jenkins/Ant "JUnit XML" de facto schema): the
# elements each one may hold, and the attributes each one must have.
JUNIT = {
    "testsuites": ({"testsuite"}, {"tests", "failures", "errors", "time"}),
    "testsuite": ({"properties", "testcase", "system-out", "system-err"},
                  {"name", "tests", "failures", "errors", "skipped", "time"}),
    "properties": ({"property"}, set()),
    "property": (set(), {"name", "value"}),
    "testcase": ({"failure", "error", "skipped", "system-out", "system-err"},
                 {"name", "classname", "time"}),
    "failure": (set(), {"message", "type"}),
    "error": (set(), {"message", "type"}),
    "system-out": (set(), set()),
}


def check_structure(element: ET.Element) -> None:
    children, required = JUNIT[element.tag]
    assert required <= set(element.attrib), (element.tag, element.attrib)
    for child in element:
        assert child.tag in children, (element.tag, child.tag)
        check_structure(child)
    for count in ("tests", "failures", "errors", "skipped"):
        if count in element.attrib:
            assert int(element.get(count)) >= 0
    if "time" in element.attrib:
        assert float(element.get("time")) >= 0


def test_junit_xml_has_one_suite_per_definition_and_one_case_per_run(mixed):
    ran, junit = mixed
    assert ran.code == 1
    root = ET.parse(junit).getroot()
    check_structure(root)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"agent reviewer", "unusable test files"}
    reviewer = suites["agent reviewer"]
    cases = reviewer.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "passes #1", "passes #2", "fails #1", "fails #2", "errs #1", "errs #2"]
    assert {c.get("classname") for c in cases} == {"agent.reviewer"}
    assert (reviewer.get("tests"), reviewer.get("failures"), reviewer.get("errors")) == \
        ("6", "2", "2")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "2", "3")
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    assert float(cases[0].get("time")) == 1.5
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("type") == "contains"  # the first that failed
    assert failure.get("message").startswith("contains: 'Fine' not in the answer")
    assert failure.text.splitlines()[1].startswith("not_contains: 'Broken' found")
    error = cases[4].find("error")
    assert error is not None and "killed by SIGSEGV" in error.get("message")
    out = cases[2].find("system-out").text
    assert "cost_usd: 0.02" in out and "Broken & <odd>." in out
    properties = {p.get("name"): p.get("value") for p in reviewer.iter("property")}
    assert len(properties["definition_sha256"]) == 64
    [broken] = suites["unusable test files"].findall("testcase")
    assert broken.get("name").endswith("broken.yaml")
    assert "not valid YAML" in broken.find("error").get("message")


def test_the_text_report_names_failing_checks_cost_time_and_the_pass_rate(mixed):
    ran, _ = mixed
    lines = ran.out.splitlines()
    assert lines[0].startswith("agent reviewer  (") and "sha256 " in lines[0]
    assert "  PASS  passes  2/2  $0.0200  p50 1.5s" in lines
    assert any(line.startswith("  FAIL  fails   0/2  $0.0400") for line in lines)
    assert "        #1 FAIL: contains: 'Fine' not in the answer (answer: 'Broken & <odd>.'); " \
           "not_contains: 'Broken' found in the answer (answer: 'Broken & <odd>.')" in lines
    assert any(line.startswith("  ERROR errs") for line in lines)
    assert lines[-3].startswith("  pass rate 2/6 (33%)  cost $0.0600  p50 ")
    assert lines[-2].startswith("ERROR ") and "broken.yaml: not valid YAML" in lines[-2]
    assert lines[-1] == "2 passed, 2 failed, 2 errors, 1 unusable test file(s); 6 run(s), $0.0600"
    progress = ran.err.splitlines()  # live, on stderr
    assert "reviewer/passes #1: started" in progress
    assert sum(line.startswith("[") and "/6] reviewer/" in line for line in progress) == 6


def test_the_json_report_has_every_run_and_the_summaries(workspace, fake_claude, run_cli):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", MIXED)
    fake_claude.script(SCRIPT)
    ran = run_cli(workspace.settings(fake_claude), "reviewer", "--json")
    report = json.loads(ran.out)
    assert (ran.code, report["passed"], report["diagnostics"]) == (1, False, [])
    [definition] = report["definitions"]
    assert (definition["kind"], definition["name"]) == ("agent", "reviewer")
    summary = definition["summary"]
    assert (summary["runs"], summary["passed"], summary["failed"], summary["errors"]) == \
        (3, 1, 1, 1)
    fails = definition["cases"][1]
    assert fails["name"] == "fails" and fails["summary"]["pass_rate"] == 0
    [run] = fails["runs"]
    assert (run["status"], run["failed_check"], run["cost_usd"]) == ("failed", "contains", 0.02)
    assert [c["check"] for c in run["checks"]] == ["contains", "not_contains"]
