"""The MCP configuration forwarded to every child with ``--mcp-config``.

Sources: explicit files (``serve --mcp-config PATH``, the config file), forwarded
as they are (naming one is asking), and the ``.mcp.json`` files the child would
load by itself. In ``-p`` mode the CLI loads, unapproved, the ``.mcp.json`` of its
working directory and of every parent directory up to ``/``. When one of them
registers this bridge, a child would start the bridge again and call itself. So
for each call the chain of ``.mcp.json`` files above its working directory is read;
if any registers the bridge, their other servers are forwarded inline (the nearest
file wins a name) and ``--strict-mcp-config`` keeps the child from loading the
files itself. In strict mode (asked for) a child gets the explicit files and the
project's own ``.mcp.json`` (without the bridge), nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CommandError, ConfigError

_BRIDGE_MARKERS = ("claude-mcp-bridge", "claude_mcp_bridge")


@dataclass(frozen=True)
class ForwardedMcp:
    configs: tuple[str, ...]
    """``--mcp-config`` values: absolute file paths, or inline JSON."""
    strict: bool
    """Whether ``--strict-mcp-config`` must be passed."""
    removed: tuple[str, ...] = ()
    """Servers left out of the project ``.mcp.json`` because they are this bridge."""


def forwarded_mcp(explicit: Iterable[Path], project_dir: Path, strict: bool) -> ForwardedMcp:
    """The explicit files (checked now, so a bad one stops the server at start-up), and
    which bridge entries the project's chain of ``.mcp.json`` files holds (for the log)."""
    configs = tuple(str(_checked(path)) for path in explicit)
    return ForwardedMcp(configs, strict, chain_for(project_dir).removed)


@dataclass(frozen=True)
class Chain:
    """What the ``.mcp.json`` files above one directory mean for a child working there."""

    servers: Mapping[str, Any]
    """Every server but this bridge, the nearest file winning a name."""
    removed: tuple[str, ...]
    """Entries that start this bridge."""


def chain_for(directory: Path, *, parents: bool = True) -> Chain:
    """Read the ``.mcp.json`` of ``directory`` and of each parent (or of ``directory``
    only); unreadable ones are skipped (the CLI would skip them too)."""
    servers: dict[str, Any] = {}
    removed: list[str] = []
    for folder in (directory, *directory.parents) if parents else (directory,):
        path = folder / ".mcp.json"
        try:
            found = _servers(_load(path), path) if path.is_file() else {}
        except ConfigError:
            continue
        for name, entry in found.items():
            if is_bridge_entry(entry):
                removed.append(f"{name} ({path})")
            else:
                servers.setdefault(name, entry)
    return Chain(servers, tuple(removed))


def call_flags(
    configs: tuple[str, ...], strict: bool, cwd: Path, project_dir: Path,
    *, allowed: frozenset[str] | None = None,
) -> list[str]:
    """``--mcp-config`` and ``--strict-mcp-config`` for one call working in ``cwd``; with
    ``allowed``, only those servers, inline, and strict so the child loads nothing else."""
    chain = chain_for(project_dir, parents=False) if strict else chain_for(cwd)
    if allowed is not None:
        servers = {**chain.servers, **_explicit_servers(configs)}
        kept = {name: entry for name, entry in servers.items() if name in allowed}
        inline = json.dumps({"mcpServers": kept}, sort_keys=True)
        return ["--mcp-config", inline, "--strict-mcp-config"] if kept else [
            "--strict-mcp-config"]
    forwarded = list(configs)
    if strict or chain.removed:
        if chain.servers:
            forwarded.append(json.dumps({"mcpServers": dict(chain.servers)}, sort_keys=True))
        strict = True
    flags = ["--mcp-config", *forwarded] if forwarded else []
    return flags + (["--strict-mcp-config"] if strict else [])


def _explicit_servers(configs: Iterable[str]) -> dict[str, Any]:
    """The servers of the explicit configs (files or inline JSON), the first naming one
    winning it."""
    servers: dict[str, Any] = {}
    for config in reversed(tuple(configs)):
        try:
            if config.lstrip().startswith("{"):
                servers.update(_servers(json.loads(config), Path("<inline MCP config>")))
            else:
                servers.update(_servers(_load(Path(config)), Path(config)))
        except (ValueError, ConfigError) as exc:
            raise CommandError(f"cannot apply [mcp] allowed_servers: {exc}") from None
    return servers


def is_bridge_entry(entry: Any) -> bool:
    """True when an ``mcpServers`` entry starts claude-mcp-bridge (any launcher)."""
    if not isinstance(entry, Mapping):
        return False
    words = [str(entry.get("command", ""))] + [str(a) for a in entry.get("args") or []]
    return any(marker in word for word in words for marker in _BRIDGE_MARKERS)


def _checked(path: Path) -> Path:
    absolute = path.expanduser().absolute()
    _servers(_load(absolute), absolute)
    return absolute


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("MCP config file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read MCP config: {exc}", path=path) from None
    except ValueError as exc:
        raise ConfigError(f"MCP config is not valid JSON: {exc}", path=path) from None


def _servers(document: Any, path: Path) -> dict[str, Any]:
    servers = document.get("mcpServers") if isinstance(document, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError("an MCP config needs an object 'mcpServers'", path=path)
    return servers
