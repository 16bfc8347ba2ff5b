"""The MCP configuration forwarded to every child with ``--mcp-config``.

Sources: explicit files (``serve --mcp-config PATH``, the config file) and the
project's ``.mcp.json``. In ``-p`` mode the CLI loads a project ``.mcp.json``
even when nobody approved it; when that file registers this bridge, a child
working in the project would start the bridge again and call itself. So the
project file is forwarded with the bridge's own entries removed, and its
presence turns on ``--strict-mcp-config`` (the child then sees only what is
forwarded). Explicit files are forwarded as they are: naming one is asking.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

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
    configs = [str(_checked(path)) for path in explicit]
    removed: tuple[str, ...] = ()
    project_file = project_dir / ".mcp.json"
    if project_file.is_file():
        servers = _servers(_load(project_file), project_file)
        kept = {name: entry for name, entry in servers.items() if not is_bridge_entry(entry)}
        removed = tuple(sorted(set(servers) - set(kept)))
        if kept:
            configs.append(json.dumps({"mcpServers": kept}, sort_keys=True))
        strict = strict or bool(removed)
    return ForwardedMcp(tuple(configs), strict, removed)


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
