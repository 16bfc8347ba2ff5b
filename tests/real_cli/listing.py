"""What the real CLI shows the model about agents and skills, read from its first API request.

The first ``POST /v1/messages`` of a ``-p`` run carries a ``<system-reminder>`` listing every
loaded agent as ``- <name>: <description> (Tools: <list>)`` and every skill as
``- <name>: <description>`` (2.1.197 and 2.1.332 alike, apart from the skill details noted in
``expected_skill_entry``). The same lines, built from the bridge's registry, say what the bridge
publishes; a conformance test compares the two.
"""

from __future__ import annotations

import re

from agents_registry import AgentDefinition, Registry, SkillDefinition

AGENTS_HEADING = "Available agent types for the Agent tool:"
SKILLS_HEADING = "The following skills are available for use with the Skill tool:"
BUILTIN_AGENTS = frozenset({"claude", "Explore", "general-purpose", "Plan", "statusline-setup"})


def listed_agents(text: str) -> dict[str, tuple[str, str]]:
    """``name -> (description, tools)`` for each agent listed in ``text``.

    Names and descriptions are compared stripped: the bridge strips both, the CLI neither.
    """
    section = _section(text, AGENTS_HEADING, "\n\nWhen you launch")
    listed = {}
    for name, rest in _entries(section):
        description, _, tools = rest.rpartition(" (Tools: ")
        if name.strip() not in BUILTIN_AGENTS:
            listed[name.strip()] = (description.strip(), tools.removesuffix(")"))
    return listed


def listed_skills(text: str, names: set[str]) -> dict[str, str]:
    """``entry -> description`` for each skill in ``names`` listed in ``text``.

    An entry is the line's name part: ``folder`` or, in 2.1.332, ``folder (display name)``.
    """
    section = _section(text, SKILLS_HEADING, "\n\n")
    return {entry: rest for entry, rest in _entries(section)
            if entry.split(" (")[0] in names}


def expected_agents(registry: Registry) -> dict[str, tuple[str, str]]:
    return {agent.name: expected_agent_entry(agent) for agent in registry.agents.values()}


def expected_agent_entry(agent: AgentDefinition) -> tuple[str, str]:
    """The CLI's ``(description, tools)`` for ``agent``."""
    if agent.tools:
        tools = ", ".join(agent.tools)
    elif agent.disallowed_tools:
        tools = "All tools except " + ", ".join(agent.disallowed_tools)
    else:
        # An empty list is shown as "All tools" too, yet runs with none (see test_argv_conformance).
        tools = "All tools"
    return agent.description, tools


def expected_skills(registry: Registry, version: str) -> dict[str, str]:
    return dict(expected_skill_entry(skill, version) for skill in registry.skills.values())


def expected_skill_entry(skill: SkillDefinition, version: str) -> tuple[str, str]:
    """The CLI's ``(entry, description)`` for ``skill``.

    2.1.332 shows the front matter's name beside the folder's and joins lines with spaces;
    2.1.197 shows the folder name alone and keeps the newlines. Both append ``when_to_use``.
    """
    description = skill.description
    if skill.when_to_use:
        description = f"{description} - {skill.when_to_use}"
    if version == "2.1.197":
        return skill.name, description
    entry = f"{skill.name} ({skill.display_name})" if skill.display_name else skill.name
    return entry, " ".join(description.split("\n"))


def _section(text: str, heading: str, end: str) -> str:
    start = text.index(heading) + len(heading)
    stop = text.find(end, text.index("\n- ", start))
    return text[start:] if stop < 0 else text[start:stop]


def _entries(section: str) -> list[tuple[str, str]]:
    # An entry runs to the next "- " line: descriptions may span lines.
    entries = re.split(r"\n- ", "\n" + section.strip("\n"))[1:]
    return [(name, rest.strip()) for name, _, rest in (e.partition(": ") for e in entries)]
