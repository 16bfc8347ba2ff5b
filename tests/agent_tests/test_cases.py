"""Test files: loading, validation messages, discovery and selection."""

import textwrap
from pathlib import Path

import pytest

from agents_registry import Diagnostic, Roots
from claude_mcp_bridge.agent_tests.cases import (
    CaseFile,
    discover_case_files,
    load_case_file,
    select_case_files,
)
from claude_mcp_bridge.agent_tests.checks import Contains, JsonSchema
from tests.agent_tests.conftest import write_tests

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, text: str) -> CaseFile | Diagnostic:
    path = tmp_path / "reviewer.yaml"
    path.write_text(textwrap.dedent(text))
    return load_case_file(path)


def test_a_file_loads_its_cases_with_the_fixture_beside_it(tmp_path):
    (tmp_path / "fixtures" / "repo").mkdir(parents=True)
    loaded = load(tmp_path, """
        cases:
          - name: finds-the-bug
            prompt: Review x.py
            fixture: fixtures/repo
            max_turns: 5
            checks:
              - contains: [x.py, bug]
              - json_schema: {type: object}
            judge: {rubric: Names the bug.}
    """)
    assert isinstance(loaded, CaseFile)
    assert (loaded.kind, loaded.name) == (None, "reviewer")  # from the file name
    case = loaded.cases[0]
    assert case.fixture == tmp_path / "fixtures" / "repo"
    assert case.checks[0] == Contains(contains=("x.py", "bug"))
    assert isinstance(case.checks[1], JsonSchema) and case.json_schema == {"type": "object"}
    assert case.judge is not None and case.judge.pass_score == 0.7
    assert case.arguments(cwd="/w").model_dump(exclude_none=True) == \
        {"prompt": "Review x.py", "cwd": "/w", "max_turns": 5}


def test_the_file_can_name_an_agent_or_a_skill(tmp_path):
    agent = load(tmp_path, "agent: code-reviewer\ncases: [{name: a, prompt: p}]")
    skill = load(tmp_path, "skill: changelog\ncases: [{name: a, prompt: p}]")
    assert isinstance(agent, CaseFile) and (agent.kind, agent.name) == ("agent", "code-reviewer")
    assert isinstance(skill, CaseFile) and (skill.kind, skill.name) == ("skill", "changelog")


@pytest.mark.parametrize(("text", "reason"), [
    ("cases: [", "not valid YAML: while parsing a flow node"),
    ("- a list", "a test file is a mapping with 'cases'"),
    ("cases: []", "'cases' is empty"),
    ("agent: a\nskill: b\ncases: [{name: a, prompt: p}]", "either an agent or a skill"),
    ("cases: [{name: a, prompt: p}, {name: a, prompt: q}]", "repeated: a"),
    ("cases: [{name: a, prompt: '  '}]", "cases[0].prompt: must not be blank"),
    ("cases: [{name: a, prompt: p, tools: [Read]}]", "cases[0].tools: Extra inputs"),
    ("cases: [{name: a, prompt: p, max_turns: 0}]", "'max_turns': Input should be greater"),
    ("cases: [{name: a, prompt: p, model: '-x'}]", "'model': String should match pattern"),
    ("cases: [{name: a, prompt: p, fixture: nowhere}]", "case 'a': fixture "),
    ("cases: [{name: a, prompt: p, checks: [{contain: x}]}]",
     "cases[0].checks[0]: unknown check 'contain'; the kinds are contains, not_contains"),
    ("cases: [{name: a, prompt: p, checks: [{contains: x, matches: y}]}]",
     "a check is a mapping with one key, its kind"),
    ("cases: [{name: a, prompt: p, checks: [{contains: 3}]}]",
     "contains: must be a string or a list of strings, got int"),
    ("cases: [{name: a, prompt: p, checks: [{matches: '('}]}]",
     "matches: not a valid regular expression"),
    ("cases: [{name: a, prompt: p, checks: [{json_schema: {type: 5}}]}]",
     "json_schema: not a valid JSON Schema"),
    ("cases: [{name: a, prompt: p, checks: [{json_schema: {}}, {json_schema: {}}]}]",
     "at most one json_schema check per case"),
    ("cases: [{name: a, prompt: p, checks: [{file_exists: ../out.md}]}]",
     "must be a path inside the working copy"),
    ("cases: [{name: a, prompt: p, checks: [{file_contains: {path: a.md}}]}]",
     "cases[0].checks[0]: file_contains: text: Field required"),
    ("cases: [{name: a, prompt: p, judge: {rubric: r, pass_score: 2}}]",
     "cases[0].judge.pass_score: Input should be less than or equal to 1"),
])
def test_a_broken_file_gets_its_path_and_the_reason(tmp_path, text, reason):
    loaded = load(tmp_path, text)
    assert isinstance(loaded, Diagnostic), loaded
    assert loaded.path == tmp_path / "reviewer.yaml"
    assert reason in loaded.reason


def test_files_are_found_beside_project_and_user_definitions(workspace):
    project = write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p}]")
    user = write_tests(workspace.home / "user", "changelog", "cases: [{name: b, prompt: q}]")
    (project.parent / "notes.txt").write_text("not a test file")
    roots = Roots(user_dir=workspace.home / "user" / ".claude", project_dir=workspace.project)
    assert discover_case_files(roots) == [project, user]


def test_names_select_the_files_that_test_them_and_paths_select_files(workspace, tmp_path):
    roots = Roots(user_dir=workspace.user_claude, project_dir=workspace.project)
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p}]")
    write_tests(workspace.project, "more-reviews", "agent: reviewer\ncases: [{name: b, "
                                                   "prompt: p}]")
    write_tests(workspace.project, "changelog", "cases: [{name: c, prompt: p}]")
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("agent: writer\ncases: [{name: d, prompt: p}]")

    def names(*selectors):
        selection = select_case_files(list(selectors), roots)
        return sorted(f.path.name for f in selection.files), selection.diagnostics

    assert names() == (["changelog.yaml", "more-reviews.yaml", "reviewer.yaml"], ())
    assert names("reviewer") == (["more-reviews.yaml", "reviewer.yaml"], ())
    assert names(str(elsewhere)) == (["elsewhere.yaml"], ())
    files, diagnostics = names("nobody")
    assert files == [] and "no test file for 'nobody'" in diagnostics[0].reason


def test_a_broken_file_among_good_ones_is_reported_and_the_others_still_load(workspace):
    roots = Roots(user_dir=workspace.user_claude, project_dir=workspace.project)
    write_tests(workspace.project, "reviewer", "cases: [{name: a, prompt: p}]")
    broken = write_tests(workspace.project, "writer", "cases: [{name: a}]")
    selection = select_case_files([], roots)
    assert [f.name for f in selection.files] == ["reviewer"]
    assert [(d.path, "prompt: Field required" in d.reason) for d in selection.diagnostics] == \
        [(broken, True)]
    named = select_case_files(["writer"], roots)  # named and broken: one diagnostic, not two
    assert named.files == () and [d.path for d in named.diagnostics] == [broken]


def test_the_shipped_examples_load():
    folder = REPO / "examples" / "quickstart" / ".claude" / "agent-tests"
    files = [load_case_file(path) for path in sorted(folder.glob("*.yaml"))]
    assert all(isinstance(f, CaseFile) for f in files), files
    assert {(f.kind, f.name) for f in files if isinstance(f, CaseFile)} == \
        {("agent", "code-reviewer"), ("skill", "changelog")}


# --- fixtures stay inside the test file's folder or the allowed cwd roots (issue 14, item 4) ---

def fixture_case(fixture: str) -> str:
    return f"""
        cases:
          - name: reads-it
            prompt: Read it
            fixture: {fixture}
            checks: [{{file_contains: {{path: key.txt, text: SECRET}}}}]
    """


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere" / "secret"
    folder.mkdir(parents=True)
    (folder / "key.txt").write_text("SECRET\n")
    return folder


def test_an_absolute_fixture_outside_the_roots_is_refused(tmp_path, secret):
    tests = tmp_path / "project" / ".claude" / "agent-tests"
    tests.mkdir(parents=True)
    loaded = load(tests, fixture_case(str(secret)))
    assert isinstance(loaded, Diagnostic)
    assert loaded.reason == (
        f"case 'reads-it': fixture {secret} is outside the test file's folder and the allowed "
        f"cwd roots ({tests}); keep fixtures beside the test file")


@pytest.mark.parametrize("fixture", ["/", "../../../elsewhere/secret", "link"])
def test_a_fixture_escaping_by_root_dots_or_a_link_is_refused(tmp_path, secret, fixture):
    tests = tmp_path / "project" / ".claude" / "agent-tests"
    tests.mkdir(parents=True)
    (tests / "link").symlink_to(secret)
    loaded = load(tests, fixture_case(fixture))
    assert isinstance(loaded, Diagnostic), loaded
    assert "is outside the test file's folder and the allowed cwd roots" in loaded.reason


def test_a_link_inside_a_fixture_that_points_out_is_refused(tmp_path, secret):
    tests = tmp_path / "project"
    fixture = tests / "fixtures" / "repo"
    fixture.mkdir(parents=True)
    (fixture / "innocent.txt").symlink_to(secret / "key.txt")
    loaded = load(tests, fixture_case("fixtures/repo"))
    assert isinstance(loaded, Diagnostic)
    assert f"innocent.txt links to {secret / 'key.txt'}, outside" in loaded.reason


def test_a_fixture_in_an_allowed_cwd_root_loads(tmp_path, secret):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "reviewer.yaml").write_text(textwrap.dedent(fixture_case(str(secret))))
    loaded = load_case_file(tests / "reviewer.yaml", [tmp_path / "elsewhere"])
    assert isinstance(loaded, CaseFile), loaded
    assert loaded.cases[0].fixture == secret.resolve()


def test_a_fixture_over_the_size_caps_is_refused(tmp_path, monkeypatch):
    from claude_mcp_bridge.agent_tests import cases

    fixture = tmp_path / "fixtures" / "big"
    fixture.mkdir(parents=True)
    for i in range(5):
        (fixture / f"{i}.txt").write_text("x" * 100)
    assert isinstance(load(tmp_path, fixture_case("fixtures/big")), CaseFile)
    monkeypatch.setattr(cases, "MAX_FIXTURE_FILES", 4)
    many = load(tmp_path, fixture_case("fixtures/big"))
    assert isinstance(many, Diagnostic) and "is too big to copy for every run" in many.reason
    monkeypatch.setattr(cases, "MAX_FIXTURE_FILES", 100)
    monkeypatch.setattr(cases, "MAX_FIXTURE_BYTES", 499)
    assert isinstance(load(tmp_path, fixture_case("fixtures/big")), Diagnostic)


def test_a_link_loop_inside_a_fixture_ends_at_the_cap(tmp_path):
    fixture = tmp_path / "fixtures" / "loop"
    fixture.mkdir(parents=True)
    (fixture / "again").symlink_to(fixture)
    loaded = load(tmp_path, fixture_case("fixtures/loop"))
    assert isinstance(loaded, Diagnostic) and "too big" in loaded.reason
