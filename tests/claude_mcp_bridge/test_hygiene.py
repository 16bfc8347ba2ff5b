"""Description hygiene warnings in `list` and `doctor`."""

import json
import subprocess
import sys
from pathlib import Path

from agents_registry import Roots, load_registry
from claude_mcp_bridge.hygiene import description_warnings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def registry_of(workspace):
    return load_registry(Roots(workspace.user_claude, workspace.project))


def test_a_description_over_2048_characters_is_named(workspace):
    workspace.agent("wordy", description="Explains things at length. " * 100)
    workspace.agent("terse", description="Explains things.")
    [warning] = description_warnings(registry_of(workspace).definitions())
    assert warning.definition.name == "wordy"
    assert "2,699 characters" in warning.reason and "2,048" in warning.reason


def test_near_duplicate_descriptions_are_named_as_a_pair(workspace):
    workspace.agent("reviewer-one", description=(
        "Reviews Python pull requests for bugs, style and missing tests before merge."))
    workspace.agent("reviewer-two", description=(
        "Reviews Python pull requests for bugs, style and missing tests before merging."))
    workspace.agent("docs", description="Writes user documentation and tutorials.")
    [warning] = description_warnings(registry_of(workspace).definitions())
    assert {warning.definition.name, warning.reason.split(" like that of agent ")[1].split()[0]} \
        == {"reviewer-one", "reviewer-two"}


def test_a_realistic_collection_has_few_false_alarms():
    registry = load_registry(Roots(user_dir=FIXTURES / "router_corpus", project_dir=None))
    warnings = description_warnings(registry.definitions())
    assert len(list(registry.definitions())) > 80
    assert len(warnings) <= 2, [str(w) for w in warnings]


def test_list_and_doctor_show_the_warnings(workspace, fake_claude):
    workspace.agent("wordy", description="Explains things at length. " * 100)
    env = workspace.cli_env(fake_claude)
    base = [sys.executable, "-m", "claude_mcp_bridge"]
    listing = subprocess.run([*base, "list", "--json", "--project-dir", str(workspace.project)],
                             env=env, capture_output=True, text=True, timeout=30)
    doctor = subprocess.run([*base, "doctor", "--project-dir", str(workspace.project)],
                            env={**env, "CLAUDE_MCP_BRIDGE_DATA_DIR": str(workspace.home)},
                            capture_output=True, text=True, timeout=60)
    [warning] = json.loads(listing.stdout)["warnings"]
    assert warning["path"].endswith("wordy.md") and "2,048" in warning["reason"]
    assert "description warnings" in doctor.stdout and "wordy.md" in doctor.stdout


def hard_to_find_team(workspace):
    for name, description in [
            ("sql-reviewer", "Reviews SQL migration code for table locks and rollbacks."),
            ("k8s-debugger", "Debugs Kubernetes pods, rollouts and probes."),
            ("a11y-auditor", "Reviews React code for ARIA roles and focus order."),
            ("changelog-writer", "Writes release notes from merged pull requests."),
            ("docs-writer", "Writes user guides and tutorials."),
            ("code-reviewer", "Reviews and writes code."),
            ("k8s-pods", "Debugs Kubernetes pods; reviews and writes code.")]:
        workspace.agent(name, description=description)


def test_an_agent_with_no_distinctive_word_is_hard_to_find(workspace):
    hard_to_find_team(workspace)
    warnings = description_warnings(registry_of(workspace).definitions())
    generic = [w for w in warnings if w.definition.name == "code-reviewer"]
    assert len(generic) == 1 and "no word" in generic[0].reason


def test_an_agent_whose_words_another_has_too_is_named_with_it(workspace):
    hard_to_find_team(workspace)
    warnings = description_warnings(registry_of(workspace).definitions())
    [shadowed] = [w for w in warnings if w.definition.name == "k8s-pods"]
    assert "k8s-debugger" in shadowed.reason and "no task can rank it above" in shadowed.reason
    assert not [w for w in warnings if w.definition.name in ("sql-reviewer", "a11y-auditor")]


def test_public_collections_raise_few_findability_warnings():
    from claude_mcp_bridge.hygiene import hard_to_find

    for collection in sorted((FIXTURES / "router_collections").iterdir()):
        if collection.is_dir():
            definitions = list(load_registry(
                Roots(user_dir=collection, project_dir=None)).definitions())
            assert len(hard_to_find(definitions)) <= len(definitions) // 50, collection.name
