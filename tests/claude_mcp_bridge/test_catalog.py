import re
from pathlib import Path

import jsonschema
import pytest

from agents_registry import Roots, load_registry
from claude_mcp_bridge.arguments import (
    INPUT_SCHEMA,
    OUTPUT_SCHEMA,
    CallArguments,
    CallOutput,
    parse_arguments,
)
from claude_mcp_bridge.catalog import build_catalog, tool_name
from claude_mcp_bridge.config import Config

NAME_RULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def catalog_of(workspace, config=None):
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    return build_catalog(registry, Config.model_validate(config or {}), workspace.project)


def test_a_plain_name_is_published_as_it_is():
    assert tool_name("agent", "code-reviewer") == "agent_code-reviewer"
    assert tool_name("skill", "changelog") == "skill_changelog"


@pytest.mark.parametrize("name", ["my.agent", "my agent", "über", "a/b", "x" * 200, "__", "日本語"])
def test_a_name_that_needs_changing_still_obeys_the_api_rule(name):
    assert NAME_RULE.match(tool_name("agent", name))


def test_names_that_differ_only_after_sanitising_stay_distinct():
    names = {tool_name("agent", n) for n in ["my.agent", "my agent", "my_agent", "my-agent"]}
    assert len(names) == 4


def test_names_that_differ_only_after_truncation_stay_distinct():
    base = "a" * 70
    assert tool_name("agent", base + "1") != tool_name("agent", base + "2")


def test_a_changed_name_is_the_same_on_every_run():
    assert tool_name("agent", "my.agent") == tool_name("agent", "my.agent")


def test_the_catalog_publishes_one_tool_per_agent_and_skill(workspace):
    workspace.agent("reviewer", "tools: Read, Grep\n")
    workspace.agent("writer")
    workspace.skill("changelog")
    catalog = catalog_of(workspace)
    assert [t.name for t in catalog.tools] == ["agent_reviewer", "agent_writer", "skill_changelog"]
    reviewer = catalog.get("agent_reviewer").tool
    assert reviewer.description == "The reviewer agent."
    assert reviewer.title == "reviewer (agent)"
    assert reviewer.annotations.read_only_hint is True
    assert catalog.get("agent_writer").tool.annotations.read_only_hint is False


def test_a_long_description_is_published_whole(workspace):
    long = "Reviews code. " * 100
    workspace.agent("reviewer", description=long.strip())
    catalog = catalog_of(workspace)
    assert catalog.get("agent_reviewer").tool.description == long.strip()


def test_the_input_schema_requires_only_a_prompt_and_forbids_other_keys():
    assert INPUT_SCHEMA["required"] == ["prompt"]
    assert INPUT_SCHEMA["additionalProperties"] is False
    assert set(INPUT_SCHEMA["properties"]) == {
        "prompt", "cwd", "model", "max_turns", "max_budget_usd", "session_id"}
    for prop in INPUT_SCHEMA["properties"].values():
        assert "anyOf" not in prop, "optional arguments are published without a null branch"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "blank"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "hi", "extra": 1}, "extra"),
        ({"prompt": "hi", "max_turns": "5"}, "max_turns"),
        ({"prompt": "hi", "max_turns": True}, "max_turns"),
        ({"prompt": "hi", "max_turns": 0}, "max_turns"),
        ({"prompt": "hi", "max_turns": 10**9}, "max_turns"),
        ({"prompt": "hi", "max_budget_usd": -1}, "max_budget_usd"),
        ({"prompt": "hi", "max_budget_usd": "1"}, "max_budget_usd"),
        ({"prompt": "hi", "model": "--dangerously-skip-permissions"}, "model"),
        ({"prompt": "hi", "model": "sonnet; rm -rf /"}, "model"),
        ({"prompt": "hi", "session_id": "not-a-uuid"}, "session_id"),
        ({"prompt": "hi", "session_id": "../../etc/passwd"}, "session_id"),
        ({"prompt": "hi", "cwd": 7}, "cwd"),
        ({"prompt": "x" * 1_000_001}, "prompt"),
    ],
)
def test_hostile_arguments_are_refused_with_the_reason(arguments, problem):
    outcome = parse_arguments(arguments)
    assert isinstance(outcome, str)
    assert outcome.startswith("invalid arguments: ")
    assert problem in outcome


def test_the_published_schema_agrees_with_the_validator_on_good_arguments():
    good = {"prompt": "-rf looks like a flag", "cwd": "/tmp", "model": "claude-sonnet-4-5",
            "max_turns": 3, "max_budget_usd": 0.5,
            "session_id": "123e4567-e89b-12d3-a456-426614174000"}
    jsonschema.validate(good, INPUT_SCHEMA)
    parsed = parse_arguments(good)
    assert isinstance(parsed, CallArguments)
    assert parsed.prompt == good["prompt"]


@pytest.mark.parametrize("key", ["cwd", "model", "max_turns", "max_budget_usd", "session_id"])
def test_a_null_optional_argument_means_not_given(key):
    # pydantic raised TypeError for a null under a pattern or a bound: an "internal error"
    parsed = parse_arguments({"prompt": "hi", key: None})
    assert isinstance(parsed, CallArguments) and getattr(parsed, key) is None


def test_a_refused_argument_is_named_once_by_its_field():
    assert parse_arguments({"prompt": "hi", "model": "-x", "max_turns": 0}) == (
        "invalid arguments: model: String should match pattern "
        "'^[A-Za-z0-9][A-Za-z0-9._:@\\[\\]/-]{0,127}$'; max_turns: Input should be greater "
        "than or equal to 1")


def test_an_integer_budget_is_accepted():
    assert isinstance(parse_arguments({"prompt": "hi", "max_budget_usd": 2}), CallArguments)


def test_structured_output_matches_the_output_schema():
    output = CallOutput(result="ok", is_error=False, session_id=None, cost_usd=0.1, num_turns=1,
                        duration_ms=5, usage={"input_tokens": 1}, permission_denials=[])
    jsonschema.validate(output.model_dump(mode="json"), OUTPUT_SCHEMA)


def test_a_catalog_never_reads_the_disk_after_it_is_built(workspace):
    path = workspace.agent("reviewer")
    catalog = catalog_of(workspace)
    Path(path).unlink()
    assert catalog.get("agent_reviewer") is not None


def test_a_disabled_tool_is_not_published_and_tags_are_shown(workspace):
    workspace.agent("reviewer")
    workspace.agent("writer")
    workspace.skill("changelog")
    catalog = catalog_of(workspace, {"agents": {"writer": {"enabled": False},
                                                "reviewer": {"tags": ["review", "code"]}},
                                     "skills": {"changelog": {"enabled": False}}})
    assert [t.name for t in catalog.tools] == ["agent_reviewer"]
    assert catalog.get("agent_writer") is None
    assert catalog.tools[0].meta == {"tags": ["review", "code"]}


def test_ranges_are_published_in_json_schema_words_and_enforced():
    turns = INPUT_SCHEMA["properties"]["max_turns"]
    assert (turns["minimum"], turns["maximum"]) == (1, 1000)
    assert "ge" not in turns and "default" not in turns
    jsonschema.validate({"prompt": "x", "max_turns": 1000}, INPUT_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"prompt": "x", "max_turns": 1001}, INPUT_SCHEMA)


def test_a_policy_root_that_cannot_be_resolved_stops_the_build_not_each_call(workspace,
                                                                             tmp_path):
    """Policies are worked out on a tool's first call; the folders they name are resolved
    when the catalog is built, so a bad one is reported once, at start-up or reload."""
    workspace.agent("reviewer")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # resolving it fails: a symlink loop
    config = {"agents": {"reviewer": {"permissions": {"allowed_cwd_roots": [str(loop / "x")]}}}}
    with pytest.raises((RuntimeError, OSError)):
        catalog_of(workspace, config)
