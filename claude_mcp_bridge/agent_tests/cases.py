"""Test files: YAML -> validated cases; where they are found and how names select them.

A test file holds the cases of one agent or skill::

    agent: code-reviewer            # or `skill: changelog`; default: the file's name
    cases:
      - name: flags-the-off-by-one
        prompt: Review paging.py and list the bugs.
        fixture: fixtures/paging    # a folder beside this file, copied to a temp dir per run
        max_turns: 8                # per-call limits, as a caller would pass them
        checks:
          - contains: paging.py
          - tools_not_used: [Bash, Write, Edit]
        judge:
          rubric: Names the off-by-one in last_page and suggests a fix.

Files are found in ``agent-tests/`` of every definition root (``.claude/agent-tests/`` of
the project, ``~/.claude/agent-tests/``, then extra roots), or given by path. A file that
cannot be used becomes a ``Diagnostic`` with its path and the reason; the others still run.

A fixture is copied, links followed, into each run's folder, where checks such as
``file_contains`` read it back: so the fixture and everything it links to must resolve
(symlinks and ``..`` first) inside the test file's folder or an allowed cwd root, and hold
at most ``MAX_FIXTURE_FILES`` entries and ``MAX_FIXTURE_BYTES`` bytes. A test file that
points elsewhere (``fixture: /``, ``fixture: ../../secrets``) is refused with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agents_registry import Diagnostic, Kind, Roots

from ..arguments import CallArguments
from ..settings import Settings
from .checks import Check, JsonSchema, parse_check

TESTS_DIR = "agent-tests"
MAX_FIXTURE_FILES = 2_000
"""Files and folders one fixture may hold (each run copies it)."""
MAX_FIXTURE_BYTES = 50 * 1024 * 1024
"""Bytes one fixture may hold."""
SUFFIXES = (".yaml", ".yml")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _text(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, BeforeValidator(_text)]
AnyCheck = Annotated[Check, BeforeValidator(parse_check)]


class Judge(BaseModel):
    """Another agent scores the answer against ``rubric`` from 0 to 1, with its reasons."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rubric: Text
    agent: Text | None = None
    """The judging agent's name; default: the bridge's built-in judge (no tools)."""
    pass_score: Annotated[float, Field(ge=0, le=1)] = 0.7
    model: Text | None = None
    """Model for the judge's run (needs [permissions] allow_model_override)."""


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Text
    prompt: Text
    fixture: Path | None = None
    """A folder, relative to the test file; copied to a temp dir, the agent's cwd, per run."""
    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    checks: tuple[AnyCheck, ...] = ()
    judge: Judge | None = None

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be one line")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if sum(isinstance(check, JsonSchema) for check in self.checks) > 1:
            raise ValueError("at most one json_schema check per case: the CLI takes one schema")
        try:
            self.arguments(cwd=None)
        except ValidationError as exc:
            # the field, not the union branch (``max_turns.constrained-int``) nor the None one
            raise ValueError("; ".join(
                f"'{e['loc'][0]}': {e['msg']}" if e["loc"] else e["msg"]
                for e in exc.errors(include_url=False) if e["loc"][-1:] != ("none",))) from None
        return self

    @property
    def json_schema(self) -> dict[str, Any] | None:
        return next((c.json_schema for c in self.checks if isinstance(c, JsonSchema)), None)

    def arguments(self, cwd: str | None) -> CallArguments:
        """The tool arguments a run of this case is called with."""
        values = {"prompt": self.prompt, "cwd": cwd, "model": self.model,
                  "max_turns": self.max_turns, "max_budget_usd": self.max_budget_usd}
        return CallArguments.model_validate({k: v for k, v in values.items() if v is not None})


class _FileModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: Text | None = None
    skill: Text | None = None
    cases: tuple[Case, ...]

    @model_validator(mode="after")
    def _one_target(self) -> _FileModel:
        if not self.cases:
            raise ValueError("'cases' is empty: a test file needs at least one case")
        if self.agent and self.skill:
            raise ValueError("name either an agent or a skill, not both")
        names = [case.name for case in self.cases]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"case names must be unique; repeated: {', '.join(repeated)}")
        return self


@dataclass(frozen=True)
class CaseFile:
    """A loaded test file: what it tests and its cases (fixtures resolved and checked)."""

    path: Path
    kind: Kind | None
    """None: the file did not say; the name is looked up as an agent, then as a skill."""
    name: str
    cases: tuple[Case, ...]


def load_case_file(path: Path, allowed_roots: Sequence[Path] = ()) -> CaseFile | Diagnostic:
    """Load one test file; its fixtures must stay inside its own folder or ``allowed_roots``
    (the cwd roots the config allows)."""
    path = path.absolute()
    try:
        data = yaml.load(path.read_text("utf-8"), Loader=_Loader)
    except OSError as exc:
        return Diagnostic(path, f"cannot read the test file: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        return Diagnostic(path, f"not valid UTF-8 at offset {exc.start}")
    except yaml.YAMLError as exc:
        where = ' '.join(str(exc).replace(' in "<unicode string>",', " at").split())
        return Diagnostic(path, f"not valid YAML: {where}")
    if not isinstance(data, dict):
        return Diagnostic(path, "a test file is a mapping with 'cases' (and 'agent' or 'skill')")
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        return Diagnostic(path, _reason(exc))
    cases = tuple(_with_fixture(case, path.parent) for case in model.cases)
    roots = (path.parent.resolve(), *(root.resolve() for root in allowed_roots))
    for case in cases:
        problem = fixture_problem(case.fixture, roots) if case.fixture else None
        if problem is not None:
            return Diagnostic(path, f"case {case.name!r}: {problem}")
    kind: Kind | None = "agent" if model.agent else "skill" if model.skill else None
    name = model.agent or model.skill or _stem(path)
    return CaseFile(path, kind, name, cases)


def discover_case_files(roots: Roots) -> list[Path]:
    """Every test file under ``agent-tests/`` of each definition root, in precedence order."""
    found: list[Path] = []
    for root, _ in roots.scoped():
        folder = root / TESTS_DIR
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return found


@dataclass(frozen=True)
class Selection:
    files: tuple[CaseFile, ...]
    diagnostics: tuple[Diagnostic, ...]


def select_case_files(
    selectors: Sequence[str], roots: Roots, allowed_roots: Sequence[Path] = ()
) -> Selection:
    """Test files for ``selectors``: paths of test files, or agent/skill names (every found
    file testing that name). No selector: every file found. Fixtures must stay inside their
    test file's folder or ``allowed_roots``."""
    loaded = [load_case_file(path, allowed_roots)
              for path in _wanted_paths(selectors, roots)]
    files = [f for f in loaded if isinstance(f, CaseFile)]
    diagnostics = [d for d in loaded if isinstance(d, Diagnostic)]
    for name in _names(selectors):
        if not any(f.name == name for f in files) and not _named_in(diagnostics, name):
            folders = ", ".join(str(root / TESTS_DIR) for root, _ in roots.scoped())
            diagnostics.append(Diagnostic(Path(name), f"no test file for {name!r} (looked in "
                                                      f"{folders})"))
    return Selection(tuple(f for f in files if _selected(f, selectors)), tuple(diagnostics))


def _wanted_paths(selectors: Sequence[str], roots: Roots) -> list[Path]:
    paths = [Path(s).expanduser().absolute() for s in selectors if _is_path(s)]
    if _names(selectors) or not selectors:
        paths += [p for p in discover_case_files(roots) if p not in paths]
    return paths


def _selected(file: CaseFile, selectors: Sequence[str]) -> bool:
    if not selectors:
        return True
    return file.name in _names(selectors) or any(
        _is_path(s) and Path(s).expanduser().absolute() == file.path for s in selectors)


def _names(selectors: Iterable[str]) -> list[str]:
    return [s for s in selectors if not _is_path(s)]


def _is_path(selector: str) -> bool:
    return selector.endswith(SUFFIXES) or "/" in selector


def _named_in(diagnostics: Iterable[Diagnostic], name: str) -> bool:
    return any(_stem(d.path) == name for d in diagnostics)


def _stem(path: Path) -> str:
    return path.name.removesuffix(path.suffix) if path.suffix in SUFFIXES else path.name


def _with_fixture(case: Case, folder: Path) -> Case:
    if case.fixture is None:
        return case
    return case.model_copy(update={"fixture": (folder / case.fixture.expanduser()).resolve()})


def fixture_problem(fixture: Path, roots: Sequence[Path]) -> str | None:
    """Why ``fixture`` (resolved) may not be copied for a run, or None: it must be a folder
    inside ``roots`` whose entries, links followed, stay inside them and within the caps."""
    where = ", ".join(str(root) for root in roots)
    if not fixture.is_dir():
        return f"fixture {fixture} is not a folder"
    if not _inside(fixture, roots):
        return (f"fixture {fixture} is outside the test file's folder and the allowed cwd "
                f"roots ({where}); keep fixtures beside the test file")
    entries, size = 0, 0
    pending = [fixture]
    while pending:
        folder = pending.pop()
        try:
            found = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            return f"fixture {fixture}: cannot read {folder}: {exc.strerror or exc}"
        for entry in found:
            target = Path(entry.path).resolve()
            if entry.is_symlink() and not target.exists():
                continue  # dangling links are not copied
            if not _inside(target, roots):
                return (f"fixture {fixture}: {entry.path} links to {target}, outside the test "
                        f"file's folder and the allowed cwd roots ({where})")
            entries += 1
            if target.is_dir():
                pending.append(target)
            elif target.is_file():
                size += target.stat().st_size
            if entries > MAX_FIXTURE_FILES or size > MAX_FIXTURE_BYTES:
                return (f"fixture {fixture} is too big to copy for every run (over "
                        f"{MAX_FIXTURE_FILES} files or {MAX_FIXTURE_BYTES // 2**20} MiB)")
    return None


def cwd_roots(settings: Settings) -> tuple[Path, ...]:
    """The cwd roots the config allows (``[permissions] allowed_cwd_roots``, else the
    project): where, besides its own folder, a test file's fixtures may be."""
    roots = settings.config.permissions.allowed_cwd_roots or [settings.project_dir]
    return tuple(Path(root).expanduser() for root in roots)


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _reason(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = _location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]" if parts else f"[{part}]"]
        elif not part.startswith("function-") and (not parts or parts[-1] != part):
            parts.append(part)  # pydantic repeats a check's kind as its field, and names
                                # its validators: neither helps the reader
    return ".".join(parts)
