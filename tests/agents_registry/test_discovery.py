from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agents_registry import Candidate, Roots, candidate_files, user_config_dir

Write = Callable[[str, str | bytes], Path]
MakeFile = Callable[..., Path]


def found(roots: Roots, base: Path) -> list[tuple[str, str, str]]:
    """Each candidate as (path relative to base, kind, scope)."""
    return [(str(c.path.relative_to(base)), c.kind, c.scope) for c in candidate_files(roots)]


def test_user_config_dir_is_claude_config_dir_when_set() -> None:
    environ = {"CLAUDE_CONFIG_DIR": "/cfg/claude", "HOME": "/home/u"}

    assert user_config_dir(environ) == Path("/cfg/claude")


@pytest.mark.parametrize(
    "environ", [{"HOME": "/home/u"}, {"CLAUDE_CONFIG_DIR": "", "HOME": "/home/u"}]
)
def test_user_config_dir_is_home_dot_claude_otherwise(environ: dict[str, str]) -> None:
    assert user_config_dir(environ) == Path("/home/u/.claude")


def test_candidates_come_project_first_then_user_then_extras_in_order(
    tmp_path: Path, write: Write
) -> None:
    for root in ("extra2", "extra1", "home/.claude", "project/.claude"):
        write(f"{root}/agents/a.md", "")
        write(f"{root}/skills/s/SKILL.md", "")
    roots = Roots(
        user_dir=tmp_path / "home/.claude",
        project_dir=tmp_path / "project",
        extra_dirs=(tmp_path / "extra1", tmp_path / "extra2"),
    )

    assert found(roots, tmp_path) == [
        ("project/.claude/agents/a.md", "agent", "project"),
        ("project/.claude/skills/s/SKILL.md", "skill", "project"),
        ("home/.claude/agents/a.md", "agent", "user"),
        ("home/.claude/skills/s/SKILL.md", "skill", "user"),
        ("extra1/agents/a.md", "agent", "extra"),
        ("extra1/skills/s/SKILL.md", "skill", "extra"),
        ("extra2/agents/a.md", "agent", "extra"),
        ("extra2/skills/s/SKILL.md", "skill", "extra"),
    ]


def test_candidates_remember_their_root(tmp_path: Path, write: Write) -> None:
    path = write("home/agents/a.md", "")

    assert candidate_files(Roots(tmp_path / "home", None)) == [
        Candidate(path, "agent", "user", tmp_path / "home")
    ]


def test_missing_directories_have_no_candidates(tmp_path: Path) -> None:
    roots = Roots(tmp_path / "nope", tmp_path / "nothing", (tmp_path / "none",))

    assert candidate_files(roots) == []


def test_agents_in_nested_subfolders_are_found_sorted(tmp_path: Path, write: Write) -> None:
    for name in ("z.md", "team/b.md", "team/deep/er/c.md", "a.md"):
        write(f"u/agents/{name}", "")

    assert [
        c.path.relative_to(tmp_path / "u/agents").as_posix()
        for c in candidate_files(Roots(tmp_path / "u", None))
    ] == ["a.md", "team/b.md", "team/deep/er/c.md", "z.md"]


def test_hidden_files_and_folders_and_other_files_are_ignored(tmp_path: Path, write: Write) -> None:
    for name in (
        "agents/.draft.md",
        "agents/.git/x.md",
        "agents/notes.txt",
        "agents/README",
        "skills/.hidden/SKILL.md",
        "skills/.SKILL.md",
        "agents/ok.md",
    ):
        write(f"u/{name}", "")

    assert found(Roots(tmp_path / "u", None), tmp_path) == [("u/agents/ok.md", "agent", "user")]


def test_a_skill_folder_without_skill_md_is_ignored(tmp_path: Path, write: Write) -> None:
    write("u/skills/empty/README.md", "")
    write("u/skills/SKILL.md", "")
    write("u/skills/nested/deeper/SKILL.md", "")
    write("u/skills/real/SKILL.md", "")

    assert found(Roots(tmp_path / "u", None), tmp_path) == [
        ("u/skills/real/SKILL.md", "skill", "user")
    ]


def test_symlinked_files_and_folders_are_followed(tmp_path: Path, write: Write) -> None:
    write("shared/agents/x.md", "")
    write("shared/one.md", "")
    write("shared/skill/SKILL.md", "")
    (tmp_path / "u/agents").mkdir(parents=True)
    (tmp_path / "u/skills").mkdir(parents=True)
    (tmp_path / "u/agents/linked").symlink_to(tmp_path / "shared/agents")
    (tmp_path / "u/agents/one.md").symlink_to(tmp_path / "shared/one.md")
    (tmp_path / "u/skills/s").symlink_to(tmp_path / "shared/skill")

    assert [p for p, _, _ in found(Roots(tmp_path / "u", None), tmp_path)] == [
        "u/agents/linked/x.md",
        "u/agents/one.md",
        "u/skills/s/SKILL.md",
    ]


def test_symlink_loops_end_and_each_folder_is_read_once(tmp_path: Path, write: Write) -> None:
    write("u/agents/sub/a.md", "")
    (tmp_path / "u/agents/sub/up").symlink_to(tmp_path / "u/agents")
    (tmp_path / "u/agents/again").symlink_to(tmp_path / "u/agents/sub")
    (tmp_path / "u/agents/self.md").symlink_to(tmp_path / "u/agents/self.md")
    (tmp_path / "u/agents/dangling.md").symlink_to(tmp_path / "missing.md")

    paths = [p for p, _, _ in found(Roots(tmp_path / "u", None), tmp_path)]

    assert paths == ["u/agents/again/a.md"]  # the first path in name order to reach it


def test_a_project_at_home_reads_its_claude_folder_once_as_project(
    tmp_path: Path, write: Write
) -> None:
    write("home/.claude/agents/a.md", "")

    roots = Roots(
        user_dir=tmp_path / "home/.claude",
        project_dir=tmp_path / "home",
        extra_dirs=(tmp_path / "home/.claude",),
    )

    assert found(roots, tmp_path) == [("home/.claude/agents/a.md", "agent", "project")]


def test_an_unreadable_folder_is_simply_empty(tmp_path: Path, write: Write) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads folders whatever their mode")
    write("u/agents/locked/a.md", "")
    (tmp_path / "u/agents/locked").chmod(0)
    try:
        assert candidate_files(Roots(tmp_path / "u", None)) == []
    finally:
        (tmp_path / "u/agents/locked").chmod(0o755)
