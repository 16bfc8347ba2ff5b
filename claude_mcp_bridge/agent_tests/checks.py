"""Checks on what one run of a case produced: each kind, validated and evaluated.

In a test file a check is a mapping with one key, its kind::

    - contains: paging.py               # a string or a list: every item must appear
    - not_contains: [TODO, FIXME]       # none may appear
    - matches: 'paging\\.py:\\d+'         # a regular expression, searched line by line
    - json_schema: {type: object, required: [severity]}
    - cost_at_most: 0.25                # US dollars, as the CLI reported them
    - turns_at_most: 8
    - tools_used: [Read, "mcp__github__*"]     # shell-style patterns; each must match a use
    - tools_not_used: [Bash, Write, Edit]      # no use may match
    - file_exists: REVIEW.md            # paths relative to the case's working copy
    - file_contains: {path: REVIEW.md, text: off-by-one}
    - file_changed: src/paging.py       # differs from the fixture's file, or is new

``json_schema`` also goes to the CLI as ``--json-schema`` (with ``StructuredOutput`` added
to a tool-restricted agent's tools, see ``execute.py``), so the agent answers with
structured output; the check validates that output (or, when the CLI gave none, the
answer text read as JSON).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)


@dataclass(frozen=True)
class Observation:
    """What one run produced, as the checks see it."""

    answer: str
    structured_output: Any
    """The CLI's ``structured_output`` (None: the run had none)."""
    cost_usd: float | None
    num_turns: int | None
    tools_used: tuple[str, ...]
    """Names of the tools the agent asked to run, in order, repeats included."""
    workdir: Path
    """The case's working copy, after the run."""
    fixture: Path | None
    """The original fixture folder (never modified), or None."""


@dataclass(frozen=True)
class CheckResult:
    check: str
    """The check's kind, or ``judge``."""
    passed: bool
    detail: str
    """Why it failed, or what it found."""

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


def _one_or_many(value: object) -> object:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a string or a list of strings, got {_shape(value)}")
    return value


def _relative_path(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty path")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be a path inside the working copy, without '..', got {value!r}")
    return value


Texts = Annotated[tuple[Annotated[str, Field(min_length=1)], ...],
                  BeforeValidator(_one_or_many), Field(min_length=1)]
RelativePath = Annotated[str, BeforeValidator(_relative_path)]
RelativePaths = Annotated[tuple[RelativePath, ...], BeforeValidator(_one_or_many),
                          Field(min_length=1)]


class Check(BaseModel, ABC):
    """One check; its only field is named after its kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str]

    @abstractmethod
    def evaluate(self, seen: Observation) -> CheckResult:
        """Whether what the run did passes this check, and what was seen."""

    def _result(self, passed: bool, detail: str) -> CheckResult:
        return CheckResult(self.kind, passed, detail)


class Contains(Check):
    kind: ClassVar[str] = "contains"
    contains: Texts

    def evaluate(self, seen: Observation) -> CheckResult:
        missing = [text for text in self.contains if text not in seen.answer]
        if missing:
            return self._result(False, f"{_listed(missing)} not in the answer{_excerpt(seen)}")
        return self._result(True, f"found {_listed(self.contains)}")


class NotContains(Check):
    kind: ClassVar[str] = "not_contains"
    not_contains: Texts

    def evaluate(self, seen: Observation) -> CheckResult:
        found = [text for text in self.not_contains if text in seen.answer]
        if found:
            return self._result(False, f"{_listed(found)} found in the answer{_excerpt(seen)}")
        return self._result(True, f"none of {_listed(self.not_contains)} in the answer")


class Matches(Check):
    kind: ClassVar[str] = "matches"
    matches: str

    @field_validator("matches")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def evaluate(self, seen: Observation) -> CheckResult:
        match = re.search(self.matches, seen.answer, re.MULTILINE)
        if match is None:
            return self._result(False, f"no match for /{self.matches}/{_excerpt(seen)}")
        return self._result(True, f"matched {match.group(0)[:80]!r}")


class JsonSchema(Check):
    kind: ClassVar[str] = "json_schema"
    json_schema: dict[str, Any]

    @field_validator("json_schema")
    @classmethod
    def _is_a_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            validator_for(value).check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    def evaluate(self, seen: Observation) -> CheckResult:
        value = seen.structured_output
        source = "structured output"
        if value is None:
            value, source = _json_in(seen.answer), "answer"
            if value is None:
                return self._result(
                    False, f"no structured output, and the answer is not JSON{_excerpt(seen)}")
        validator = validator_for(self.json_schema)(self.json_schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = first.json_path if first.absolute_path else "the value"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return self._result(False, f"the {source} does not match the schema: at {where}: "
                                       f"{first.message}{more}")
        return self._result(True, f"the {source} matches the schema")


class CostAtMost(Check):
    kind: ClassVar[str] = "cost_at_most"
    cost_at_most: Annotated[float, Field(ge=0)]

    def evaluate(self, seen: Observation) -> CheckResult:
        cost = seen.cost_usd
        if cost is None:
            return self._result(False, "the CLI reported no cost")
        within = cost <= self.cost_at_most
        return self._result(within, f"cost ${cost:.4f}, at most ${self.cost_at_most:.4f}")


class TurnsAtMost(Check):
    kind: ClassVar[str] = "turns_at_most"
    turns_at_most: Annotated[int, Field(ge=1)]

    def evaluate(self, seen: Observation) -> CheckResult:
        turns = seen.num_turns
        if turns is None:
            return self._result(False, "the CLI reported no turn count")
        return self._result(turns <= self.turns_at_most,
                            f"{turns} turns, at most {self.turns_at_most}")


class ToolsUsed(Check):
    kind: ClassVar[str] = "tools_used"
    tools_used: Texts

    def evaluate(self, seen: Observation) -> CheckResult:
        missing = [p for p in self.tools_used if not _any_match(p, seen.tools_used)]
        if missing:
            return self._result(False, f"never used {_listed(missing)}; used {_tools(seen)}")
        return self._result(True, f"used {_tools(seen)}")


class ToolsNotUsed(Check):
    kind: ClassVar[str] = "tools_not_used"
    tools_not_used: Texts

    def evaluate(self, seen: Observation) -> CheckResult:
        used = sorted({t for t in seen.tools_used if any(fnmatchcase(t, p)
                                                          for p in self.tools_not_used)})
        if used:
            return self._result(False, f"used {_listed(used)}")
        return self._result(True, f"none of {_listed(self.tools_not_used)} used")


class FileExists(Check):
    kind: ClassVar[str] = "file_exists"
    file_exists: RelativePaths

    def evaluate(self, seen: Observation) -> CheckResult:
        missing = [p for p in self.file_exists if _inside(seen.workdir, p) is None]
        if missing:
            return self._result(False, f"{_listed(missing)} missing from the working copy")
        return self._result(True, f"{_listed(self.file_exists)} present")


class FileContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: RelativePath
    text: Texts


class FileContains(Check):
    kind: ClassVar[str] = "file_contains"
    file_contains: FileContent

    def evaluate(self, seen: Observation) -> CheckResult:
        wanted = self.file_contains
        path = _inside(seen.workdir, wanted.path)
        if path is None:
            return self._result(False, f"{wanted.path!r} missing from the working copy")
        content = path.read_text("utf-8", "replace")
        missing = [text for text in wanted.text if text not in content]
        if missing:
            return self._result(False, f"{_listed(missing)} not in {wanted.path!r}")
        return self._result(True, f"{wanted.path!r} holds {_listed(wanted.text)}")


class FileChanged(Check):
    kind: ClassVar[str] = "file_changed"
    file_changed: RelativePaths

    def evaluate(self, seen: Observation) -> CheckResult:
        problems: list[str] = []
        for relative in self.file_changed:
            path = _inside(seen.workdir, relative)
            before = seen.fixture / relative if seen.fixture else None
            if path is None:
                problems.append(f"{relative!r} missing")
            elif before is not None and before.is_file() and \
                    before.read_bytes() == path.read_bytes():
                problems.append(f"{relative!r} unchanged")
        if problems:
            return self._result(False, "; ".join(problems))
        return self._result(True, f"{_listed(self.file_changed)} changed or created")


CHECK_KINDS: dict[str, type[Check]] = {
    model.kind: model
    for model in (Contains, NotContains, Matches, JsonSchema, CostAtMost, TurnsAtMost,
                  ToolsUsed, ToolsNotUsed, FileExists, FileContains, FileChanged)
}


def parse_check(value: object) -> Check:
    """A one-key mapping -> its check; raises ValueError naming what is wrong."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("a check is a mapping with one key, its kind: one of "
                         f"{', '.join(CHECK_KINDS)}; got {_shape(value)}")
    ((kind, _),) = value.items()
    model = CHECK_KINDS.get(kind)
    if model is None:
        raise ValueError(f"unknown check {kind!r}; the kinds are {', '.join(CHECK_KINDS)}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:  # a ValueError: pydantic would nest its whole text
        raise ValueError(f"{kind}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"][1:])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _shape(value: object) -> str:
    if isinstance(value, dict):
        return f"a mapping with keys {', '.join(map(str, value)) or '(none)'}"
    return "null" if value is None else type(value).__name__


def _inside(workdir: Path, relative: str) -> Path | None:
    """The regular file at ``relative`` if it exists and (links resolved) stays inside."""
    path = (workdir / relative).resolve()
    if not path.is_relative_to(workdir.resolve()) or not path.is_file():
        return None
    return path


def _any_match(pattern: str, names: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for name in names)


def _json_in(answer: str) -> Any:
    """The answer as JSON, also when fenced in a Markdown code block; None if it is not."""
    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n(.*?)\n?```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except ValueError:
        return None


def _listed(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(repr(item) for item in items)


def _tools(seen: Observation) -> str:
    return ", ".join(dict.fromkeys(seen.tools_used)) or "no tools"


def _excerpt(seen: Observation, limit: int = 160) -> str:
    text = " ".join(seen.answer.split())
    if not text:
        return " (the answer is empty)"
    return f" (answer: {text[:limit]!r}{'...' if len(text) > limit else ''})"
