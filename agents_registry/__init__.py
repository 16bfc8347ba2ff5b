"""Claude Code agent and skill definition files -> a frozen, validated registry.

The flow, one module a stage::

    discovery     Roots -> candidate files (project, user and extra roots, in precedence order)
    frontmatter   text -> (metadata, body): YAML fences, BOM, line endings
    definitions   metadata -> AgentDefinition | SkillDefinition (pydantic, frozen)
    registry      path -> Definition | Diagnostic; all files -> Registry (winners by name)

``load_registry(roots)`` runs them all. A bad file never stops the others: it becomes a
``Diagnostic`` in ``Registry.diagnostics`` and a WARNING on the ``agents_registry`` logger.
Nothing here reads ``os.environ`` or writes to stdout.
"""

from .definitions import AgentDefinition, Definition, Kind, Scope, SkillDefinition
from .discovery import Candidate, Roots, candidate_files, user_config_dir
from .frontmatter import FrontMatterError, split_front_matter
from .registry import (
    MAX_DEFINITION_BYTES,
    Diagnostic,
    FileState,
    Registry,
    Severity,
    load_registry,
    parse_definition,
    read_bytes,
)

__all__ = [
    "MAX_DEFINITION_BYTES",
    "AgentDefinition",
    "Candidate",
    "Definition",
    "Diagnostic",
    "FileState",
    "FrontMatterError",
    "Kind",
    "Registry",
    "Roots",
    "Scope",
    "Severity",
    "SkillDefinition",
    "candidate_files",
    "load_registry",
    "parse_definition",
    "read_bytes",
    "split_front_matter",
    "user_config_dir",
]
