"""Fixtures that write real definition files under ``tmp_path``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

Write = Callable[[str, str | bytes], Path]
MakeFile = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write ``content`` at ``tmp_path / relative`` byte for byte (no newline translation)."""

    def write(relative: str, content: str | bytes) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture
def write_agent(write: Write) -> MakeFile:
    """Write a valid agent file; ``front`` adds YAML lines, each ending in a newline."""

    def write_agent(
        relative: str,
        name: str,
        *,
        description: str | None = None,
        front: str = "",
        body: str = "You help.",
    ) -> Path:
        description = description if description is not None else f"The {name} agent."
        return write(
            relative, f"---\nname: {name}\ndescription: {description}\n{front}---\n{body}\n"
        )

    return write_agent


@pytest.fixture
def write_skill(write: Write) -> MakeFile:
    """Write ``<relative>/SKILL.md`` with a description and optional extra YAML lines."""

    def write_skill(relative: str, *, front: str = "", body: str = "Do the thing.") -> Path:
        return write(f"{relative}/SKILL.md", f"---\ndescription: A skill.\n{front}---\n{body}\n")

    return write_skill
