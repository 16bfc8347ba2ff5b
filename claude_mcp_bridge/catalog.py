"""Registry -> MCP tools: names, schemas, descriptions.

One tool per agent (``agent_<name>``) and per skill (``skill_<name>``). Names use
only ``[A-Za-z0-9_-]`` and fit in 64 characters, the limit of Claude's API. A name
that had to be changed to fit (other characters, too long) gets a short hash of
the original, so it is deterministic across restarts and never collides with a
name that fitted as it was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import mcp_types as types

from agents_registry import Definition, Registry

from .arguments import INPUT_SCHEMA, OUTPUT_SCHEMA
from .config import Config
from .tool_policy import ToolPolicy, resolve_roots, tool_policy

MAX_TOOL_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_PREFIX: Mapping[str, str] = {"agent": "agent_", "skill": "skill_"}

# Built-in tools that only read: an agent limited to these cannot change anything.
READ_ONLY_TOOLS = frozenset(
    {"Read", "Grep", "Glob", "LS", "WebFetch", "WebSearch", "NotebookRead", "TodoWrite"}
)

def tool_name(kind: Literal["agent", "skill"], name: str) -> str:
    """The published tool name for a definition; stable for the same ``name``."""
    prefix = _PREFIX[kind]
    safe = _UNSAFE.sub("_", name).strip("_") or "unnamed"
    candidate = prefix + safe
    if safe == name and len(candidate) <= MAX_TOOL_NAME:
        return candidate
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{candidate[: MAX_TOOL_NAME - 9]}_{digest}"


@dataclass(frozen=True)
class ToolEntry:
    name: str
    definition: Definition
    tool: types.Tool
    config: Config = field(repr=False, compare=False)
    project_dir: Path = field(repr=False, compare=False)

    @cached_property
    def policy(self) -> ToolPolicy:
        """The policy of the catalog's config for this definition, worked out on first use:
        a start-up with 2,500 tools does not wait for 2,500 policies (30-50 ms)."""
        return tool_policy(self.config, self.definition, self.project_dir)


@dataclass(frozen=True)
class Catalog:
    """The published tools, built once per registry snapshot; lookups never touch disk."""

    registry: Registry
    entries: Mapping[str, ToolEntry]
    tools: tuple[types.Tool, ...]

    def get(self, name: str) -> ToolEntry | None:
        return self.entries.get(name)


def build_catalog(registry: Registry, config: Config, project_dir: Path) -> Catalog:
    """Every enabled definition as a tool, with the policy that applies to it."""
    entries: dict[str, ToolEntry] = {}
    resolve_roots(config, project_dir)  # the policies themselves are worked out on first use
    for definition in registry.definitions():
        tool_config = config.tool(definition.kind, definition.name)
        if not tool_config.enabled:
            continue
        name = tool_name(definition.kind, definition.name)
        if name in entries:  # only a deliberate hash collision gets here
            name = tool_name(definition.kind, f"{definition.name}@{definition.path}")
        entries[name] = ToolEntry(name, definition, _tool(name, definition, tool_config.tags),
                                  config, project_dir)
    ordered = dict(sorted(entries.items()))
    return Catalog(registry, MappingProxyType(ordered), tuple(e.tool for e in ordered.values()))


def _tool(name: str, definition: Definition, tags: list[str]) -> types.Tool:
    return types.Tool(
        name=name,
        title=f"{definition.name} ({definition.kind})",
        description=definition.description,
        input_schema=INPUT_SCHEMA,
        output_schema=OUTPUT_SCHEMA,
        annotations=types.ToolAnnotations(
            title=f"{definition.name} ({definition.kind})",
            read_only_hint=_is_read_only(_declared_tools(definition)),
            destructive_hint=not _is_read_only(_declared_tools(definition)),
            idempotent_hint=False,
            open_world_hint=True,
        ),
        _meta={"tags": tags} if tags else None,
    )


def _declared_tools(definition: Definition) -> tuple[str, ...] | None:
    return definition.tools if definition.kind == "agent" else definition.allowed_tools


def _is_read_only(tools: Iterable[str] | None) -> bool:
    return tools is not None and all(tool in READ_ONLY_TOOLS for tool in tools)
