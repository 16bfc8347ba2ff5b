"""Policy narrows what a definition asks for, keeps calls inside their roots and caps."""

import os
from pathlib import Path
from typing import Any

import pytest

from agents_registry import Definition
from agents_registry.definitions import build_definition
from claude_mcp_bridge.arguments import CallArguments
from claude_mcp_bridge.config import Config
from claude_mcp_bridge.outcomes import Refusal
from claude_mcp_bridge.policy import RunPlan, narrow_tools, plan_call
from claude_mcp_bridge.tool_policy import ToolPolicy, tool_policy


def agent(name: str = "reviewer", **front: Any) -> Definition:
    return build_definition("agent", {"name": name, "description": "Reviews.", **front},
                            body="You review.", path=Path(f"/defs/agents/{name}.md"),
                            scope="project", sha256="0" * 64)


def skill(name: str = "changelog", **front: Any) -> Definition:
    return build_definition("skill", {"name": name, "description": "Writes.", **front},
                            body="Write it.", path=Path(f"/defs/skills/{name}/SKILL.md"),
                            scope="project", sha256="0" * 64)


def policy_for(definition: Definition, config: dict[str, Any] | None = None,
               project: Path = Path("/project")) -> ToolPolicy:
    return tool_policy(Config.model_validate(config or {}), definition, project)


def plan(definition: Definition, config: dict[str, Any] | None = None, *,
         project: Path | None = None, depth: int = 0, **arguments: Any) -> RunPlan | Refusal:
    project = project or Path.cwd()
    policy = policy_for(definition, config, project)
    max_depth = Config.model_validate(config or {}).limits.max_depth
    return plan_call(definition, CallArguments(prompt="go", **arguments), policy,
                     depth=depth, max_depth=max_depth, project_dir=project)


def admitted(definition: Definition, config: dict[str, Any] | None = None, **kw: Any) -> RunPlan:
    result = plan(definition, config, **kw)
    assert isinstance(result, RunPlan), result
    return result


def refused(definition: Definition, config: dict[str, Any] | None = None, **kw: Any) -> str:
    result = plan(definition, config, **kw)
    assert isinstance(result, Refusal), result
    return result.message


# --- tools: narrow, never widen ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("declared", "allow_lists", "expected"),
    [
        (None, [], None),  # nothing asked, nothing configured: the CLI's defaults
        (None, [("Read", "Grep")], ("Read", "Grep")),
        (("Read", "Write"), [("Read", "Grep")], ("Read",)),
        (("Read",), [("Read", "Write", "Bash")], ("Read",)),  # never widened
        (("Bash",), [("Bash(git *)",)], ("Bash(git *)",)),  # the narrower rule remains
        (("Bash(git *)",), [("Bash",)], ("Bash(git *)",)),
        (("Bash(rm *)",), [("Bash(git *)",)], ()),
        (("Bash",), [("Bash(git *)", "Bash(ls)")], ("Bash(git *)", "Bash(ls)")),
        (("Write",), [("Read",)], ()),
        (None, [("Read", "Bash"), ("Bash(git *)",)], ("Bash(git *)",)),  # every list must admit
        (("Read", "Bash"), [("Read", "Bash"), ("Grep",)], ()),
    ],
)
def test_allow_lists_narrow_the_declared_tools(
        declared: tuple[str, ...] | None, allow_lists: list[tuple[str, ...]],
        expected: tuple[str, ...] | None) -> None:
    assert narrow_tools(declared, allow_lists) == expected


def test_narrowing_never_adds_a_tool_the_definition_did_not_ask_for() -> None:
    lists = [("Read", "Write", "Bash(git *)", "Bash(npm *)", "WebFetch")]
    declared = ("Read", "Bash(git *)", "Grep")
    narrowed = narrow_tools(declared, lists)
    assert narrowed == ("Read", "Bash(git *)")
    assert set(narrowed) <= set(declared)


def test_the_plan_keeps_the_agents_tools_that_the_config_allows() -> None:
    config: dict[str, Any] = {"permissions": {"allowed_tools": ["Read", "Bash(git *)"]},
              "agents": {"reviewer": {"permissions": {"allowed_tools": ["Bash"]}}}}
    run = admitted(agent(tools="Read, Bash, Write"), config)
    assert run.tools == ("Bash(git *)",)


def test_a_skills_allowed_tools_are_narrowed_too() -> None:
    config = {"permissions": {"allowed_tools": ["Read"]}}
    assert admitted(skill(**{"allowed-tools": "Read, Write"}), config).tools == ("Read",)


def test_an_allow_list_for_another_tool_does_not_apply() -> None:
    config = {"agents": {"writer": {"permissions": {"allowed_tools": ["Read"]}}}}
    assert admitted(agent(tools="Read, Write"), config).tools == ("Read", "Write")


def test_disallowed_tools_are_the_union_of_every_list() -> None:
    config = {"permissions": {"disallowed_tools": ["WebFetch", "Bash"]},
              "agents": {"reviewer": {"permissions": {"disallowed_tools": ["Write", "Bash"]}}}}
    run = admitted(agent(disallowedTools="Bash, NotebookEdit"), config)
    assert run.disallowed_tools == ("Bash", "NotebookEdit", "WebFetch", "Write")


# --- permission mode ----------------------------------------------------------------------------

def test_a_definition_asking_for_bypass_permissions_is_refused_without_consent() -> None:
    reason = refused(agent(permissionMode="bypassPermissions"))
    assert reason.startswith("/defs/agents/reviewer.md: asks for permission mode bypassPermissions")
    assert "allow_bypass_permissions = true" in reason


def test_bypass_permissions_runs_when_the_config_allows_it() -> None:
    config = {"permissions": {"allow_bypass_permissions": True}}
    assert admitted(agent(permissionMode="bypassPermissions"), config).permission_mode == (
        "bypassPermissions")


def test_the_configured_mode_replaces_the_definitions() -> None:
    config = {"permissions": {"mode": "plan"}}
    assert admitted(agent(permissionMode="bypassPermissions"), config).permission_mode == "plan"
    tool_mode = {**config, "agents": {"reviewer": {"permissions": {"mode": "acceptEdits"}}}}
    assert admitted(agent(), tool_mode).permission_mode == "acceptEdits"
    assert admitted(agent(permissionMode="plan")).permission_mode == "plan"
    assert admitted(agent()).permission_mode is None


def test_a_definition_cannot_choose_auto_by_default() -> None:
    reason = refused(agent(permissionMode="auto"))
    assert reason == ("/defs/agents/reviewer.md: asks for permission mode auto, which "
                      "[permissions] allowed_modes does not allow (allowed: default, manual, "
                      "plan, dontAsk, acceptEdits); add it there, or set the mode in the config")


def test_bypass_needs_both_consent_and_a_listed_mode_when_modes_are_listed() -> None:
    config = {"permissions": {"allow_bypass_permissions": True, "allowed_modes": ["plan"]}}
    assert "[permissions] allowed_modes does not allow" in refused(
        agent(permissionMode="bypassPermissions"), config)


@pytest.mark.parametrize("mode", ["default", "plan", "dontAsk", "acceptEdits"])
def test_a_definition_may_choose_a_safe_mode_by_default(mode: str) -> None:
    assert admitted(agent(permissionMode=mode)).permission_mode == mode


def test_allowed_modes_say_which_modes_a_definition_may_ask_for() -> None:
    config = {"permissions": {"allowed_modes": ["plan", "auto"]}}
    assert admitted(agent(permissionMode="auto"), config).permission_mode == "auto"
    reason = refused(agent(permissionMode="acceptEdits"), config)
    assert "asks for permission mode acceptEdits, which [permissions] allowed_modes does not " \
           "allow (allowed: plan, auto)" in reason


def test_a_tools_allowed_modes_narrow_the_global_ones_and_are_named_in_the_refusal() -> None:
    config = {"permissions": {"allowed_modes": ["plan", "auto"]},
              "agents": {"reviewer": {"permissions": {"allowed_modes": ["plan"]}}}}
    reason = refused(agent(permissionMode="auto"), config)
    assert "which [agents.reviewer.permissions] allowed_modes does not allow (allowed: plan)" \
        in reason
    widening = {"agents": {"reviewer": {"permissions": {"allowed_modes": ["auto"]}}}}
    assert "[permissions] allowed_modes does not allow" in refused(
        agent(permissionMode="auto"), widening)  # a tool's list cannot widen the global one


def test_a_mode_the_config_sets_is_the_configs_choice() -> None:
    assert admitted(agent(permissionMode="plan"), {"permissions": {"mode": "auto"}}
                    ).permission_mode == "auto"


# --- MCP servers -------------------------------------------------------------------------------

EVIL = [{"evil": {"command": "/bin/sh", "args": ["-c", "touch /tmp/pwned"]}}]


def test_an_agent_file_cannot_start_a_server_by_default_even_strict_and_narrow() -> None:
    config = {"mcp": {"strict": True}, "permissions": {"allowed_tools": ["Read"]}}
    reason = refused(agent(mcpServers=EVIL, tools="Read"), config)
    assert reason == ("/defs/agents/reviewer.md: mcpServers starts the server 'evil' (command "
                      "'/bin/sh') itself, which [mcp] definition_servers does not allow; a "
                      "definition file starts only the servers named there (none by default)")


def test_a_mapping_of_servers_is_checked_like_a_list() -> None:
    assert "starts the server 'evil'" in refused(agent(mcpServers=EVIL[0]))


def test_a_server_named_in_definition_servers_may_start_and_runs_in_list_form() -> None:
    config = {"mcp": {"definition_servers": ["evil"]}}
    assert admitted(agent(mcpServers=EVIL[0]), config).mcp_servers == tuple(EVIL)


def test_a_tools_definition_servers_narrow_the_global_ones() -> None:
    config = {"mcp": {"definition_servers": ["evil"]},
              "agents": {"reviewer": {"mcp": {"definition_servers": []}}}}
    assert "which [agents.reviewer.mcp] definition_servers does not allow" in refused(
        agent(mcpServers=EVIL), config)
    widening = {"agents": {"reviewer": {"mcp": {"definition_servers": ["evil"]}}}}
    assert "which [mcp] definition_servers does not allow" in refused(
        agent(mcpServers=EVIL), widening)


def test_an_agent_may_name_configured_servers_unless_allowed_servers_leaves_them_out() -> None:
    assert admitted(agent(mcpServers=["github"])).mcp_servers == ("github",)
    config = {"mcp": {"allowed_servers": ["calendar"]}}
    assert admitted(agent(mcpServers=["calendar"]), config).allowed_servers == {"calendar"}
    assert refused(agent(mcpServers=["github"]), config) == (
        "/defs/agents/reviewer.md: mcpServers names the server 'github', which [mcp] "
        "allowed_servers does not allow; add it there or remove it from the file")


def test_allowed_servers_of_the_config_and_the_tool_intersect() -> None:
    config = {"mcp": {"allowed_servers": ["a", "b"]},
              "agents": {"reviewer": {"mcp": {"allowed_servers": ["b", "c"]}}}}
    assert admitted(agent(), config).allowed_servers == {"b"}
    assert admitted(agent()).allowed_servers is None


@pytest.mark.parametrize("servers", [5, [5], [{}], "github"])
def test_a_malformed_mcp_servers_value_is_refused(servers: Any) -> None:
    assert "mcpServers" in refused(agent(mcpServers=servers))


# --- cwd ----------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """project/ (the root) with sub/, and outside/ beside it."""
    (tmp_path / "project" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "project2").mkdir()
    return tmp_path


def test_a_cwd_inside_the_project_runs_there(tree: Path) -> None:
    run = admitted(agent(), project=tree / "project", cwd=str(tree / "project" / "sub"))
    assert run.cwd == (tree / "project" / "sub").resolve()


def test_no_cwd_runs_in_the_project(tree: Path) -> None:
    assert admitted(agent(), project=tree / "project").cwd == tree / "project"


def test_a_cwd_outside_the_roots_is_refused(tree: Path) -> None:
    reason = refused(agent(), project=tree / "project", cwd=str(tree / "outside"))
    assert f"resolves to {(tree / 'outside').resolve()}, outside the allowed roots" in reason
    assert "allowed_cwd_roots" in reason


def test_a_sibling_sharing_the_roots_name_prefix_is_outside(tree: Path) -> None:
    refused(agent(), project=tree / "project", cwd=str(tree / "project2"))


def test_a_symlink_out_of_the_root_is_refused(tree: Path) -> None:
    link = tree / "project" / "escape"
    os.symlink(tree / "outside", link)
    reason = refused(agent(), project=tree / "project", cwd=str(link))
    assert f"resolves to {(tree / 'outside').resolve()}" in reason


def test_a_dotdot_out_of_the_root_is_refused(tree: Path) -> None:
    sneaky = f"{tree}/project/sub/../../outside"
    reason = refused(agent(), project=tree / "project", cwd=sneaky)
    assert f"resolves to {(tree / 'outside').resolve()}" in reason


def test_a_symlink_that_stays_inside_the_root_is_fine(tree: Path) -> None:
    os.symlink(tree / "project" / "sub", tree / "project" / "alias")
    run = admitted(agent(), project=tree / "project", cwd=str(tree / "project" / "alias"))
    assert run.cwd == (tree / "project" / "sub").resolve()


def test_a_relative_cwd_is_refused(tree: Path) -> None:
    assert "must be an absolute path, got 'sub'" in refused(agent(), project=tree / "project",
                                                            cwd="sub")


def test_a_cwd_that_does_not_exist_is_refused(tree: Path) -> None:
    missing = str(tree / "project" / "nope")
    assert "is not an existing directory" in refused(agent(), project=tree / "project",
                                                     cwd=missing)


def test_configured_roots_replace_the_project(tree: Path) -> None:
    config = {"permissions": {"allowed_cwd_roots": [str(tree / "outside")]}}
    assert admitted(agent(), config, project=tree / "project",
                    cwd=str(tree / "outside")).cwd == (tree / "outside").resolve()
    refused(agent(), config, project=tree / "project", cwd=str(tree / "project" / "sub"))


def test_a_tools_own_roots_apply_to_it(tree: Path) -> None:
    roots = {"allowed_cwd_roots": [str(tree / "outside")]}
    config = {"agents": {"reviewer": {"permissions": roots}}}
    admitted(agent(), config, project=tree / "project", cwd=str(tree / "outside"))
    refused(agent("writer"), config, project=tree / "project", cwd=str(tree / "outside"))


# --- model, caps, turns, depth, timeout ---------------------------------------------------------

def test_a_model_override_is_refused_when_the_config_disables_it() -> None:
    config = {"permissions": {"allow_model_override": False}}
    assert "allow_model_override = false" in refused(agent(), config, model="opus")
    assert admitted(agent(model="haiku"), config).model == "haiku"  # the definition's stays


def test_a_tool_may_allow_the_model_override_the_global_config_forbids() -> None:
    config = {"permissions": {"allow_model_override": False},
              "agents": {"reviewer": {"permissions": {"allow_model_override": True}}}}
    assert admitted(agent(model="haiku"), config, model="opus").model == "opus"
    refused(agent("writer"), config, model="opus")


@pytest.mark.parametrize(
    ("caller", "tool", "global_cap", "expected"),
    [
        (None, None, None, None),
        (0.5, None, None, 0.5),
        (None, None, 0.4, 0.4),
        (None, 0.3, 0.4, 0.3),
        (0.5, 0.3, 0.4, 0.3),
        (0.5, 0.6, 0.4, 0.4),
        (0.1, 0.3, 0.4, 0.1),
    ],
)
def test_the_per_call_cap_is_the_smallest_of_caller_tool_and_global(
        caller: float | None, tool: float | None, global_cap: float | None,
        expected: float | None) -> None:
    config: dict[str, Any] = {"budget": {"per_call_usd": global_cap}} if global_cap else {}
    if tool:
        config["agents"] = {"reviewer": {"budget": {"per_call_usd": tool}}}
    arguments = {"max_budget_usd": caller} if caller else {}
    assert admitted(agent(), config, **arguments).max_budget_usd == expected


@pytest.mark.parametrize(
    ("caller", "tool", "global_turns", "expected"),
    [(None, None, None, None), (5, None, None, 5), (None, None, 8, 8), (5, None, 8, 5),
     (9, None, 8, 8), (9, 6, 8, 6), (None, 10, 8, 8), (3, 6, 8, 3)],
)
def test_max_turns_is_the_smallest_of_caller_tool_and_global(
        caller: int | None, tool: int | None, global_turns: int | None,
        expected: int | None) -> None:
    config: dict[str, Any] = {"limits": {"max_turns": global_turns}} if global_turns else {}
    if tool:
        config["agents"] = {"reviewer": {"limits": {"max_turns": tool}}}
    arguments = {"max_turns": caller} if caller else {}
    assert admitted(agent(), config, **arguments).max_turns == expected


def test_a_bridge_at_max_depth_refuses_with_a_clear_message() -> None:
    reason = refused(agent(), {"limits": {"max_depth": 2}}, depth=2)
    assert reason.startswith("recursion guard: this bridge runs at depth 2")
    assert "(max_depth 2)" in reason and "raise [limits] max_depth" in reason
    refused(agent(), {"limits": {"max_depth": 2}}, depth=5)
    admitted(agent(), {"limits": {"max_depth": 2}}, depth=1)


def test_the_depth_guard_comes_before_any_other_check() -> None:
    reason = refused(agent(permissionMode="bypassPermissions"), depth=3, cwd="relative")
    assert reason.startswith("recursion guard")


def test_the_timeout_is_the_tools_own_else_the_global_one() -> None:
    config = {"limits": {"timeout_s": 600},
              "agents": {"reviewer": {"limits": {"timeout_s": 30}}}}
    assert admitted(agent(), config).timeout_s == 30
    assert admitted(agent("writer"), config).timeout_s == 600
    assert admitted(agent()).timeout_s == 1800


def test_a_tools_policy_carries_its_budget_and_concurrency() -> None:
    config = {"budget": {"daily_usd": 10},
              "agents": {"reviewer": {"budget": {"daily_usd": 2, "monthly_usd": 20},
                                      "limits": {"max_concurrency": 1}}}}
    policy = policy_for(agent(), config)
    assert (policy.budget.daily_usd, policy.budget.monthly_usd) == (2, 20)
    assert policy.budget.per_call_usd is None  # the call's cap is computed apart
    assert policy.max_concurrency == 1
    other = policy_for(agent("writer"), config)
    assert other.budget.daily_usd is None and other.max_concurrency is None


def test_a_policy_that_leaves_no_tools_refuses_instead_of_passing_an_empty_list(workspace):
    from agents_registry import Roots, load_registry
    from claude_mcp_bridge.arguments import CallArguments
    from claude_mcp_bridge.config import Config
    from claude_mcp_bridge.policy import plan_call
    from claude_mcp_bridge.tool_policy import tool_policy

    workspace.agent("writer", "tools: Write, Edit\n")
    definition = load_registry(Roots(workspace.user_claude, workspace.project)).get(
        "agent", "writer")
    config = Config.model_validate({"permissions": {"allowed_tools": ["Read", "Grep"]}})
    plan = plan_call(definition, CallArguments(prompt="go"),
                     tool_policy(config, definition, workspace.project), depth=0, max_depth=3,
                     project_dir=workspace.project)
    assert isinstance(plan, Refusal)
    assert "none of its tools (Write, Edit) is allowed" in plan.message
