"""Front matter -> validated, frozen ``AgentDefinition`` / ``SkillDefinition``.

Known keys become typed fields (with the CLI's spelling as the alias); every other key is kept
as-is in ``extra``. A bad value is reported as one line naming the key, what was expected and
what was found. As in Claude Code, only ``name`` and ``description`` decide whether a file is a
definition: a bad optional value (``model: 42``, ``maxTurns: 0``) is dropped with a warning, and
non-strings in a tool list are left out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from .frontmatter import js_string

Scope = Literal["project", "user", "extra"]
Kind = Literal["agent", "skill"]


class DefinitionError(ValueError):
    """The front matter does not make a definition; ``reason`` is one line saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a non-empty string, got {_type_name(value)}")
    if not value.strip():
        raise ValueError("must be a non-empty string, got an empty one")
    return value.strip()


def _name(value: object) -> str:
    name = _text(value)
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError(f"must not contain newlines or control characters, got {name!r}")
    return name


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_type_name(value)}")
    return value.strip() or None


def _hint(value: object) -> str | None:
    # `argument-hint: [file]` is how hints are usually written, and YAML reads it as a list.
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return _optional_text(value)


def _positive_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a positive integer, got {_type_name(value)}")
    if value < 1:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def _tool_list(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return split_tool_list(value)
    if isinstance(value, list | tuple):
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str):
                got = _type_name(item)
                raise ValueError(f"must list strings, got {got} at position {position}")
        return tuple(item.strip() for item in value if item.strip())
    raise ValueError(f"must be a list or a comma-separated string, got {_type_name(value)}")


def split_tool_list(text: str) -> tuple[str, ...]:
    """Split on commas and whitespace outside parentheses: ``Bash(git add:*, git commit:*)``."""
    entries: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if depth == 0 and (char == "," or char.isspace()):
            entries.append("".join(current))
            current = []
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        current.append(char)
    entries.append("".join(current))
    return tuple(entry for entry in entries if entry)


Name = Annotated[str, BeforeValidator(_name)]
Text = Annotated[str, BeforeValidator(_text)]
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]
Hint = Annotated[str | None, BeforeValidator(_hint)]
PositiveInt = Annotated[int | None, BeforeValidator(_positive_int)]
ToolList = Annotated[tuple[str, ...] | None, BeforeValidator(_tool_list)]


class _Definition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    description: Text
    model: OptionalText = None
    """A model alias (``sonnet``, ``opus``, ``inherit``) or a full model name."""
    body: str
    """The Markdown after the front matter, without leading or trailing blank lines."""
    path: Path
    """Absolute path of the file, as found (symlinks are not resolved)."""
    scope: Scope
    sha256: str
    """Hex digest of the file's raw bytes."""
    extra: dict[str, Any]
    """Front matter keys this model does not know, exactly as YAML read them."""


class AgentDefinition(_Definition):
    """An agent file: ``<root>/agents/**/<name>.md``; its body is the system prompt."""

    kind: Literal["agent"] = "agent"
    tools: ToolList = None
    """``None`` means the CLI's default set; ``()`` was written as an empty list or string."""
    disallowed_tools: ToolList = Field(default=None, alias="disallowedTools")
    color: OptionalText = None
    permission_mode: OptionalText = Field(default=None, alias="permissionMode")
    skills: ToolList = None
    max_turns: PositiveInt = Field(default=None, alias="maxTurns")
    effort: OptionalText = None
    mcp_servers: Any = Field(default=None, alias="mcpServers")
    """Raw JSON-like value: server names or inline configs, passed on unchecked."""


class SkillDefinition(_Definition):
    """A skill folder: ``<root>/skills/<name>/SKILL.md``; its name defaults to the folder's."""

    kind: Literal["skill"] = "skill"
    display_name: str | None = None
    """The front matter's ``name`` when it differs from the folder's: the CLI invokes a skill
    by its folder name and only shows this one beside it."""
    allowed_tools: ToolList = Field(default=None, alias="allowed-tools")
    disallowed_tools: ToolList = Field(default=None, alias="disallowed-tools")
    argument_hint: Hint = Field(default=None, alias="argument-hint")
    when_to_use: OptionalText = None
    directory: Path
    """The skill's folder, which holds SKILL.md and any files it refers to."""


Definition = AgentDefinition | SkillDefinition

# Fields that come from the file and its place, never from front matter.
_CONTEXT_FIELDS = frozenset(
    {"kind", "body", "path", "scope", "sha256", "extra", "directory", "display_name"})
_REQUIRED_KEYS = frozenset({"name", "description"})
_TOOL_LIST_KEYS = frozenset({"tools", "disallowedTools", "skills", "allowed-tools",
                             "disallowed-tools"})
_SKILL_DESCRIPTION_DEFAULT = "Skill"
"""What the CLI lists for a skill with neither a description nor a body."""


def _front_matter_keys(model: type[_Definition]) -> frozenset[str]:
    return frozenset(
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in _CONTEXT_FIELDS
    )


FRONT_MATTER_KEYS: Mapping[Kind, frozenset[str]] = {
    "agent": _front_matter_keys(AgentDefinition),
    "skill": _front_matter_keys(SkillDefinition),
}


def build_definition(
    kind: Kind, metadata: Mapping[str, Any], *, body: str, path: Path, scope: Scope, sha256: str
) -> Definition:
    """Validate front matter into a definition; ``DefinitionError`` says why it is not one."""
    definition, _ = validate_definition(kind, metadata, body=body, path=path, scope=scope,
                                        sha256=sha256)
    return definition


def validate_definition(
    kind: Kind, metadata: Mapping[str, Any], *, body: str, path: Path, scope: Scope, sha256: str
) -> tuple[Definition, list[str]]:
    """A definition and the warnings about values it left out, or ``DefinitionError``."""
    known = FRONT_MATTER_KEYS[kind]
    fields = {key: value for key, value in metadata.items() if key in known}
    extra = {key: value for key, value in metadata.items() if key not in known}
    warnings = _keep_string_tools(fields)
    if fields.get("tools") in ("*", ["*"]):
        del fields["tools"]  # the CLI's spelling of "all tools", its default
    fields.update(body=body, path=path, scope=scope, sha256=sha256, extra=extra)
    model: type[Definition] = AgentDefinition
    if kind == "skill":
        model = SkillDefinition
        _skill_identity(fields, body, path)
    while True:
        try:
            return model.model_validate(fields), warnings
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if any(str(error["loc"][0]) in _REQUIRED_KEYS for error in errors):
                raise DefinitionError(validation_reason(exc)) from None
            for error in errors:
                fields.pop(str(error["loc"][0]), None)
                warnings.append(f"{_error_reason(error)}; ignored, as Claude Code ignores it")


def _keep_string_tools(fields: dict[str, Any]) -> list[str]:
    # The CLI keeps the strings of a tool list and skips anything else.
    warnings: list[str] = []
    for key in _TOOL_LIST_KEYS & fields.keys():
        value = fields[key]
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            fields[key] = [item for item in value if isinstance(item, str)]
            dropped = ", ".join(repr(item) for item in value if not isinstance(item, str))
            warnings.append(f"'{key}' lists non-strings ({dropped}); left out, as Claude Code does")
    return warnings


def _skill_identity(fields: dict[str, Any], body: str, path: Path) -> None:
    """A skill is named by its folder; its description falls back to its first body line."""
    declared = fields.get("name")
    fields["directory"] = path.parent
    fields["name"] = path.parent.name
    if isinstance(declared, str | bool | int | float):
        shown = js_string(declared).strip()
        if shown and shown != path.parent.name:
            fields["display_name"] = shown
    description = fields.get("description")
    if isinstance(description, bool | int | float):
        description = js_string(description)
    if not (isinstance(description, str) and description.strip()):
        description = first_body_line(body) or _SKILL_DESCRIPTION_DEFAULT
    fields["description"] = description


def first_body_line(body: str) -> str:
    """The first non-blank line of ``body`` without Markdown heading marks."""
    for line in body.split("\n"):
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


def validation_reason(exc: ValidationError) -> str:
    return "; ".join(_error_reason(error) for error in exc.errors(include_url=False))


def _error_reason(error: ErrorDetails) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"missing required key '{key}'"
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return f"'{key}' {error['ctx']['error']}"
    return f"'{key}': {error['msg']}"
