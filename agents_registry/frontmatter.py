"""Text -> (metadata, body): YAML front matter between ``---`` fences, read as Claude Code reads it.

Knows fences, a UTF-8 byte order mark, CRLF / CR line endings, YAML 1.2 scalars, and the CLI's
fallback for front matter that is not valid YAML; nothing about agents.

The rules, each checked against the real CLI (2.1.197 and 2.1.332):

- The file starts with ``---`` (trailing spaces allowed). The front matter ends at the next
  ``---``, even in the middle of a line: ``description: a---b`` reads as ``a``.
- Scalars resolve as YAML 1.2 (core schema): ``yes``, ``on`` and dates stay strings; unknown
  tags (``!x value``) are dropped and the value kept.
- When the YAML is invalid, each ``key: value`` line (key of letters, ``_`` and ``-`` at the
  start of a line, LF line ending) whose value holds one of ``{}[]*&#!|>%@``` or ``": "`` is
  re-quoted, unless the value is already quoted or is a ``[...]`` list, and the text is parsed
  again. Success is a warning naming the line of the original error; failure is the error.

Every parse is bounded: front matter over ``MAX_FRONT_MATTER_CHARS``, nesting deeper than
``MAX_DEPTH`` or aliases that would expand to more than ``MAX_NODES`` nodes (a "billion laughs"
file) are refused before the YAML is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from yaml.reader import ReaderError

# The C parser is many times faster; thousands of files must load in well under a second.
if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FENCE = "---"
BOM = "\ufeff"
MAX_DEPTH = 100
"""Deepest nesting of lists and mappings accepted in front matter."""
MAX_NODES = 10_000
"""Most nodes front matter may hold once its aliases are expanded."""
MAX_FRONT_MATTER_CHARS = 65_536
"""Longest front matter accepted; real definitions use a few hundred characters."""

_OPENING = re.compile(r"---\s*\n")
_KEY_LINE = re.compile(r"([a-zA-Z_-]+):\s+([^\r\n\u2028\u2029]+)")
_NEEDS_QUOTES = re.compile(r"[{}\[\]*&#!|>%@`]|: ")


class FrontMatterError(ValueError):
    """The text has no usable front matter; ``reason`` is one line saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FrontMatter:
    """What a file's front matter says, its body, and how leniently it had to be read."""

    metadata: dict[str, Any]
    body: str
    """The Markdown after the front matter: ``\\n`` line endings, no blank lines at either end."""
    warning: str | None = None
    """Set when the YAML was invalid and was read with the CLI's fallback instead."""


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a Markdown file into its front matter mapping and its body.

    Raises ``FrontMatterError`` when the fences, the YAML or its shape are wrong.
    """
    front = read_front_matter(text)
    return front.metadata, front.body


def read_front_matter(text: str, *, required: bool = True) -> FrontMatter:
    """Read front matter as the CLI does; ``FrontMatterError`` when the CLI would not load it.

    With ``required=False`` (skills) a file without front matter is all body.
    """
    text = _lf_or_crlf(text.removeprefix(BOM))
    opening = _OPENING.match(text)
    if opening is None and not required:
        return FrontMatter({}, strip_blank_lines(normalize_newlines(text).split("\n")))
    if opening is None:
        raise FrontMatterError("no front matter: the file must start with a '---' line")
    closing = text.find(FENCE, opening.end())
    if closing < 0:
        raise FrontMatterError("front matter is not closed: no '---' line after the opening one")
    source = text[opening.end() : closing]
    first_line = text.count("\n", 0, opening.end()) + 1
    body = strip_blank_lines(normalize_newlines(text[closing + len(FENCE) :]).split("\n"))
    metadata, warning = _load_mapping(source, first_line)
    return FrontMatter(metadata, body, warning)


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


def quote_plain_values(source: str) -> tuple[str, list[int]]:
    """The CLI's fallback for invalid YAML: quote risky ``key: value`` lines.

    Returns the new text and the 0-based numbers of the lines that changed. A line ending in
    ``\\r`` is never changed (the CLI's pattern does not match it), so a CRLF file gets no
    fallback.
    """
    lines = source.split("\n")
    changed: list[int] = []
    for index, line in enumerate(lines):
        match = _KEY_LINE.fullmatch(line)
        if match is None or not _needs_quotes(match.group(2)):
            continue
        escaped = match.group(2).replace("\\", "\\\\").replace('"', '\\"')
        lines[index] = f'{match.group(1)}: "{escaped}"'
        changed.append(index)
    return "\n".join(lines), changed


def _needs_quotes(value: str) -> bool:
    for start, end in ('""', "''", "[]"):
        if value.startswith(start) and value.endswith(end):
            return False
    return _NEEDS_QUOTES.search(value) is not None


def _lf_or_crlf(text: str) -> str:
    # CR-only files (classic Mac) read like LF; CRLF is kept so the fallback can skip its lines.
    return re.sub(r"\r(?!\n)", "\n", text)


def _load_mapping(source: str, first_line: int) -> tuple[dict[str, Any], str | None]:
    if len(source) > MAX_FRONT_MATTER_CHARS:
        raise FrontMatterError(
            f"front matter is longer than {MAX_FRONT_MATTER_CHARS} characters; "
            "definitions need a few hundred")
    try:
        return _as_mapping(_load_yaml(normalize_newlines(source))), None
    except yaml.YAMLError as exc:
        reason = _yaml_reason(exc, source, first_line)
        fixed, changed = quote_plain_values(source)
        if not changed:
            raise FrontMatterError(reason) from None
    try:
        data = _as_mapping(_load_yaml(normalize_newlines(fixed)))
    except yaml.YAMLError:
        raise FrontMatterError(reason) from None
    lines = ", ".join(str(first_line + index) for index in changed)
    return data, f"{reason}; read as Claude Code does, quoting the value on line(s) {lines}"


def _as_mapping(data: object) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FrontMatterError(
            f"front matter must be a mapping of keys to values, got {type(data).__name__}"
        )
    return {js_string(key): value for key, value in data.items()}


def js_string(value: object) -> str:
    """``String(value)`` in JavaScript for YAML scalars: ``true``, ``42``, ``1.5``, ``null``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, float):
        return {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}.get(str(value), str(value))
    return str(value)


def _load_yaml(source: str) -> object:
    if _may_exceed_bounds(source):
        _check_bounds(source)
    return yaml.load(source, Loader=_Loader)


def _may_exceed_bounds(source: str) -> bool:
    # The C loader recurses once per level and crashes the process (SIGSEGV) on very deep
    # nesting, and aliases can multiply a small file into billions of nodes. Each needs one of
    # these characters, so most sources skip the exact count.
    return "*" in source or sum(source.count(char) for char in "[{-?:\n") >= MAX_DEPTH


def _check_bounds(source: str) -> None:
    """Walk the parse events once: refuse deep nesting and large alias expansion."""
    anchored: dict[str, int] = {}  # anchor -> expanded size of its node
    open_nodes: list[list[Any]] = []  # [expanded size so far, anchor] per open collection
    total = 0
    try:
        for event in yaml.parse(source, Loader=_BaseLoader):
            finished: int | None = None
            if isinstance(event, yaml.CollectionStartEvent):
                open_nodes.append([1, event.anchor])
                total += 1
                if len(open_nodes) > MAX_DEPTH:
                    raise FrontMatterError(f"front matter nests deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                finished, anchor = open_nodes.pop()
                if anchor:
                    anchored[anchor] = finished
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                is_alias = isinstance(event, yaml.AliasEvent)
                finished = anchored.get(event.anchor or "", 1) if is_alias else 1
                if event.anchor and not is_alias:
                    anchored[event.anchor] = 1
                total += finished
            if finished is not None and open_nodes:
                open_nodes[-1][0] += finished
            if total > MAX_NODES:
                raise FrontMatterError(
                    f"front matter expands to more than {MAX_NODES} nodes through its aliases "
                    "(&anchor / *alias); refused as a YAML bomb")
    except yaml.YAMLError as exc:
        # PyYAML 6.0.3+ has its own nesting cap; it means the same thing as ours.
        if "nesting depth" in str(exc):
            raise FrontMatterError(f"front matter nests deeper than {MAX_DEPTH} levels") from None
        raise


class _Loader(_BaseLoader):
    """Safe loading with YAML 1.2 core-schema scalars, as the CLI resolves them."""

    yaml_implicit_resolvers = {}  # noqa: RUF012 - PyYAML reads this class attribute


def _construct_untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    # The CLI drops tags it does not know and keeps the value; no Python object is ever built.
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    assert isinstance(node, yaml.ScalarNode)
    text = str(loader.construct_scalar(node))
    octal_or_hex = text.lstrip("+-")[:2] in ("0o", "0x")
    return int(text, 0) if octal_or_hex else int(text, 10)  # YAML 1.2: 012 is twelve


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+.0123456789")),
):
    _Loader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)
_Loader.add_multi_constructor("", _construct_untagged)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _yaml_reason(exc: yaml.YAMLError, source: str, first_line: int) -> str:
    # Lines are counted in the file: the YAML starts on ``first_line``, after the opening fence.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = _one_line(exc.problem or "syntax error")
        where = f"line {mark.line + first_line}, column {mark.column + 1}"
        return f"invalid YAML in front matter at {where}: {problem}"
    if isinstance(exc, ReaderError):
        line = source.count("\n", 0, exc.position) + first_line
        return f"invalid YAML in front matter at line {line}: {_one_line(str(exc).splitlines()[0])}"
    return f"invalid YAML in front matter: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
