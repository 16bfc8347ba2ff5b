from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest

from agents_registry import AgentDefinition, Diagnostic, Kind, SkillDefinition, parse_definition
from agents_registry.registry import parse_file

Write = Callable[[str, str | bytes], Path]
MakeFile = Callable[..., Path]


def agent_from(path: Path) -> AgentDefinition:
    result = parse_definition(path, "agent", "project")
    assert isinstance(result, AgentDefinition), result
    return result


def skill_from(path: Path) -> SkillDefinition:
    result = parse_definition(path, "skill", "user")
    assert isinstance(result, SkillDefinition), result
    return result


def loaded_with_warnings(path: Path, kind: Kind = "agent") -> tuple[object, list[str]]:
    """The definition a file makes, and the reasons of its warnings (it must load)."""
    result, warnings = parse_file(path, kind, "project")
    assert not isinstance(result, Diagnostic), result
    assert all(w.severity == "warning" for w in warnings)
    return result, [w.reason for w in warnings]


def reason_for(path: Path, kind: Kind = "agent") -> str:
    result = parse_definition(path, kind, "project")
    assert isinstance(result, Diagnostic), result
    assert result.severity == "error"
    return result.reason


def test_agent_fields_are_read_with_the_cli_spelling(write_agent: MakeFile) -> None:
    path = write_agent(
        "agents/reviewer.md",
        "reviewer",
        front=(
            "model: sonnet\ntools: Read, Grep\ndisallowedTools: [Bash]\ncolor: blue\n"
            "permissionMode: plan\nskills: lint test\nmaxTurns: 7\neffort: high\n"
            "mcpServers:\n  - github\n  - local: {command: srv, args: [-v]}\n"
        ),
        body="You review code.",
    )

    agent = agent_from(path)

    assert agent.kind == "agent"
    assert (agent.name, agent.description, agent.model) == (
        "reviewer",
        "The reviewer agent.",
        "sonnet",
    )
    assert agent.tools == ("Read", "Grep")
    assert agent.disallowed_tools == ("Bash",)
    assert (agent.color, agent.permission_mode, agent.effort) == ("blue", "plan", "high")
    assert agent.skills == ("lint", "test")
    assert agent.max_turns == 7
    assert agent.mcp_servers == ["github", {"local": {"command": "srv", "args": ["-v"]}}]
    assert agent.body == "You review code."
    assert (agent.path, agent.scope, agent.extra) == (path, "project", {})


def test_optional_agent_fields_default_to_none(write_agent: MakeFile) -> None:
    agent = agent_from(write_agent("agents/a.md", "a"))

    assert (agent.tools, agent.model, agent.max_turns, agent.mcp_servers) == (None,) * 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Read, Grep, Glob", ("Read", "Grep", "Glob")),
        ("Read,Grep", ("Read", "Grep")),
        ("Read Grep\tGlob", ("Read", "Grep", "Glob")),
        ("[Read, Grep]", ("Read", "Grep")),
        ("\n  - Read\n  - ' Grep '\n  - ''", ("Read", "Grep")),
        ("Read,, ,Grep,", ("Read", "Grep")),
        (
            "Bash(git add:*, git commit:*) Read, Grep",
            ("Bash(git add:*, git commit:*)", "Read", "Grep"),
        ),
        (
            "mcp__github__search, Bash(npm run test:*)",
            ("mcp__github__search", "Bash(npm run test:*)"),
        ),
        ("''", ()),
        ("[]", ()),
        ("", None),
    ],
    ids=[
        "commas",
        "commas-no-space",
        "whitespace",
        "flow-list",
        "block-list",
        "empty-entries",
        "parentheses",
        "mcp-and-rule",
        "empty-string",
        "empty-list",
        "null",
    ],
)
def test_tools_accept_a_list_or_a_separated_string(
    write_agent: MakeFile, value: str, expected: tuple[str, ...] | None
) -> None:
    agent = agent_from(write_agent("agents/a.md", "a", front=f"tools: {value}\n"))

    assert agent.tools == expected


def test_a_number_for_tools_is_ignored_with_a_warning_naming_key_and_type(
    write_agent: MakeFile,
) -> None:
    # Claude Code loads this agent with all tools (checked on 2.1.197 and 2.1.332).
    agent, warnings = loaded_with_warnings(write_agent("agents/a.md", "a", front="tools: 5\n"))

    assert isinstance(agent, AgentDefinition) and agent.tools is None
    assert warnings == ["'tools' must be a list or a comma-separated string, got int; "
                        "ignored, as Claude Code ignores it"]


def test_a_tool_list_keeps_its_strings_and_warns_about_the_rest(write_agent: MakeFile) -> None:
    path = write_agent("agents/a.md", "a", front="disallowedTools: [Read, 3]\n")

    agent, warnings = loaded_with_warnings(path)

    assert isinstance(agent, AgentDefinition) and agent.disallowed_tools == ("Read",)
    assert warnings == ["'disallowedTools' lists non-strings (3); left out, as Claude Code does"]


def test_unknown_keys_are_kept_as_is_in_extra(write_agent: MakeFile) -> None:
    path = write_agent(
        "agents/a.md",
        "a",
        front=(
            "hooks: {Stop: [{command: x}]}\nmemory: project\npath: /elsewhere\nbody: other\n"
            "max_turns: 3\n"
        ),
    )

    agent = agent_from(path)

    assert agent.extra == {
        "hooks": {"Stop": [{"command": "x"}]},
        "memory": "project",
        "path": "/elsewhere",
        "body": "other",
        "max_turns": 3,
    }
    assert (agent.path, agent.body, agent.max_turns) == (path, "You help.", None)


def test_quoted_values_are_read_as_text(write_agent: MakeFile) -> None:
    path = write_agent(
        "agents/a.md", "'quoted'", description='"Use it: always, #1"', front="model: 'opus'\n"
    )

    agent = agent_from(path)

    assert (agent.name, agent.description, agent.model) == ("quoted", "Use it: always, #1", "opus")


def test_an_agent_without_a_name_is_rejected(write: Write) -> None:
    path = write("agents/a.md", "---\ndescription: Helps.\n---\nBody\n")

    assert reason_for(path) == "missing required key 'name'"


def test_a_definition_without_a_description_is_rejected(write: Write) -> None:
    path = write("agents/a.md", "---\nname: a\n---\nBody\n")

    assert reason_for(path) == "missing required key 'description'"


@pytest.mark.parametrize(
    ("description", "got"),
    [("42", "int"), ("[a, b]", "list"), ("", "null"), ("'  '", "an empty one")],
)
def test_a_description_must_be_a_non_empty_string(
    write_agent: MakeFile, description: str, got: str
) -> None:
    path = write_agent("agents/a.md", "a", description=description)

    assert reason_for(path) == f"'description' must be a non-empty string, got {got}"


def test_a_name_with_a_newline_is_rejected(write_agent: MakeFile) -> None:
    path = write_agent("agents/a.md", '"two\\nlines"')

    assert reason_for(path).startswith("'name' must not contain newlines or control characters")


def test_names_and_descriptions_are_stripped(write_agent: MakeFile) -> None:
    agent = agent_from(write_agent("agents/a.md", "' a '", description="'  Helps.  '"))

    assert (agent.name, agent.description) == ("a", "Helps.")


@pytest.mark.parametrize(
    ("value", "got"), [("0", "0"), ("-2", "-2"), ("'5'", "str"), ("true", "bool"), ("1.5", "float")]
)
def test_a_max_turns_that_is_not_a_positive_integer_is_ignored_with_a_warning(
        write_agent: MakeFile, value: str, got: str) -> None:
    agent, warnings = loaded_with_warnings(
        write_agent("agents/a.md", "a", front=f"maxTurns: {value}\n"))

    assert isinstance(agent, AgentDefinition) and agent.max_turns is None
    assert warnings == [f"'maxTurns' must be a positive integer, got {got}; "
                        "ignored, as Claude Code ignores it"]


def test_a_model_that_is_not_text_is_ignored_with_a_warning(write_agent: MakeFile) -> None:
    agent, warnings = loaded_with_warnings(write_agent("agents/a.md", "a", front="model: 4\n"))

    assert isinstance(agent, AgentDefinition) and agent.model is None
    assert warnings == ["'model' must be a string, got int; ignored, as Claude Code ignores it"]


def test_a_bad_optional_value_is_reported_with_the_missing_required_key(write: Write) -> None:
    reason = reason_for(write("agents/a.md", "---\nname: a\nmodel: 4\n---\n"))

    assert reason == "missing required key 'description'; 'model' must be a string, got int"


def test_every_bad_field_is_reported_on_one_line(write: Write) -> None:
    path = write("agents/a.md", "---\nname: a\ntools: 5\nmaxTurns: 0\n---\n")

    reason = reason_for(path)

    assert reason == (
        "missing required key 'description'; "
        "'tools' must be a list or a comma-separated string, got int; "
        "'maxTurns' must be a positive integer, got 0"
    )


def test_a_skill_name_defaults_to_its_folder_name(write_skill: MakeFile) -> None:
    skill = skill_from(write_skill("skills/pdf-tools"))

    assert (skill.kind, skill.name, skill.scope) == ("skill", "pdf-tools", "user")
    assert skill.directory == skill.path.parent


def test_a_skill_is_named_by_its_folder_and_keeps_its_own_name_for_display(
        write_skill: MakeFile) -> None:
    # The CLI invokes it as /folder (2.1.332 lists it as "folder (named)").
    skill = skill_from(write_skill("skills/folder", front="name: named\n"))

    assert (skill.name, skill.display_name) == ("folder", "named")


@pytest.mark.parametrize(
    ("front", "body", "description"),
    [("description: 42\n", "", "42"), ("description: true\n", "", "true"),
     ("description: [a, b]\n", "Use the body.", "Use the body."),
     ("description: ''\n", "\n## Heading line\nmore", "Heading line"),
     ("", "", "Skill")],
    ids=["number", "bool", "list", "empty", "nothing"],
)
def test_a_skill_description_falls_back_as_in_the_cli(
        write: Write, front: str, body: str, description: str) -> None:
    skill = skill_from(write("skills/s/SKILL.md", f"---\n{front}---\n{body}"))

    assert skill.description == description


def test_skill_fields_are_read_with_the_cli_spelling(write_skill: MakeFile) -> None:
    path = write_skill(
        "skills/s",
        front=(
            "allowed-tools: Bash(git add:*, git commit:*) Read\n"
            "disallowed-tools: [Write]\n"
            "argument-hint: '<file> [--fix]'\n"
            "when_to_use: After edits.\n"
            "model: haiku\n"
            "context: fork\n"
        ),
        body="Steps.",
    )

    skill = skill_from(path)

    assert skill.allowed_tools == ("Bash(git add:*, git commit:*)", "Read")
    assert skill.disallowed_tools == ("Write",)
    assert skill.argument_hint == "<file> [--fix]"
    assert (skill.when_to_use, skill.model, skill.body) == ("After edits.", "haiku", "Steps.")
    assert skill.extra == {"context": "fork"}


def test_an_argument_hint_written_in_brackets_is_kept_as_written(write_skill: MakeFile) -> None:
    skill = skill_from(write_skill("skills/s", front="argument-hint: [file]\n"))

    assert skill.argument_hint == "[file]"


def test_a_skill_with_bad_allowed_tools_loads_without_them(write_skill: MakeFile) -> None:
    path = write_skill("skills/s", front="allowed-tools: {a: 1}\n")

    skill, warnings = loaded_with_warnings(path, "skill")

    assert isinstance(skill, SkillDefinition) and skill.allowed_tools is None
    assert warnings == ["'allowed-tools' must be a list or a comma-separated string, got dict; "
                        "ignored, as Claude Code ignores it"]


def test_definitions_are_frozen(write_agent: MakeFile) -> None:
    agent = agent_from(write_agent("agents/a.md", "a"))

    with pytest.raises(pydantic.ValidationError):
        agent.name = "b"
