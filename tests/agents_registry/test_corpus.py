"""Discovery over the conformance corpus, without the CLI: what loads, by name.

The expected sets are what the real CLI 2.1.197 and 2.1.332 loaded from the same folders (see
``tests/real_cli/test_discovery_conformance.py``, which checks them again, with descriptions and
tools, whenever the CLIs are installed).
"""

from __future__ import annotations

from pathlib import Path

from agents_registry import Roots, load_registry

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "agent_corpus"

TRICKY_AGENTS = {
    "anchor", "big", "blockok", "colonq", "comment", "commentok", "crlfok", "dashes", "deep",
    "dup", "dupok", "e1", "e3", "e4", "e6", "esc", "escq", "escqok", "fencesp", "has space",
    "midfence", "multi", "multicolon", "multiok", "nameq", "nested", "other-name", "plain", "q1",
    "q2", "spacekey", "star", "tab", "tflb", "tfls", "tflv", "tflx", "toolsc", "toolsempty",
    "toolsemptys", "toolsfl", "toolsl", "toolsn", "toolsnone", "toolss", "trailing", "trig",
    "unclosed", "urlv", "yes",
    *(f"ch{n}" for n in range(14, 31)),
    *(f"o{n}" for n in range(1, 19) if n != 15), "o15",  # "  o15  " to the CLI, stripped here
    *(f"y{n}" for n in (1, 2, 3, 4, 5, 6, 14, 15, 16, 17, 18)),
}
TRICKY_SKILLS = {"num", "s42", "sblock", "sbool", "sbroken", "sempty", "slist", "sname",
                 "snamenum", "snodesc", "snofm", "x1", "x2", "x3", "x4", "x5"}
VOLTAGENT_INVALID_YAML = {
    "ab-test-analysis.md",
    "assumption-mapping.md",
    "backlog-grooming.md",
    "cohort-analysis.md",
    "first-principles-thinking.md",
    "gdpr-ccpa-compliance.md",
    "growth-loops.md",
    "hipaa-compliance.md",
}


def test_every_agent_of_a_real_collection_loads_by_its_file_name() -> None:
    root = CORPUS / "voltagent"

    registry = load_registry(Roots(user_dir=root, project_dir=None))

    assert len(registry.agents) == 158
    assert set(registry.agents) == {path.stem for path in (root / "agents").rglob("*.md")}
    assert {d.severity for d in registry.diagnostics} == {"warning"}
    assert {d.path.name for d in registry.diagnostics} == VOLTAGENT_INVALID_YAML


def test_the_tricky_files_load_exactly_as_in_the_cli() -> None:
    registry = load_registry(Roots(user_dir=CORPUS / "tricky", project_dir=None))

    assert set(registry.agents) == TRICKY_AGENTS
    assert set(registry.skills) == TRICKY_SKILLS


def test_a_file_read_through_the_fallback_loads_with_a_warning_naming_its_line() -> None:
    registry = load_registry(Roots(user_dir=CORPUS / "tricky", project_dir=None))
    [warning] = [d for d in registry.diagnostics if d.path.name == "trig.md"]

    assert registry.agents["trig"].description == "Use this. Triggers on: 'a', 'b'"
    assert warning.severity == "warning"
    assert warning.reason.startswith("invalid YAML in front matter at line 3")
    assert warning.reason.endswith("read as Claude Code does, quoting the value on line(s) 3")
