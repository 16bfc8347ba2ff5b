"""Front matter is parsed within bounds: a hostile file is one rejected file, never a stall.

Issue 14 item 6: a 383-byte agent with nested aliases ("billion laughs") froze the server for
67 s at 2 GB. These tests assert the diagnostic, not the time: an unbounded parse would not
finish at all on a 2-core machine with the bomb below.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
from hypothesis import given, settings

from agents_registry import Diagnostic, Roots, load_registry
from agents_registry.definitions import AgentDefinition, SkillDefinition
from agents_registry.frontmatter import MAX_FRONT_MATTER_CHARS, MAX_NODES
from agents_registry.registry import parse_file


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    return "---\nname: bomb\ndescription: Boom.\n" + "\n".join(lines) + "\n---\nBody\n"


def test_a_billion_laughs_agent_is_rejected_and_the_others_still_load(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    bomb = billion_laughs()
    assert len(bomb.encode()) < 500
    (agents / "bomb.md").write_text(bomb)
    (agents / "fine.md").write_text("---\nname: fine\ndescription: Fine.\n---\nBody\n")

    registry = load_registry(Roots(user_dir=tmp_path, project_dir=None))

    assert list(registry.agents) == ["fine"]
    [rejected] = registry.diagnostics
    assert (rejected.path.name, rejected.severity) == ("bomb.md", "error")
    assert rejected.reason == (f"front matter expands to more than {MAX_NODES} nodes through "
                               "its aliases (&anchor / *alias); refused as a YAML bomb")


def test_a_bomb_behind_invalid_yaml_is_refused_by_the_fallback_too(tmp_path: Path) -> None:
    # The CLI's fallback parses the file a second time: it must be bounded as well.
    path = tmp_path / "agents" / "bomb.md"
    path.parent.mkdir()
    path.write_text(billion_laughs().replace("description: Boom.", "description: a: b"))

    result, _ = parse_file(path, "agent", "user")

    assert isinstance(result, Diagnostic)
    assert "invalid YAML" in result.reason or "YAML bomb" in result.reason


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("---\nname: a\ndescription: &d Shared.\nwhen: *d\ntags: [*d, *d]\n---\n")

    result, _ = parse_file(path, "agent", "user")

    assert isinstance(result, AgentDefinition)
    assert result.extra == {"when": "Shared.", "tags": ["Shared.", "Shared."]}


def test_front_matter_over_the_size_limit_is_rejected_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    filler = "x" * MAX_FRONT_MATTER_CHARS
    path.write_text(f"---\nname: big\ndescription: Big.\nnotes: {filler}\n---\n")

    result, _ = parse_file(path, "agent", "user")

    assert isinstance(result, Diagnostic)
    assert result.reason.startswith(f"front matter is longer than {MAX_FRONT_MATTER_CHARS}")


yaml_ish = st.text(alphabet=st.sampled_from(list("ab:-#&*!|>'\"[]{},? \n\t\r\\%@`~.01")),
                   max_size=200)
lines = st.lists(st.one_of(
    yaml_ish,
    st.sampled_from(["name: a", "description: d", "tools: Read, Grep", "tools:", "  - Read",
                     "description: &x a", "tools: [*x, *x]", "---", "model: x: y"])),
    max_size=12)


@settings(max_examples=300, deadline=None)
@given(front=lines, kind=st.sampled_from(["agent", "skill"]), fenced=st.booleans())
def test_any_front_matter_gives_a_definition_or_a_diagnostic_and_never_raises(
        tmp_path_factory, front: list[str], kind: str, fenced: bool) -> None:
    folder = tmp_path_factory.mktemp("defs") / "s"
    folder.mkdir()
    path = folder / ("SKILL.md" if kind == "skill" else "a.md")
    text = "\n".join(front)
    path.write_text(f"---\n{text}\n---\nBody\n" if fenced else text)

    result, warnings = parse_file(path, kind, "user")  # type: ignore[arg-type]

    assert isinstance(result, AgentDefinition | SkillDefinition | Diagnostic)
    assert all(w.severity == "warning" for w in warnings)
    if isinstance(result, Diagnostic):
        assert result.reason and "\n" not in result.reason
