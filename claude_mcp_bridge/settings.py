"""The one frozen settings object, and finding the ``claude`` executable.

``cli.py`` builds ``Settings`` once from flags and the environment; nothing else
reads ``os.environ``. The child environment is the captured ``base_env``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from agents_registry import Roots

from . import platform
from .config import Config

DEPTH_VAR = "CLAUDE_MCP_BRIDGE_DEPTH"
"""Set in every child's environment to this bridge's depth + 1."""

CLAUDE_BIN_VAR = "CLAUDE_MCP_BRIDGE_CLAUDE_BIN"
DATA_DIR_VAR = "CLAUDE_MCP_BRIDGE_DATA_DIR"


def client_env_hint(name: str, value: str) -> str:
    """How to give the server ``name``: MCP clients start it without the shell's environment
    (the MCP Inspector without ``-e`` gave "Not logged in"; issue 15)."""
    return (f"MCP clients do not pass your shell's environment to the servers they start: set "
            f"{name} in the client's config (\"env\": {{\"{name}\": \"{value}\"}} in its "
            f"JSON entry; `claude mcp add -e {name}=...`; `-e {name}=...` for the MCP "
            "Inspector)")


@dataclass(frozen=True)
class ClaudeExecutable:
    """Where ``claude`` is, or why it was not found."""

    path: Path | None
    searched: str

    def missing_message(self) -> str:
        shows = "`where.exe claude`" if platform.KIND == "windows" else "`which claude`"
        return (
            f"the claude executable was not found ({self.searched}); install Claude Code "
            f"or set {CLAUDE_BIN_VAR} to its absolute path ({shows} in a terminal shows it). "
            f"{client_env_hint(CLAUDE_BIN_VAR, '/absolute/path/to/claude')}"
        )


@dataclass(frozen=True)
class Settings:
    roots: Roots
    """Where agent and skill definitions are discovered."""
    claude: ClaudeExecutable
    """The CLI every call runs, resolved once at start-up."""
    mcp_configs: tuple[str, ...] = ()
    """Forwarded to every child as ``--mcp-config``: file paths or inline JSON."""
    strict_mcp_config: bool = False
    """Pass ``--strict-mcp-config``: the child sees only the forwarded MCP servers."""
    config: Config = field(default_factory=Config)
    """The validated config file (policy, limits, budgets, ledger)."""
    config_file: Path | None = None
    """Where ``config`` was read from (None: no file, defaults)."""
    ledger_path: Path = Path("ledger.sqlite3")
    """The SQLite ledger of calls, reservations and usage (and, beside it, kept answers)."""
    definitions_cache: Path | None = None
    """Parsed definitions kept between starts (``agents_registry/parse_cache.py``); None:
    every file is read each time."""
    depth: int = 0
    """How deep this bridge runs inside a chain of bridges (0 = started by a person)."""
    base_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The environment children inherit (before the bridge's own changes)."""

    @property
    def ledger_target(self) -> Path | str:
        """What ``Ledger.open`` opens: ``[ledger] url`` when set, else the SQLite file."""
        return self.config.ledger.url or self.ledger_path

    @property
    def project_dir(self) -> Path:
        return self.roots.project_dir or Path.cwd()


def find_claude(environ: Mapping[str, str]) -> ClaudeExecutable:
    """Resolve ``claude`` to an absolute path once.

    Claude Desktop starts servers with a thin PATH (no nvm, no login shell), so the
    usual install places of this system (``platform.claude_places``) are tried after PATH.
    """
    explicit = environ.get(CLAUDE_BIN_VAR, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if _is_executable(path):
            return ClaudeExecutable(path.absolute(), f"{CLAUDE_BIN_VAR}={explicit}")
        return ClaudeExecutable(None, f"{CLAUDE_BIN_VAR}={explicit} is not an executable file")
    search_path = os.pathsep.join(
        folder for folder in environ.get("PATH", "").split(os.pathsep)
        if folder and not platform.is_app_alias(folder))  # a Store app's alias, not Claude Code
    for name in platform.claude_names():
        found = shutil.which(name, path=search_path)
        if found:
            return ClaudeExecutable(Path(found).absolute(), "PATH")
    places = platform.claude_places()
    for place in places:
        candidate = place.resolve(environ)
        if candidate is not None and _is_executable(candidate):
            return ClaudeExecutable(candidate, place.shown())
    return ClaudeExecutable(None, "not on PATH nor in " + ", ".join(p.shown() for p in places))


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def read_depth(environ: Mapping[str, str]) -> int:
    """This bridge's depth, from the counter a parent bridge put in the environment."""
    try:
        return max(0, int(environ.get(DEPTH_VAR, "0")))
    except ValueError:
        return 0
