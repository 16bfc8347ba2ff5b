"""``claude-mcp-bridge list``: the tools that would be published, the files rejected, and
the warnings (lenient reads, descriptions a calling model cannot tell apart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents_registry import Registry

from .catalog import Catalog
from .hygiene import description_warnings


def listing(catalog: Catalog) -> dict[str, Any]:
    return {
        "tools": [
            {
                "name": entry.name,
                "kind": entry.definition.kind,
                "definition": entry.definition.name,
                "scope": entry.definition.scope,
                "path": str(entry.definition.path),
                "description": entry.definition.description,
            }
            for entry in catalog.entries.values()
        ],
        "rejected": _diagnostics(catalog.registry, "error"),
        "warnings": _diagnostics(catalog.registry, "warning") + [
            {"path": str(w.definition.path), "reason": w.reason}
            for w in description_warnings(catalog.registry.definitions())],
    }


def _diagnostics(registry: Registry, severity: str) -> list[dict[str, str]]:
    return [
        {"path": str(d.path), "reason": d.reason}
        for d in registry.diagnostics
        if d.severity == severity
    ]


def listing_text(catalog: Catalog, project_dir: Path) -> str:
    lines = [f"{len(catalog.tools)} tools"]
    width = max((len(name) for name in catalog.entries), default=0)
    for entry in catalog.entries.values():
        definition = entry.definition
        lines.append(f"  {entry.name:<{width}}  {definition.scope:<7}  "
                     f"{_short(definition.path, project_dir)}")
    for severity, title in (("error", "rejected files"), ("warning", "warnings")):
        found = [(d.path, d.reason) for d in catalog.registry.diagnostics
                 if d.severity == severity]
        if severity == "warning":
            found += [(w.definition.path, w.reason)
                      for w in description_warnings(catalog.registry.definitions())]
        if found:
            lines.append(f"{len(found)} {title}")
            lines += [f"  {_short(path, project_dir)}: {reason}" for path, reason in found]
    return "\n".join(lines)


def _short(path: Path, project_dir: Path) -> str:
    try:
        return str(path.relative_to(project_dir))
    except ValueError:
        return str(path)
