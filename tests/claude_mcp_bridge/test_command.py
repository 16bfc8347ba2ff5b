import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from agents_registry import Roots, load_registry
from claude_mcp_bridge.arguments import CallArguments
from claude_mcp_bridge.command import CommandError, build_command, format_usd
from claude_mcp_bridge.outcomes import Refusal
from claude_mcp_bridge.policy import plan_call
from claude_mcp_bridge.settings import DEPTH_VAR, Settings
from claude_mcp_bridge.tool_policy import tool_policy


def definition(workspace, kind, name):
    registry = load_registry(Roots(workspace.user_claude, workspace.project))
    return registry.get(kind, name)


def command_for(definition, arguments: CallArguments, settings: Settings):
    """Plan the call under the settings' policy, then build its command."""
    policy = tool_policy(settings.config, definition, settings.project_dir)
    plan = plan_call(definition, arguments, policy, depth=settings.depth,
                     max_depth=settings.config.limits.max_depth,
                     project_dir=settings.project_dir)
    assert not isinstance(plan, Refusal), plan
    return build_command(definition, plan, arguments.prompt, settings, settings.claude.path)


def flag_value(argv, flag):
    prefix = flag + "="
    return next(a[len(prefix):] for a in argv if a.startswith(prefix))


def test_an_agent_runs_from_its_own_definition_passed_inline(workspace, fake_claude):
    workspace.agent("reviewer", "tools: Read, Grep\nmodel: haiku\ndisallowedTools: Bash\n",
                    body="You review. SENTINEL")
    command = command_for(definition(workspace, "agent", "reviewer"), CallArguments(prompt="go"),
                          workspace.settings(fake_claude))
    argv = command.argv
    assert argv[:5] == (str(fake_claude.path), "-p", "--output-format", "stream-json", "--verbose")
    inline = json.loads(flag_value(argv, "--agents"))
    assert inline == {"reviewer": {"description": "The reviewer agent.",
                                   "prompt": "You review. SENTINEL", "tools": ["Read", "Grep"],
                                   "disallowedTools": ["Bash"], "model": "haiku"}}
    assert flag_value(argv, "--agent") == "reviewer"
    assert "--allowedTools" not in argv, "declared tools are allowed when asked, by the bridge"
    assert argv[argv.index("--disallowedTools") + 1] == "Bash"
    assert argv[5:9] == ("--input-format", "stream-json", "--permission-prompt-tool", "stdio")
    assert command.interactive


def test_dont_ask_mode_still_pre_allows_the_declared_tools(workspace, fake_claude):
    workspace.agent("reviewer", "tools: Read, Grep\npermissionMode: dontAsk\n")
    argv = command_for(definition(workspace, "agent", "reviewer"), CallArguments(prompt="go"),
                       workspace.settings(fake_claude)).argv
    i = argv.index("--allowedTools")
    assert argv[i + 1:i + 3] == ("Read", "Grep")


def test_a_narrowed_skill_gets_only_its_tools_as_the_builtin_set(workspace, fake_claude):
    workspace.skill("notes", "allowed-tools: Read, Write, Glob, Bash(git log:*)\n")
    settings = workspace.settings(fake_claude, {"permissions": {
        "allowed_tools": ["Read", "Glob", "Bash(git log:*)"]}})
    argv = command_for(definition(workspace, "skill", "notes"), CallArguments(prompt="go"),
                       settings).argv
    assert flag_value(argv, "--tools") == "Read,Glob,Bash"  # names, not rules
    assert "--allowedTools" not in argv, "the bridge's rules answer each prompt"
    # --tools never removes MCP tools: a list that names none denies them all
    assert argv[argv.index("--disallowedTools") + 1] == "mcp__*"


def test_a_narrowed_list_naming_an_mcp_tool_keeps_mcp_tools(workspace, fake_claude):
    workspace.agent("helper", "tools: Read, mcp__demo__echo\n")
    argv = command_for(definition(workspace, "agent", "helper"), CallArguments(prompt="go"),
                       workspace.settings(fake_claude)).argv
    assert flag_value(argv, "--tools") == "Read"
    assert "--disallowedTools" not in argv


def test_an_unrestricted_call_keeps_the_clis_default_tools(workspace, fake_claude):
    workspace.skill("notes")
    argv = command_for(definition(workspace, "skill", "notes"), CallArguments(prompt="go"),
                       workspace.settings(fake_claude)).argv
    assert not any(a.startswith("--tools") for a in argv)
    assert "--disallowedTools" not in argv


def test_the_prompt_goes_on_stdin_never_in_argv(workspace, fake_claude):
    workspace.agent("reviewer")
    prompt = "--mcp-config /etc/passwd and other things that look like flags"
    command = command_for(definition(workspace, "agent", "reviewer"),
                            CallArguments(prompt=prompt), workspace.settings(fake_claude))
    initialize, message = (json.loads(line) for line in command.stdin.decode().splitlines())
    assert initialize["request"] == {"subtype": "initialize", "hooks": None}
    assert message["message"] == {"role": "user", "content": prompt}
    assert not any(prompt in a for a in command.argv)


def test_caller_overrides_and_limits_become_flags(workspace, fake_claude):
    workspace.agent("reviewer", "model: haiku\n")
    args = CallArguments(prompt="go", model="opus", max_turns=3, max_budget_usd=0.00005,
                         session_id="123e4567-e89b-12d3-a456-426614174000")
    argv = command_for(definition(workspace, "agent", "reviewer"), args,
                         workspace.settings(fake_claude)).argv
    assert json.loads(flag_value(argv, "--agents"))["reviewer"]["model"] == "opus"
    assert flag_value(argv, "--model") == "opus"
    assert flag_value(argv, "--max-turns") == "3"
    assert flag_value(argv, "--max-budget-usd") == "0.00005"
    assert flag_value(argv, "--resume") == "123e4567-e89b-12d3-a456-426614174000"


def test_a_skill_runs_with_its_body_appended_and_its_folder_added(workspace, fake_claude):
    path = workspace.skill("changelog", "allowed-tools: Bash(git log:*), Read\n", body="STEPS")
    argv = command_for(definition(workspace, "skill", "changelog"), CallArguments(prompt="go"),
                         workspace.settings(fake_claude)).argv
    appended = flag_value(argv, "--append-system-prompt")
    assert "STEPS" in appended and str(path.parent) in appended
    assert argv[argv.index("--add-dir") + 1] == str(path.parent)
    assert not any(a.startswith("--agent") for a in argv)


def test_forwarded_mcp_configs_and_strict_mode_are_passed(workspace, fake_claude):
    workspace.agent("reviewer")
    settings = replace(workspace.settings(fake_claude),
                       mcp_configs=("/a.json", '{"mcpServers":{}}'),
                       strict_mcp_config=True)
    argv = command_for(definition(workspace, "agent", "reviewer"), CallArguments(prompt="go"),
                         settings).argv
    i = argv.index("--mcp-config")
    assert argv[i + 1:i + 3] == ("/a.json", '{"mcpServers":{}}')
    assert "--strict-mcp-config" in argv


def test_the_child_env_drops_claudecode_and_counts_depth(workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.extra_env.update({"CLAUDECODE": "1", "KEEP": "yes"})
    settings = replace(workspace.settings(fake_claude), depth=2)
    env = command_for(definition(workspace, "agent", "reviewer"), CallArguments(prompt="go"),
                        settings).env
    assert "CLAUDECODE" not in env
    assert env["KEEP"] == "yes"
    assert env[DEPTH_VAR] == "3"


def test_a_tool_rule_that_looks_like_a_flag_is_refused(workspace, fake_claude):
    workspace.agent("reviewer", "tools: ['-p', Read]\n")
    with pytest.raises(CommandError, match="flag"):
        command_for(definition(workspace, "agent", "reviewer"), CallArguments(prompt="go"),
                      workspace.settings(fake_claude))


def test_usd_amounts_are_plain_decimals():
    assert format_usd(0.00001) == "0.00001"
    assert format_usd(2.0) == "2"
    assert format_usd(0.5) == "0.5"


ALL_SHAPES = [
    ("agent", "tools: Read, Grep\nmodel: haiku\ndisallowedTools: Bash\nmaxTurns: 4\n"
              "skills: [changelog]\neffort: high\npermissionMode: plan\n", {}),
    ("agent", "", {"model": "opus", "max_turns": 2, "max_budget_usd": 1.5,
                   "session_id": "123e4567-e89b-12d3-a456-426614174000"}),
    ("skill", "allowed-tools: Bash(git log:*) Read\ndisallowed-tools: Write\nmodel: haiku\n",
     {"model": "sonnet"}),
]


@pytest.mark.parametrize(("kind", "front", "extra"), ALL_SHAPES)
def test_every_argv_shape_is_accepted_by_the_strict_fake(workspace, fake_claude, tmp_path,
                                                          kind, front, extra):
    (workspace.agent if kind == "agent" else workspace.skill)("thing", front)
    mcp = tmp_path / "mcp.json"
    mcp.write_text('{"mcpServers": {}}')
    settings = replace(workspace.settings(fake_claude), mcp_configs=(str(mcp),),
                       strict_mcp_config=True)
    command = command_for(definition(workspace, kind, "thing"),
                            CallArguments(prompt="go", **extra), settings)
    done = subprocess.run(command.argv, input=command.stdin, env=dict(command.env),
                          cwd=command.cwd, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    assert fake_claude.last()["prompt"] == "go"
    assert Path(fake_claude.last()["cwd"]) == workspace.project
