"""Text -> (metadata, body): YAML front matter between ``---`` fences.

Knows fences, a UTF-8 byte order mark and CRLF / CR line endings; nothing about agents.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.reader import ReaderError

# The C loader is many times faster; thousands of files must load in well under a second.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FENCE = "---"
BOM = "\ufeff"
MAX_DEPTH = 100
"""Deepest nesting of lists and mappings accepted in front matter."""


class FrontMatterError(ValueError):
    """The text has no usable front matter; ``reason`` is one line saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a Markdown file into its front matter mapping and its body.

    The body has ``\\n`` line endings and no leading or trailing blank lines.
    Raises ``FrontMatterError`` when the fences, the YAML or its shape are wrong.
    """
    lines = normalize_newlines(text.removeprefix(BOM)).split("\n")
    if lines[0].rstrip() != FENCE:
        raise FrontMatterError("no front matter: the file must start with a '---' line")
    closing = _closing_fence(lines)
    metadata = _load_mapping("\n".join(lines[1:closing]))
    return metadata, strip_blank_lines(lines[closing + 1 :])


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def strip_blank_lines(lines: list[str]) -> str:
    """Join ``lines``, leaving out blank lines at either end; indentation is kept."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


def _closing_fence(lines: list[str]) -> int:
    for index in range(1, len(lines)):
        if lines[index].rstrip() == FENCE:
            return index
    raise FrontMatterError("front matter is not closed: no '---' line after the opening one")


def _load_mapping(source: str) -> dict[str, Any]:
    data = _load_yaml(source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FrontMatterError(
            f"front matter must be a mapping of keys to values, got {type(data).__name__}"
        )
    for key in data:
        if not isinstance(key, str):
            raise FrontMatterError(
                f"front matter keys must be strings, got {type(key).__name__} key {key!r}"
            )
    return data


def _load_yaml(source: str) -> object:
    try:
        if _may_nest_deeper(source, MAX_DEPTH) and _nests_deeper(source, MAX_DEPTH):
            raise FrontMatterError(f"front matter nests deeper than {MAX_DEPTH} levels")
        return yaml.load(source, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise FrontMatterError(_yaml_reason(exc, source)) from None


def _may_nest_deeper(source: str, limit: int) -> bool:
    # The C loader recurses once per level and crashes the process (SIGSEGV) on very deep
    # nesting. Each level needs one of these characters, so most sources skip the exact count.
    return sum(source.count(char) for char in "[{-?:\n") >= limit


def _nests_deeper(source: str, limit: int) -> bool:
    depth = 0
    try:
        for event in yaml.parse(source, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    return True
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        # PyYAML 6.0.3+ has its own nesting cap; it means the same thing as ours.
        if "nesting depth" in str(exc):
            return True
        raise
    return False


def _yaml_reason(exc: yaml.YAMLError, source: str) -> str:
    # Lines are counted in the file: the YAML starts on line 2, after the opening fence.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = _one_line(exc.problem or "syntax error")
        where = f"line {mark.line + 2}, column {mark.column + 1}"
        return f"invalid YAML in front matter at {where}: {problem}"
    if isinstance(exc, ReaderError):
        line = source.count("\n", 0, exc.position) + 2
        return f"invalid YAML in front matter at line {line}: {_one_line(str(exc).splitlines()[0])}"
    return f"invalid YAML in front matter: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
