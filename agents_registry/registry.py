"""Path -> Definition | Diagnostic; every root -> one frozen ``Registry`` snapshot.

A bad file never stops discovery: it becomes an ``error`` diagnostic and the other files load.
A definition hidden by one of higher precedence gets a ``warning``, and so does a file loaded
the lenient way Claude Code loads it (invalid YAML read line by line, a bad optional value left
out).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar, overload

from .definitions import (
    AgentDefinition,
    Definition,
    DefinitionError,
    Kind,
    Scope,
    SkillDefinition,
    validate_definition,
)
from .discovery import Candidate, Roots, candidate_files
from .frontmatter import FrontMatterError, read_front_matter
from .parse_cache import Identity, ParseCache, file_identity

logger = logging.getLogger("agents_registry")

MAX_DEFINITION_BYTES = 1_048_576
Severity = Literal["error", "warning"]
FileState = tuple[str, int, int, int]
"""A candidate file as ``os.stat`` saw it: its path, modification time (ns), size, inode."""


@dataclass(frozen=True)
class Diagnostic:
    """Why a file was rejected (``error``), or what to fix in one that loaded (``warning``)."""

    path: Path
    reason: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Registry:
    """A snapshot of every definition found, by name, and what went wrong on the way."""

    agents: Mapping[str, AgentDefinition]
    skills: Mapping[str, SkillDefinition]
    diagnostics: tuple[Diagnostic, ...]
    files: frozenset[FileState] = frozenset()
    """Each candidate file as it was just before it was read (one that could not be seen
    is left out): a watcher that starts from these misses no change made since."""

    def definitions(self) -> Iterator[Definition]:
        """Agents, then skills, each sorted by name."""
        yield from self.agents.values()
        yield from self.skills.values()

    @overload
    def get(self, kind: Literal["agent"], name: str) -> AgentDefinition | None: ...
    @overload
    def get(self, kind: Literal["skill"], name: str) -> SkillDefinition | None: ...
    def get(self, kind: Kind, name: str) -> Definition | None:
        table: Mapping[str, Definition] = self.agents if kind == "agent" else self.skills
        return table.get(name)


def load_registry(roots: Roots, *, cache: Path | None = None) -> Registry:
    """Read every candidate file under ``roots`` into a registry; never raises for a bad file.
    With ``cache``, a file unchanged since the last load is not read again
    (``parse_cache.py``)."""
    candidates = candidate_files(roots)
    kept = None if cache is None else ParseCache.load(
        cache, paths=(candidate.path.absolute() for candidate in candidates))
    parsed: list[tuple[Candidate, Definition | Diagnostic]] = []
    warnings: list[Diagnostic] = []
    files: list[FileState] = []
    for candidate in candidates:
        identity, (result, notes) = _parse_candidate(candidate, kept)
        if identity is not None:
            files.append((str(candidate.path), identity[3], identity[2], identity[1]))
        parsed.append((candidate, result))
        warnings += notes
    if kept is not None:
        kept.save()
    registry = assemble_registry(parsed, warnings, files)
    _log(registry.diagnostics)
    return registry


def _parse_candidate(candidate: Candidate, kept: ParseCache | None
                     ) -> tuple[Identity | None, tuple[Definition | Diagnostic,
                                                       tuple[Diagnostic, ...]]]:
    """The file's identity before it was read (None: it could not be seen), and what it
    holds."""
    if kept is None:
        identity = file_identity(str(candidate.path))
        return identity, parse_file(candidate.path, candidate.kind, candidate.scope)
    where = (str(candidate.path.absolute()), candidate.kind, candidate.scope)
    identity, entry = kept.get(where)
    if entry is not None:
        return identity, (entry[1], entry[2])
    result, notes = parse_file(candidate.path, candidate.kind, candidate.scope)
    if not isinstance(result, Diagnostic):
        kept.put(where, identity, result, notes)
    return identity, (result, notes)


def parse_definition(
    path: Path, kind: Kind, scope: Scope, *, max_bytes: int = MAX_DEFINITION_BYTES
) -> Definition | Diagnostic:
    """Read one file into a definition, or say why it cannot be one."""
    return parse_file(path, kind, scope, max_bytes=max_bytes)[0]


def parse_file(
    path: Path, kind: Kind, scope: Scope, *, max_bytes: int = MAX_DEFINITION_BYTES
) -> tuple[Definition | Diagnostic, tuple[Diagnostic, ...]]:
    """Read one file into a definition or an error, with warnings about how it was read."""
    path = path.absolute()
    raw = read_bytes(path, max_bytes)
    if isinstance(raw, Diagnostic):
        return raw, ()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        return Diagnostic(path, f"not valid UTF-8: {bad}"), ()
    try:
        front = read_front_matter(text, required=kind == "agent")
        sha256 = hashlib.sha256(raw).hexdigest()
        definition, notes = validate_definition(kind, front.metadata, body=front.body, path=path,
                                                scope=scope, sha256=sha256)
    except (FrontMatterError, DefinitionError) as exc:
        return Diagnostic(path, exc.reason), ()
    notes = [front.warning, *notes] if front.warning else notes
    return definition, tuple(Diagnostic(path, note, "warning") for note in notes)


def assemble_registry(parsed: Iterable[tuple[Candidate, Definition | Diagnostic]],
                      warnings: Iterable[Diagnostic] = (),
                      files: Iterable[FileState] = ()) -> Registry:
    """The first definition of each kind and name wins; ``parsed`` is in precedence order.

    ``warnings`` (about files that loaded) are kept after the diagnostics found here.
    """
    winners: dict[tuple[Kind, str], tuple[Candidate, Definition]] = {}
    diagnostics: list[Diagnostic] = []
    for candidate, result in parsed:
        if isinstance(result, Diagnostic):
            diagnostics.append(result)
            continue
        held = winners.setdefault((result.kind, result.name), (candidate, result))
        if held[0] is not candidate:
            diagnostics.append(_conflict(candidate, result, held[0]))
    found = [definition for _, definition in winners.values()]
    return Registry(
        agents=_by_name(d for d in found if isinstance(d, AgentDefinition)),
        skills=_by_name(d for d in found if isinstance(d, SkillDefinition)),
        diagnostics=(*diagnostics, *warnings),
        files=frozenset(files),
    )


def read_bytes(path: Path, max_bytes: int = MAX_DEFINITION_BYTES) -> bytes | Diagnostic:
    """The bytes of the regular file at ``path``, or why they cannot be had (not a regular
    file, unreadable, larger than ``max_bytes``)."""
    # O_NONBLOCK: opening a FIFO named like a definition must not hang discovery.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Diagnostic(path, "not a regular file")
            # Ask for the size fstat reports, not max_bytes: a max_bytes read allocates a
            # 1 MiB buffer per file, which made reading 2,500 small definitions 3x slower.
            raw = file.read(min(info.st_size, max_bytes) + 1)
            if len(raw) > info.st_size:  # it grew since fstat, or reports no size (procfs)
                raw += file.read(max_bytes + 1 - len(raw))
    except OSError as exc:
        return Diagnostic(path, f"cannot read file: {exc.strerror or exc}")
    if len(raw) > max_bytes:
        return Diagnostic(path, f"file is larger than {max_bytes} bytes; definitions are small")
    return raw


def _conflict(loser: Candidate, definition: Definition, winner: Candidate) -> Diagnostic:
    if loser.root == winner.root:
        reason = (f"duplicate {definition.kind} name '{definition.name}', "
                  f"also defined in {winner.path.absolute()}; ignored")
        return Diagnostic(definition.path, reason, "error")
    why = (f"{winner.scope} definition wins over {loser.scope}" if winner.scope != loser.scope
           else "an earlier extra directory wins")
    return Diagnostic(definition.path, f"overridden by {winner.path.absolute()} ({why})", "warning")


_D = TypeVar("_D", AgentDefinition, SkillDefinition)


def _by_name(definitions: Iterable[_D]) -> Mapping[str, _D]:
    return MappingProxyType({d.name: d for d in sorted(definitions, key=lambda d: d.name)})


def _log(diagnostics: Iterable[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        if diagnostic.severity == "error":
            logger.warning("rejected %s", diagnostic)
        else:
            logger.info("%s", diagnostic)
