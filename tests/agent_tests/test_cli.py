"""`claude-mcp-bridge test`: selection, exit codes and options."""

import pytest

from tests.agent_tests.conftest import write_tests


def test_passing_tests_exit_0_and_failing_ones_exit_1(workspace, fake_claude, run_cli):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", """
        cases:
          - {name: ok, prompt: p, checks: [{contains: Fake}]}
          - {name: picky, prompt: p, checks: [{contains: Real}]}
    """)
    settings = workspace.settings(fake_claude)
    assert run_cli(settings, "--case", "ok").code == 0
    assert run_cli(settings, "reviewer").code == 1
    only_picky = run_cli(settings, "--case", "picky")
    assert only_picky.code == 1 and "ok" not in only_picky.out.split()


def test_a_case_filter_skips_definitions_without_that_case(workspace, fake_claude, run_cli):
    workspace.agent("reviewer")
    workspace.agent("writer")
    write_tests(workspace.project, "reviewer", "cases: [{name: ok, prompt: p}]")
    write_tests(workspace.project, "writer", "cases: [{name: drafts, prompt: p}]")
    settings = workspace.settings(fake_claude)
    ran = run_cli(settings, "--case", "ok")
    assert ran.code == 0 and "agent writer" not in ran.out
    assert ran.out.splitlines()[-1].startswith("1 passed, 0 failed")
    unknown = run_cli(settings, "--case", "nope")
    assert unknown.code == 2 and "no case named 'nope'" in unknown.err
    assert "their cases: drafts, ok" in unknown.err


def test_nothing_to_run_exits_2_and_says_why(workspace, fake_claude, run_cli):
    settings = workspace.settings(fake_claude)
    empty = run_cli(settings)
    assert empty.code == 2 and "no test files found in agent-tests/" in empty.err
    workspace.agent("reviewer")
    missing = run_cli(settings, "reviewer")
    assert missing.code == 2 and "no test file for 'reviewer'" in missing.err


def test_an_unusable_file_fails_the_run_but_the_others_still_run(workspace, fake_claude,
                                                               run_cli):
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", "cases: [{name: ok, prompt: p}]")
    write_tests(workspace.project, "writer", "cases: [{name: ok, prompt: p}]")  # no agent
    ran = run_cli(workspace.settings(fake_claude))
    assert ran.code == 1
    assert "1 passed, 0 failed, 0 errors, 1 unusable test file(s)" in ran.out
    assert "writer.yaml: no published agent or skill named 'writer'" in ran.out


def test_a_skill_is_tested_like_an_agent(workspace, fake_claude, run_cli):
    workspace.skill("changelog")
    write_tests(workspace.project, "changelog", "skill: changelog\ncases: [{name: a, "
                                                "prompt: Write it}]")
    ran = run_cli(workspace.settings(fake_claude), "changelog")
    assert ran.code == 0 and ran.out.startswith("skill changelog  (")
    assert any(a.startswith("--append-system-prompt=") for a in fake_claude.last()["argv"])


@pytest.mark.parametrize("argv", [["--repeat", "0"], ["--parallel", "x"]])
def test_bad_counts_are_usage_errors(workspace, run_cli, argv):
    with pytest.raises(SystemExit) as exited:
        run_cli(workspace.settings(None), *argv)
    assert exited.value.code == 2


def test_a_test_file_cannot_copy_a_secret_from_outside_the_roots(
        workspace, fake_claude, run_cli, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("SECRET\n")
    workspace.agent("reviewer")
    write_tests(workspace.project, "reviewer", f"""
        cases:
          - name: steals
            prompt: Say anything
            fixture: {secret}
            checks: [{{file_contains: {{path: key.txt, text: SECRET}}}}]
    """)
    ran = run_cli(workspace.settings(fake_claude), "reviewer")
    assert ran.code == 2
    assert f"fixture {secret} is outside the test file's folder" in ran.err
    assert fake_claude.records() == []
