from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agents_registry import (
    AgentDefinition,
    Diagnostic,
    Registry,
    Roots,
    SkillDefinition,
    load_registry,
    parse_definition,
)

Write = Callable[[str, str | bytes], Path]
MakeFile = Callable[..., Path]


def roots_in(tmp_path: Path, *extras: str) -> Roots:
    return Roots(
        user_dir=tmp_path / "home/.claude",
        project_dir=tmp_path / "project",
        extra_dirs=tuple(tmp_path / extra for extra in extras),
    )


def rejection(path: Path, *, max_bytes: int = 1_048_576) -> str:
    result = parse_definition(path, "agent", "user", max_bytes=max_bytes)
    assert isinstance(result, Diagnostic), result
    assert (result.path, result.severity) == (path, "error")
    return result.reason


def by_path(registry: Registry) -> dict[Path, Diagnostic]:
    return {d.path: d for d in registry.diagnostics}


def test_a_registry_holds_agents_and_skills_sorted_by_name(
    tmp_path: Path, write_agent: MakeFile, write_skill: MakeFile
) -> None:
    write_agent("project/.claude/agents/zed.md", "zed")
    write_agent("home/.claude/agents/team/alpha.md", "alpha")
    write_skill("project/.claude/skills/pdf")
    write_skill("home/.claude/skills/csv")

    registry = load_registry(roots_in(tmp_path))

    assert list(registry.agents) == ["alpha", "zed"]
    assert list(registry.skills) == ["csv", "pdf"]
    assert [(d.kind, d.name) for d in registry.definitions()] == [
        ("agent", "alpha"),
        ("agent", "zed"),
        ("skill", "csv"),
        ("skill", "pdf"),
    ]
    assert registry.diagnostics == ()


def test_lookups_find_a_definition_by_kind_and_name(
    tmp_path: Path, write_agent: MakeFile, write_skill: MakeFile
) -> None:
    write_agent("project/.claude/agents/a.md", "same")
    write_skill("project/.claude/skills/same")

    registry = load_registry(roots_in(tmp_path))

    assert isinstance(registry.get("agent", "same"), AgentDefinition)
    assert isinstance(registry.get("skill", "same"), SkillDefinition)
    assert registry.get("agent", "missing") is None


def test_the_registry_mappings_are_read_only(tmp_path: Path, write_agent: MakeFile) -> None:
    write_agent("project/.claude/agents/a.md", "a")
    registry = load_registry(roots_in(tmp_path))

    with pytest.raises(TypeError):
        registry.agents["b"] = registry.agents["a"]  # type: ignore[index]


def test_the_name_comes_from_front_matter_not_the_file_name(
    tmp_path: Path, write_agent: MakeFile
) -> None:
    write_agent("project/.claude/agents/file-name.md", "front-name")

    assert list(load_registry(roots_in(tmp_path)).agents) == ["front-name"]


def test_project_wins_over_user_which_wins_over_extra(
    tmp_path: Path, write_agent: MakeFile
) -> None:
    project = write_agent("project/.claude/agents/a.md", "a", body="project")
    user = write_agent("home/.claude/agents/a.md", "a", body="user")
    extra = write_agent("extra/agents/a.md", "a", body="extra")
    user_only = write_agent("home/.claude/agents/b.md", "b", body="user")
    extra_b = write_agent("extra/agents/b.md", "b", body="extra")

    registry = load_registry(roots_in(tmp_path, "extra"))

    assert (registry.agents["a"].body, registry.agents["a"].scope) == ("project", "project")
    assert (registry.agents["b"].body, registry.agents["b"].scope) == ("user", "user")
    assert by_path(registry) == {
        user: Diagnostic(
            user, f"overridden by {project} (project definition wins over user)", "warning"
        ),
        extra: Diagnostic(
            extra, f"overridden by {project} (project definition wins over extra)", "warning"
        ),
        extra_b: Diagnostic(
            extra_b, f"overridden by {user_only} (user definition wins over extra)", "warning"
        ),
    }


def test_an_earlier_extra_directory_wins_over_a_later_one(
    tmp_path: Path, write_skill: MakeFile
) -> None:
    first = write_skill("one/skills/s", body="one")
    second = write_skill("two/skills/s", body="two")

    registry = load_registry(roots_in(tmp_path, "one", "two"))

    assert registry.skills["s"].body == "one"
    assert registry.diagnostics == (
        Diagnostic(second, f"overridden by {first} (an earlier extra directory wins)", "warning"),
    )


def test_a_same_scope_duplicate_is_an_error_and_the_first_path_wins(
    tmp_path: Path, write_agent: MakeFile
) -> None:
    first = write_agent("project/.claude/agents/a-first.md", "dup", body="first")
    second = write_agent("project/.claude/agents/b-second.md", "dup", body="second")

    registry = load_registry(roots_in(tmp_path))

    assert registry.agents["dup"].body == "first"
    assert registry.diagnostics == (
        Diagnostic(second, f"duplicate agent name 'dup', also defined in {first}; ignored"),
    )


def test_an_agent_and_a_skill_may_share_a_name(
    tmp_path: Path, write_agent: MakeFile, write_skill: MakeFile
) -> None:
    write_agent("project/.claude/agents/x.md", "x")
    write_skill("project/.claude/skills/x")

    registry = load_registry(roots_in(tmp_path))

    assert (list(registry.agents), list(registry.skills), registry.diagnostics) == (
        ["x"],
        ["x"],
        (),
    )


def test_one_bad_file_never_stops_the_others(
    tmp_path: Path, write: Write, write_agent: MakeFile
) -> None:
    write_agent("project/.claude/agents/a.md", "a")
    bad = write("project/.claude/agents/b.md", "---\nname: b\n- x\n---\n")
    write("project/.claude/agents/c.md", b"\xff\xfe garbage")
    write_agent("home/.claude/agents/d.md", "d")

    registry = load_registry(roots_in(tmp_path))

    assert list(registry.agents) == ["a", "d"]
    assert [d.path.name for d in registry.diagnostics] == ["b.md", "c.md"]
    assert all(d.severity == "error" for d in registry.diagnostics)
    assert str(registry.diagnostics[0]).startswith(f"{bad}: invalid YAML in front matter at line 3")


def test_a_rejected_project_file_does_not_hide_the_user_definition(
    tmp_path: Path, write: Write, write_agent: MakeFile
) -> None:
    write("project/.claude/agents/a.md", "---\nname: a\n---\n")
    write_agent("home/.claude/agents/a.md", "a", body="user")

    registry = load_registry(roots_in(tmp_path))

    assert registry.agents["a"].body == "user"
    assert [d.reason for d in registry.diagnostics] == ["missing required key 'description'"]


def test_rejected_files_are_logged_and_nothing_goes_to_stdout(
    tmp_path: Path,
    write: Write,
    write_agent: MakeFile,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = write("project/.claude/agents/bad.md", "no front matter here")
    write_agent("project/.claude/agents/good.md", "good")

    with caplog.at_level(logging.INFO, logger="agents_registry"):
        load_registry(roots_in(tmp_path))

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.name, r.getMessage()) for r in warnings] == [
        (
            "agents_registry",
            f"rejected {bad}: no front matter: the file must start with a '---' line",
        )
    ]
    assert capsys.readouterr().out == ""


def test_a_diagnostic_reads_as_path_then_reason() -> None:
    assert str(Diagnostic(Path("/a/b.md"), "why")) == "/a/b.md: why"


def test_parsing_returns_an_absolute_path_for_a_relative_one(
    tmp_path: Path, write_agent: MakeFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_agent("agents/a.md", "a")
    monkeypatch.chdir(tmp_path)

    result = parse_definition(Path("agents/a.md"), "agent", "extra")

    assert isinstance(result, AgentDefinition)
    assert result.path == tmp_path / "agents/a.md"


def test_sha256_is_the_digest_of_the_raw_bytes_and_follows_edits(write_agent: MakeFile) -> None:
    path = write_agent("agents/a.md", "a", body="one")
    before = parse_definition(path, "agent", "user")
    path.write_text(path.read_text().replace("one", "two"))
    after = parse_definition(path, "agent", "user")

    assert isinstance(before, AgentDefinition) and isinstance(after, AgentDefinition)
    assert after.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert before.sha256 != after.sha256


@pytest.mark.parametrize(
    ("content", "start"),
    [
        (b"", "no front matter"),
        (b"# Just markdown\n", "no front matter"),
        (b"---\nname: a\n", "front matter is not closed"),
        (b"---\nname: a\n- x\n---\n", "invalid YAML in front matter at line 3"),
        (b"---\n- a\n---\n", "front matter must be a mapping of keys to values, got list"),
        (b"---\nname: caf\xe9\n---\n", "not valid UTF-8: byte 0xe9 at offset 13"),
    ],
    ids=["empty", "no-fence", "unclosed", "bad-yaml", "list", "not-utf8"],
)
def test_bad_files_become_diagnostics(write: Write, content: bytes, start: str) -> None:
    assert rejection(write("agents/a.md", content)).startswith(start)


def test_a_file_over_the_size_limit_is_rejected_unread(write_agent: MakeFile) -> None:
    path = write_agent("agents/a.md", "a", body="x" * 200)

    assert rejection(path, max_bytes=100) == (
        "file is larger than 100 bytes; definitions are small"
    )
    assert isinstance(parse_definition(path, "agent", "user", max_bytes=1000), AgentDefinition)


def test_a_missing_file_is_a_diagnostic(tmp_path: Path) -> None:
    assert rejection(tmp_path / "gone.md") == "cannot read file: No such file or directory"


def test_a_directory_is_a_diagnostic(tmp_path: Path) -> None:
    assert rejection(tmp_path).startswith("cannot read file: Is a directory")


def test_a_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)

    assert rejection(fifo) == "not a regular file"


def test_an_unreadable_file_is_a_diagnostic(write_agent: MakeFile) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = write_agent("agents/a.md", "a")
    path.chmod(0)

    assert rejection(path) == "cannot read file: Permission denied"


def test_a_utf8_bom_and_crlf_file_loads(write: Write) -> None:
    path = write("agents/a.md", "\ufeff---\r\nname: a\r\ndescription: d\r\n---\r\nBody\r\n")

    result = parse_definition(path, "agent", "user")

    assert isinstance(result, AgentDefinition)
    assert (result.name, result.body) == ("a", "Body")


def test_many_generated_files_load(
    tmp_path: Path, write_agent: MakeFile, write_skill: MakeFile
) -> None:
    for i in range(2000):
        write_agent(
            f"project/.claude/agents/group{i % 20}/agent{i:04}.md",
            f"agent-{i:04}",
            front="tools: Read, Grep, Bash(git diff:*)\nmodel: sonnet\nmaxTurns: 5\n",
        )
    for i in range(500):
        write_skill(f"home/.claude/skills/skill{i:03}", front="allowed-tools: [Read]\n")

    registry = load_registry(roots_in(tmp_path))

    assert (len(registry.agents), len(registry.skills), registry.diagnostics) == (2000, 500, ())
