"""Permission rules: (tool name, tool input) -> allow | deny | ask, per tool pattern. Pure.

A rule names a tool the way Claude Code's own permission rules do: ``Bash`` (any use),
``Bash(git *)`` (a Bash command matching the glob), ``Write(src/**)`` (a path, relative
to the call's working directory when inside it), ``mcp__calendar__*`` (tool names by
glob). When several rules match, the strictest wins (deny, then ask, then allow), and a
definition's rules only narrow the global ones: the stricter of the two levels decides.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Decision = Literal["allow", "deny", "ask"]
_STRICTNESS: dict[Decision, int] = {"allow": 0, "ask": 1, "deny": 2}

# The input field a rule's parenthesised part is matched against, per tool.
_SUBJECT_KEYS = ("command", "file_path", "notebook_path", "path", "url", "pattern")
_PATH_KEYS = frozenset({"file_path", "notebook_path", "path"})


@dataclass(frozen=True)
class Rule:
    tool: str
    """``Name``, ``Name(glob)`` or a glob over tool names (``mcp__calendar__*``)."""
    decision: Decision

    @property
    def name(self) -> str:
        return self.tool.split("(", 1)[0]

    @property
    def content(self) -> str | None:
        if "(" not in self.tool or not self.tool.endswith(")"):
            return None
        return self.tool.split("(", 1)[1][:-1]

    def matches(self, tool_name: str, tool_input: Mapping[str, Any], cwd: Path) -> bool:
        if not fnmatch.fnmatchcase(tool_name, self.name):
            return False
        content = self.content
        if content is None or content in ("", "*"):
            return True
        subject = subject_of(tool_input, cwd)
        return subject is not None and fnmatch.fnmatchcase(subject, content)


def subject_of(tool_input: Mapping[str, Any], cwd: Path) -> str | None:
    """What a rule's ``(glob)`` is matched against: the command, or the path relative to
    ``cwd`` when it is inside it."""
    for key in _SUBJECT_KEYS:
        value = tool_input.get(key)
        if not isinstance(value, str):
            continue
        if key in _PATH_KEYS:
            path = Path(value)
            if path.is_absolute() and path.is_relative_to(cwd):
                return str(path.relative_to(cwd))
        return value
    return None


def decide_level(rules: Iterable[Rule], tool_name: str, tool_input: Mapping[str, Any],
                 cwd: Path) -> tuple[Decision, Rule] | None:
    """The strictest decision of the rules that match, with the rule; None if none does."""
    best: tuple[Decision, Rule] | None = None
    for rule in rules:
        if rule.matches(tool_name, tool_input, cwd) and (
                best is None or _STRICTNESS[rule.decision] > _STRICTNESS[best[0]]):
            best = (rule.decision, rule)
    return best


def stricter(a: Decision, b: Decision) -> Decision:
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


def summary(tool_name: str, tool_input: Mapping[str, Any], limit: int = 200) -> str:
    """A short human description of a tool use: ``Bash: `rm -rf build```."""
    for key in _SUBJECT_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str):
            shown = value if len(value) <= limit else value[:limit] + "..."
            return f"{tool_name}: `{shown}`"
    keys = ", ".join(sorted(tool_input)[:5])
    return f"{tool_name} ({keys})" if keys else tool_name
