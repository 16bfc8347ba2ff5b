"""A test run as text (people), JSON (programs, the MCP tool) and JUnit XML (CI)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .compare import Comparison, Metric
from .runner import CaseRun, DefinitionRun, SuiteResult
from .summary import Summary, summarize

_STATUS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR"}


# ---- text
def text_report(suite: SuiteResult, comparisons: Sequence[Comparison] = ()) -> str:
    lines: list[str] = []
    for definition in suite.definitions:
        lines += _definition_text(definition)
    for comparison in comparisons:
        lines += comparison_text(comparison)
    for diagnostic in suite.diagnostics:
        lines.append(f"ERROR {diagnostic}")
    lines.append(_totals(suite))
    return "\n".join(lines)


def _definition_text(run: DefinitionRun) -> list[str]:
    d = run.definition
    lines = [f"{d.kind} {d.name}  ({d.path}, sha256 {d.sha256[:12]})"]
    cases = _by_case(run.runs)
    width = max(len(name) for name in cases)
    for name, runs in cases.items():
        s = summarize([r for r in run.records if r.case_name == name])
        status = "PASS" if s.passed == s.runs else "ERROR" if s.errors else "FAIL"
        lines.append(f"  {status:<5} {name:<{width}}  {s.passed}/{s.runs}  "
                     f"${s.cost_usd:.4f}  p50 {_secs(s.p50_ms)}{_score(s.mean_score)}")
        for r in runs:
            if r.status != "passed":
                attempt = f"#{r.attempt} " if len(runs) > 1 else ""
                lines.append(f"        {attempt}{_STATUS[r.status]}: {r.message}")
    lines.append("  " + summary_line(summarize(run.records)))
    return lines


def summary_line(s: Summary) -> str:
    rate = f"{s.pass_rate:.0%}" if s.pass_rate is not None else "-"
    judge = f" (+ judge ${s.judge_cost_usd:.4f})" if s.judge_cost_usd else ""
    return (f"pass rate {s.passed}/{s.runs} ({rate}){_score(s.mean_score, 'mean score')}  "
            f"cost ${s.cost_usd:.4f}{judge}  p50 {_secs(s.p50_ms)}")


def comparison_text(c: Comparison) -> list[str]:
    head = f"compare {c.kind} {c.name}: "
    if c.before_sha256 is None:
        return [head + "no earlier version of it was tested; nothing to compare"]
    if not c.cases:
        return [head + f"the run of {c.before_sha256[:12]} shares no case with this one"]
    verdict = "REGRESSED" if c.regressed else "no regression"
    lines = [head + f"{c.before_sha256[:12]} ({c.before_at}) -> {c.after_sha256[:12]}: "
             f"{verdict}, over {len(c.cases)} case(s)"]
    for metric in c.metrics:
        flag = "  WORSE" if metric.worse else ""
        lines.append(f"  {metric.name:<13} {_value(metric, metric.before):>9} -> "
                     f"{_value(metric, metric.after):>9}{flag}")
    return lines


def _totals(suite: SuiteResult) -> str:
    runs = suite.runs
    counts = {status: sum(r.status == status for r in runs) for status in _STATUS}
    cost = sum((r.cost_usd or 0) + (r.judge_cost_usd or 0) for r in runs)
    broken = f", {len(suite.diagnostics)} unusable test file(s)" if suite.diagnostics else ""
    return (f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors"
            f"{broken}; {len(runs)} run(s), ${cost:.4f}")


def _by_case(runs: Sequence[CaseRun]) -> dict[str, list[CaseRun]]:
    cases: dict[str, list[CaseRun]] = {}
    for run in runs:
        cases.setdefault(run.case, []).append(run)
    return cases


def _value(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    if metric.name == "pass rate":
        return f"{value:.0%}"
    if metric.name == "cost per run":
        return f"${value:.4f}"
    if metric.name == "p50 time":
        return _secs(int(value))
    return f"{value:.2f}"


def _secs(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def _score(score: float | None, label: str = "score") -> str:
    return "" if score is None else f"  {label} {score:.2f}"


# ---- JSON
def json_report(suite: SuiteResult, comparisons: Sequence[Comparison] = ()) -> dict[str, Any]:
    return {
        "run_id": suite.run_id,
        "passed": suite.passed and not any(c.regressed for c in comparisons),
        "definitions": [_definition_json(d) for d in suite.definitions],
        "comparisons": [{**asdict(c), "regressed": c.regressed} for c in comparisons],
        "diagnostics": [{"path": str(d.path), "reason": d.reason} for d in suite.diagnostics],
    }


def _definition_json(run: DefinitionRun) -> dict[str, Any]:
    d = run.definition
    return {
        "kind": d.kind, "name": d.name, "path": str(d.path), "sha256": d.sha256,
        "summary": asdict(summarize(run.records)),
        "cases": [
            {"name": name, "file": str(runs[0].file),
             "summary": asdict(summarize([r for r in run.records if r.case_name == name])),
             "runs": [_run_json(r) for r in runs]}
            for name, runs in _by_case(run.runs).items()
        ],
    }


def _run_json(run: CaseRun) -> dict[str, Any]:
    data = asdict(run)
    data["file"] = str(run.file)
    data["failed_check"] = run.failed_check
    return data


# ---- JUnit XML
def junit_report(suite: SuiteResult) -> bytes:
    """One <testsuite> per definition, one <testcase> per run; unusable test files are
    <error>s of a suite of their own, so CI shows them too."""
    root = ET.Element("testsuites", name="claude-mcp-bridge agent tests")
    for definition in suite.definitions:
        root.append(_suite_xml(definition))
    if suite.diagnostics:
        broken = ET.SubElement(root, "testsuite", name="unusable test files",
                               tests=str(len(suite.diagnostics)), failures="0",
                               errors=str(len(suite.diagnostics)), skipped="0", time="0")
        for diagnostic in suite.diagnostics:
            case = ET.SubElement(broken, "testcase", classname="agent-tests",
                                 name=str(diagnostic.path), time="0")
            ET.SubElement(case, "error", message=diagnostic.reason, type="test-file")
    _count(root, root.findall("testsuite"))
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def _suite_xml(run: DefinitionRun) -> ET.Element:
    d = run.definition
    suite = ET.Element("testsuite", name=f"{d.kind} {d.name}")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("definition_path", str(d.path)), ("definition_sha256", d.sha256)):
        ET.SubElement(properties, "property", name=name, value=value)
    many = len(run.runs) > len({r.case for r in run.runs})
    for r in run.runs:
        suite.append(_case_xml(d.kind, d.name, r, many))
    _count(suite, suite.findall("testcase"))
    return suite


def _case_xml(kind: str, name: str, run: CaseRun, numbered: bool) -> ET.Element:
    case = ET.Element("testcase", classname=f"{kind}.{name}",
                      name=f"{run.case} #{run.attempt}" if numbered else run.case,
                      file=str(run.file), time=f"{(run.duration_ms or 0) / 1000:.3f}")
    if run.status == "failed":
        failed = [c for c in run.checks if not c.passed]
        element = ET.SubElement(case, "failure", message=str(failed[0]), type=failed[0].check)
        element.text = "\n".join(map(str, failed))
    elif run.status == "error":
        element = ET.SubElement(case, "error", message=run.message or "error", type="run")
        element.text = run.message
    out = ET.SubElement(case, "system-out")
    out.text = "\n".join(f"{key}: {value}" for key, value in (
        ("cost_usd", run.cost_usd), ("judge_cost_usd", run.judge_cost_usd),
        ("num_turns", run.num_turns), ("judge_score", run.judge_score),
        ("call_id", run.call_id)) if value is not None) + f"\n\n{run.answer}"
    return case


def _count(element: ET.Element, children: list[ET.Element]) -> None:
    """tests/failures/errors/skipped/time of ``element`` from its children's."""
    if element.tag == "testsuite":
        element.set("tests", str(len(children)))
        element.set("failures", str(sum(c.find("failure") is not None for c in children)))
        element.set("errors", str(sum(c.find("error") is not None for c in children)))
        element.set("skipped", "0")
    else:
        for key in ("tests", "failures", "errors", "skipped"):
            element.set(key, str(sum(int(c.get(key, "0")) for c in children)))
    element.set("time", f"{sum(float(c.get('time', '0')) for c in children):.3f}")
