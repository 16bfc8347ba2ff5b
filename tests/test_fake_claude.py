"""The strict fake `claude` (tests/fakes/fake_claude.py): its protocol, and how it matches the
real CLI.

The `real_cli` class runs each tested real CLI (2.1.197: ``CLAUDE_MCP_BRIDGE_REAL_CLAUDE``, else
``<repo>/.cache/claude-cli/node_modules/.bin/claude``; 2.1.332: ``..._LATEST``, else
``.cache/claude-cli-latest``) offline against the fake set to the same version
(``FAKE_CLAUDE_VERSION``), for what needs no model: the option table, help and version, and the
exit code and stderr of bad invocations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import INITIALIZE, LiveChild, event_kinds, user_message

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes"
FAKE = FAKES / "fake_claude.py"
HELP_FILE = FAKES / "claude-2.1.197-help.txt"
UUID = "0384cd3d-c402-436e-9238-fd2686301ea2"


def load_fake_module(version: str | None = None) -> ModuleType:
    """The fake as a module; ``version`` sets FAKE_CLAUDE_VERSION while it is imported."""
    saved = os.environ.get("FAKE_CLAUDE_VERSION")
    os.environ["FAKE_CLAUDE_VERSION"] = version or ""
    try:
        return _exec_fake()
    finally:
        if saved is None:
            os.environ.pop("FAKE_CLAUDE_VERSION")
        else:
            os.environ["FAKE_CLAUDE_VERSION"] = saved


def _exec_fake() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fake_claude_under_test", FAKE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = load_fake_module()


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **extra}


def run_fake(tmp_path: Path, *args: str, stdin: str | None = "hi", script: Any = None,
             env: dict[str, str] | None = None, record: bool = False,
             timeout: float = 15) -> subprocess.CompletedProcess[str]:
    environ = base_env(tmp_path, **(env or {}))
    if script is not None:
        path = tmp_path / "script.json"
        path.write_text(json.dumps(script))
        environ["FAKE_CLAUDE_SCRIPT"] = str(path)
    if record:
        (tmp_path / "records").mkdir(exist_ok=True)
        environ["FAKE_CLAUDE_RECORD_DIR"] = str(tmp_path / "records")
    return subprocess.run([sys.executable, str(FAKE), *args], input=stdin, capture_output=True,
                          text=True, env=environ, cwd=tmp_path, timeout=timeout,
                          stdin=subprocess.DEVNULL if stdin is None else None)


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def records(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "records").glob("*.json"))]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


STREAM = ("-p", "--output-format", "stream-json", "--verbose")


@pytest.fixture
def leaked(tmp_path: Path) -> Iterator[list[int]]:
    """Pids of spawned grandchildren: always SIGKILLed at the end of the test."""
    pids: list[int] = []
    yield pids
    for folder in (tmp_path / "records",):
        for f in folder.glob("*.children") if folder.is_dir() else []:
            pids += [int(x) for x in f.read_text().split()]
    for pid in set(pids):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# the option table and commander-style parsing
# --------------------------------------------------------------------------------------------
def help_long_options(text: str) -> set[str]:
    """Every long option spelling in the Options section of a `claude --help`."""
    section = text.split("\nOptions:\n", 1)[1].split("\nCommands:\n", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        match = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if match:
            names.update(re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", match.group(1)))
    return names


def test_option_table_matches_the_help_copy() -> None:
    assert help_long_options(HELP_FILE.read_text()) == fake.long_options(hidden=False)
    assert fake.long_options(hidden=True) == {"--max-turns", "--permission-prompt-tool"}
    shorts = {s for o in fake.OPTIONS for s in o.spellings if not s.startswith("--")}
    assert shorts == {"-c", "-d", "-n", "-p", "-r", "-v", "-w"}


def test_option_arity_from_the_table() -> None:
    def arity(flag: str) -> str:
        o = fake.find_option(flag)
        return "variadic" if o.variadic else "required" if o.required else \
            "optional" if o.optional else "boolean"
    assert arity("--mcp-config") == arity("--allowed-tools") == "variadic"
    assert arity("--allowedTools") == "variadic"
    assert arity("--disallowedTools") == arity("--tools") == arity("--add-dir") == "variadic"
    assert arity("--model") == arity("--session-id") == arity("--max-turns") == "required"
    assert arity("-r") == arity("-d") == arity("-w") == arity("--from-pr") == "optional"
    assert arity("-p") == arity("--verbose") == arity("--strict-mcp-config") == "boolean"


@pytest.mark.parametrize(("argv", "expected", "operands"), [
    (["-p", "--model=sonnet", "--output-format=json"],
     {"print": True, "model": "sonnet", "output-format": "json"}, []),
    (["-p", "--mcp-config", "a.json", "b.json", "prompt"],
     {"print": True, "mcp-config": ["a.json", "b.json", "prompt"]}, []),
    (["-p", "--mcp-config", "a.json", "--verbose", "prompt"],
     {"print": True, "mcp-config": ["a.json"], "verbose": True}, ["prompt"]),
    (["-p", "--mcp-config=a.json", "prompt"],
     {"print": True, "mcp-config": ["a.json"]}, ["prompt"]),
    (["--allowedTools", "Read", "Bash(git *)", "--allowed-tools", "Edit", "-p"],
     {"allowed-tools": ["Read", "Bash(git *)", "Edit"], "print": True}, []),
    (["--disallowed-tools", "Write", "--disallowedTools=Bash", "-p"],
     {"disallowed-tools": ["Write", "Bash"], "print": True}, []),
    (["-p", "-r", "--verbose"], {"print": True, "resume": True, "verbose": True}, []),
    (["-pr", UUID], {"print": True, "resume": UUID}, []),
    (["-p", "-r" + UUID], {"print": True, "resume": UUID}, []),
    (["-pc", "-dapi,hooks", "-nName"], {"print": True, "continue": True, "debug": "api,hooks",
                                       "name": "Name"}, []),
    (["-p", "--model", "-x"], {"print": True, "model": "-x"}, []),
    (["-p", "--", "--not-an-option", "x"], {"print": True}, ["--not-an-option", "x"]),
    (["-p", "first", "second"], {"print": True}, ["first", "second"]),
    (["-p", "--max-turns", "3", "--prompt-suggestions"],
     {"print": True, "max-turns": "3", "prompt-suggestions": "true"}, []),
    (["-p", "--plugin-dir", "A", "--plugin-dir", "B"],
     {"print": True, "plugin-dir": ["A", "B"]}, []),
    (["-p", "--bg", "--no-chrome"], {"print": True, "background": True, "no-chrome": True}, []),
])
def test_parse_argv(argv: list[str], expected: dict[str, Any], operands: list[str]) -> None:
    assert fake.parse_argv(argv) == (expected, operands)


@pytest.mark.parametrize(("argv", "code", "stream", "text"), [
    (["-p", "--bogus"], 1, "stderr", "error: unknown option '--bogus'\n"),
    (["-p", "--verbos"], 1, "stderr",
     "error: unknown option '--verbos'\n(Did you mean --verbose?)\n"),
    (["-p", "--allowedTool"], 1, "stderr",
     "error: unknown option '--allowedTool'\n(Did you mean --allowed-tools?)\n"),
    (["-p", "--verbose=1"], 1, "stderr",
     "error: unknown option '--verbose=1'\n(Did you mean --verbose?)\n"),
    (["-p", "--max-turn"], 1, "stderr", "error: unknown option '--max-turn'\n"),  # hidden: no hint
    (["-p", "-x"], 1, "stderr", "error: unknown option '-x'\n"),
    (["-p=x"], 1, "stderr", "error: unknown option '-=x'\n"),
    (["-hp"], 1, "stderr", "error: unknown option '-hp'\n"),
    (["-p", "--output-format", "xml"], 1, "stderr",
     "error: option '--output-format <format>' argument 'xml' is invalid. "
     "Allowed choices are text, json, stream-json.\n"),
    (["-p", "--input-format=xml"], 1, "stderr",
     "error: option '--input-format <format>' argument 'xml' is invalid. "
     "Allowed choices are text, stream-json.\n"),
    (["-p", "--permission-mode", "manual"], 1, "stderr",
     "error: option '--permission-mode <mode>' argument 'manual' is invalid. "
     "Allowed choices are acceptEdits, auto, bypassPermissions, default, dontAsk, plan.\n"),
    (["-p", "--allowed-tools"], 1, "stderr",
     "error: option '--allowedTools, --allowed-tools <tools...>' argument missing\n"),
    (["-pn"], 1, "stderr", "error: option '-n, --name <name>' argument missing\n"),
    (["-p", "--max-turns"], 1, "stderr", "error: option '--max-turns <turns>' argument missing\n"),
    (["-p", "--max-budget-usd", "0"], 1, "stderr",
     "error: --max-budget-usd must be a positive number greater than 0\n"),
    (["-p", "--max-budget-usd=abc"], 1, "stderr",
     "error: --max-budget-usd must be a positive number greater than 0\n"),
    (["-p", "--bogus", "--version"], 0, "stdout", "2.1.197 (Claude Code)\n"),  # parse-time exit
    (["-pv"], 0, "stdout", "2.1.197 (Claude Code)\n"),
])
def test_parse_errors_and_early_exits(argv: list[str], code: int, stream: str, text: str) -> None:
    with pytest.raises(fake.Exit) as caught:
        fake.parse_argv(argv)
    assert caught.value.code == code
    assert getattr(caught.value, stream) == text


def test_version_and_help(tmp_path: Path) -> None:
    for flag in ("-v", "--version"):
        done = run_fake(tmp_path, flag)
        assert (done.returncode, done.stdout, done.stderr) == (0, "2.1.197 (Claude Code)\n", "")
    full = run_fake(tmp_path, "--bogus", "--help")  # help wins over unknown options
    assert (full.returncode, full.stdout, full.stderr) == (0, HELP_FILE.read_text(), "")
    short = run_fake(tmp_path, "-p", "-h")
    assert short.returncode == 0
    assert short.stdout.startswith("Usage: claude [options] [prompt]\n")  # no subcommands with -p
    assert "Commands:" not in short.stdout and "--max-budget-usd" in short.stdout


# --------------------------------------------------------------------------------------------
# validation: exit code, exact stderr, nothing on stdout
# --------------------------------------------------------------------------------------------
NO_INPUT = ("Error: Input must be provided either through stdin or as a prompt argument when using "
            "--print\n")


@pytest.mark.parametrize(("args", "stdin", "code", "stderr"), [
    ([], "hi", 2, "fake claude only supports --print (-p)\n"),
    (["mcp", "list"], "", 2, "fake claude only supports --print (subcommand 'mcp')\n"),
    (["-p", "--output-format", "stream-json"], "hi", 1,
     "Error: When using --print, --output-format=stream-json requires --verbose\n"),
    (["-p"], "", 1, NO_INPUT),
    (["-p", "--output-format", "stream-json"], "", 1, NO_INPUT),  # input is checked first
    (["-p", "--session-id", "not-a-uuid"], "hi", 1,
     "Error: Invalid session ID. Must be a valid UUID.\n"),
    (["-p", "--session-id", UUID, "--resume", UUID], "hi", 1,
     "Error: --session-id can only be used with --continue or --resume if --fork-session is also "
     "specified.\n"),
    (["-p", "--resume"], "hi", 1,
     "Error: --resume requires a valid session ID or session title when used with --print. "
     "Usage: claude -p --resume <session-id|title>\n"),
    (["-p", "--mcp-config", "/no/such.json"], "hi", 1,
     "Error: Invalid MCP configuration:\nMCP config file not found: /no/such.json\n"),
    (["-p", "--mcp-config", "{bad json"], "hi", 1,
     "Error: Invalid MCP configuration:\nMCP config file not found: {cwd}/{{bad json\n"),
    (["-p", "--mcp-config", "{}", "the prompt"], "", 1,  # variadic: the prompt is a config too
     "Error: Invalid MCP configuration:\nmcpServers: Invalid input: expected record, "
     "received undefined\n"),
    (["-p", "--mcp-config", "[1]"], "hi", 1,
     "Error: Invalid MCP configuration:\nInvalid input: expected object, received array\n"),
    (["-p", "--mcp-config", "bad.json"], "hi", 1,
     "Error: Invalid MCP configuration:\nMCP config is not a valid JSON\n"),
    (["-p", "--max-budget-usd", "-1"], "hi", 1,
     "error: --max-budget-usd must be a positive number greater than 0\n"),
    (["-p", "--max-turns", "0"], "hi", 1,
     "Error: fake claude: --max-turns must be a positive integer, got '0' (claude 2.1.197 itself "
     "accepts any value)\n"),
    (["-p", "--max-turns", "1.5"], "hi", 1,
     "Error: fake claude: --max-turns must be a positive integer, got '1.5' (claude 2.1.197 itself "
     "accepts any value)\n"),
    (["-p", "--agents", "[]"], "hi", 1,
     'Error: fake claude: invalid --agents (got a JSON array); expected a JSON object {"name": '
     '{"description": "...", "prompt": "..."}}\n'),
    (["-p", "--agents", '{"r": {"description": "d"}}'], "hi", 1,
     "Error: fake claude: invalid --agents (agent 'r' needs a string 'prompt'); expected a JSON "
     'object {"name": {"description": "...", "prompt": "..."}}\n'),
    (["-p", "--agent", "nosuch"], "", 1,  # checked before the missing input
     "--agent 'nosuch' not found. Available agents: claude, Explore, general-purpose, Plan, "
     "statusline-setup\n"),
    (["-p", "--input-format", "stream-json"], "hi", 1,
     "Error: --input-format=stream-json requires output-format=stream-json.\n"),
    (["-p", "--include-partial-messages"], "hi", 1,
     "Error: --include-partial-messages requires --print and --output-format=stream-json.\n"),
    (["-p", "--replay-user-messages"], "hi", 1,
     "Error: --replay-user-messages requires both --input-format=stream-json and "
     "--output-format=stream-json.\n"),
    (["-p", "--output-format", "json"], "  \n", 1, "Error: No messages returned from query\n"),
])
def test_validation_errors(tmp_path: Path, args: list[str], stdin: str, code: int,
                           stderr: str) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    done = run_fake(tmp_path, *args, stdin=stdin)
    assert done.returncode == code
    assert done.stderr == stderr.replace("{cwd}", str(tmp_path)).replace("{{", "{")
    assert done.stdout == ""


def test_root_may_not_bypass_permissions_outside_a_sandbox(tmp_path: Path) -> None:
    for flags in (["--dangerously-skip-permissions"], ["--permission-mode", "bypassPermissions"]):
        done = run_fake(tmp_path, *STREAM, *flags)
        if os.geteuid() == 0:
            assert done.returncode == 1 and done.stdout == ""
            assert done.stderr == ("--dangerously-skip-permissions cannot be used with root/sudo "
                                   "privileges for security reasons\n")
        sandboxed = run_fake(tmp_path, *STREAM, *flags, env={"IS_SANDBOX": "1"})
        assert sandboxed.returncode == 0
        assert events(sandboxed.stdout)[0]["permissionMode"] == "bypassPermissions"


def test_bad_resume_value_prints_a_result_in_stream_json(tmp_path: Path) -> None:
    done = run_fake(tmp_path, "-p", "--output-format", "stream-json", "--resume", "abc")
    message = ("Error: --resume requires a valid session ID or session title when used with "
               "--print. Usage: claude -p --resume <session-id|title>. Provided value \"abc\" is "
               "not a UUID and does not match any session title.")
    assert (done.returncode, done.stderr) == (1, message + "\n")
    (result,) = events(done.stdout)
    assert result["subtype"] == "error_during_execution" and result["errors"] == [message]


def test_whitespace_prompt_in_stream_json_prints_nothing(tmp_path: Path) -> None:
    done = run_fake(tmp_path, *STREAM, stdin=" \n\t")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_mcp_config_values_and_init_servers(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"mcpServers": {"one": {"command": "x"}}}))
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"project": {"command": "y"}}}))
    inline = json.dumps({"mcpServers": {"two": {"type": "http", "url": "http://h"}, "bad": 5}})
    done = run_fake(tmp_path, *STREAM, "--mcp-config", "one.json", inline)
    assert done.returncode == 0, done.stderr
    init = events(done.stdout)[0]
    assert init["mcp_servers"] == [{"name": "one", "status": "connected"},
                                   {"name": "two", "status": "connected"},
                                   {"name": "project", "status": "connected"}]  # .mcp.json too
    strict = run_fake(tmp_path, *STREAM, "--strict-mcp-config", "--mcp-config", inline)
    assert [s["name"] for s in events(strict.stdout)[0]["mcp_servers"]] == ["two"]


# --------------------------------------------------------------------------------------------
# prompt and stdin
# --------------------------------------------------------------------------------------------
def test_prompt_from_stdin_positional_or_both(tmp_path: Path) -> None:
    assert run_fake(tmp_path, "-p", stdin="from stdin\n").stdout == "Fake answer to: from stdin\n"
    assert run_fake(tmp_path, "-p", "from arg", stdin="").stdout == "Fake answer to: from arg\n"
    both = run_fake(tmp_path, "-p", "--output-format", "json", "ARG", stdin="STDIN", record=True)
    # 2.1.197 joins them as "<positional>\n<stdin>"
    assert json.loads(both.stdout)["result"] == "Fake answer to: ARG\nSTDIN"


def test_stdin_warning_when_the_pipe_stays_open(tmp_path: Path) -> None:
    env = base_env(tmp_path, FAKE_CLAUDE_STDIN_TIMEOUT="0.2")
    read_end, write_end = os.pipe()
    try:
        done = subprocess.run([sys.executable, str(FAKE), "-p"], stdin=read_end,
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=10)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == fake.STDIN_WARNING + NO_INPUT


def test_stream_json_input(tmp_path: Path) -> None:
    line = json.dumps({"type": "user", "message": {"role": "user", "content": "streamed"}})
    done = run_fake(tmp_path, *STREAM, "--input-format", "stream-json", stdin=line + "\n")
    assert events(done.stdout)[-1]["result"] == "Fake answer to: streamed"


# --------------------------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------------------------
def test_recording(tmp_path: Path) -> None:
    done = run_fake(tmp_path, "-p", "--model", "haiku", stdin="the prompt", record=True,
                    env={"MARKER": "1"})
    assert done.returncode == 0
    (rec,) = records(tmp_path)
    assert rec["argv"] == ["-p", "--model", "haiku"]
    assert rec["stdin"] == "the prompt"
    assert rec["env"]["MARKER"] == "1" and rec["env"]["FAKE_CLAUDE_RECORD_DIR"]
    assert rec["cwd"] == str(tmp_path)
    assert rec["pid"] > 0 and rec["pgid"] == os.getpgid(0)  # it inherits our process group
    assert not list((tmp_path / "records").glob(".*"))  # no temporary file left


def test_failed_invocations_are_recorded_too(tmp_path: Path) -> None:
    run_fake(tmp_path, "-p", "--bogus", record=True)  # fails before reading stdin
    run_fake(tmp_path, "-p", "--agent", "nosuch", stdin="read first", record=True)
    by_argv = {tuple(r["argv"]): r for r in records(tmp_path)}
    assert by_argv[("-p", "--bogus")]["stdin"] is None
    assert by_argv[("-p", "--agent", "nosuch")]["stdin"] == "read first"


# --------------------------------------------------------------------------------------------
# scripts and steps
# --------------------------------------------------------------------------------------------
def test_default_run_without_a_script(tmp_path: Path) -> None:
    done = run_fake(tmp_path, *STREAM, stdin="x" * 300)
    init, answer, result = events(done.stdout)
    assert (init["type"], init["subtype"], answer["type"], result["type"]) == \
        ("system", "init", "assistant", "result")
    text = "Fake answer to: " + "x" * 200
    assert answer["message"]["content"] == [{"type": "text", "text": text}]
    assert result["result"] == "Fake answer to: " + "x" * 200
    assert len({init["session_id"], answer["session_id"], result["session_id"]}) == 1


def test_script_selection_by_first_prompt_line(tmp_path: Path) -> None:
    script = {"alpha": [{"text": "A"}, {"result": {}}],
              "default": [{"text": "D"}, {"result": {}}]}
    assert run_fake(tmp_path, "-p", stdin="  alpha  \nmore lines", script=script).stdout == "A\n"
    assert run_fake(tmp_path, "-p", stdin="more lines\nalpha", script=script).stdout == "D\n"
    no_default = run_fake(tmp_path, "-p", stdin="beta", script={"alpha": []})
    assert no_default.returncode == 3 and "no 'default'" in no_default.stderr
    bad = run_fake(tmp_path, "-p", script=[{"txt": "typo"}])
    assert bad.returncode == 3 and "bad step" in bad.stderr


def test_init_event(tmp_path: Path) -> None:
    done = run_fake(tmp_path, *STREAM, "--session-id", UUID, "--permission-mode", "plan",
                    "--model", "sonnet", script=[{"init": {"tools": ["Read"], "extra": 1}}],
                    env={"ANTHROPIC_API_KEY": "sk-test"})
    (init,) = events(done.stdout)
    assert init["session_id"] == UUID and init["cwd"] == str(tmp_path)
    assert init["permissionMode"] == "plan" and init["model"] == "claude-sonnet-5"
    assert init["tools"] == ["Read"] and init["extra"] == 1  # overrides merged
    assert init["claude_code_version"] == "2.1.197" and init["apiKeySource"] == "ANTHROPIC_API_KEY"
    for key in ("mcp_servers", "agents", "skills", "slash_commands", "plugins", "uuid"):
        assert key in init


def test_text_tool_use_and_tool_result(tmp_path: Path) -> None:
    script = [{"init": {}}, {"text": "Let me look."},
              {"tool_use": {"name": "mcp__demo__echo", "input": {"text": "ping"}}},
              {"tool_result": {"content": "echo: ping"}},
              {"tool_use": {"name": "Write", "input": {}, "id": "toolu_mine"}},
              {"tool_result": {"content": "denied", "is_error": True}},
              {"text": "Final "}, {"text": "answer."}, {"result": {}}]
    done = run_fake(tmp_path, *STREAM, script=script)
    assert done.returncode == 0
    init, text1, use1, res1, use2, res2, text2, text3, result = events(done.stdout)
    assert text1["message"]["id"] == use1["message"]["id"] != use2["message"]["id"]
    assert text2["message"]["id"] == text3["message"]["id"] != use2["message"]["id"]
    block = use1["message"]["content"][0]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert block["name"] == "mcp__demo__echo" and block["input"] == {"text": "ping"}
    assert res1["type"] == "user" and res1["message"]["content"] == [
        {"tool_use_id": block["id"], "type": "tool_result", "content": "echo: ping"}]
    assert res2["message"]["content"][0] == {"tool_use_id": "toolu_mine", "type": "tool_result",
                                             "content": "denied", "is_error": True}
    for event in (text1, use1, res1):
        assert event["parent_tool_use_id"] is None and event["session_id"] == init["session_id"]
        assert event["uuid"]
    assert text1["message"]["model"] == "claude-opus-4-8" and "usage" in text1["message"]
    assert result["result"] == "Final answer." and result["num_turns"] == 3


def test_result_event_and_overrides(tmp_path: Path) -> None:
    done = run_fake(tmp_path, *STREAM, script=[{"text": "ok"}, {"result": {"total_cost_usd": 0.5}}])
    result = events(done.stdout)[-1]
    assert (result["subtype"], result["is_error"], result["result"]) == ("success", False, "ok")
    assert result["total_cost_usd"] == 0.5 and result["stop_reason"] == "end_turn"
    assert set(result["usage"]) >= {"input_tokens", "output_tokens",
                                    "cache_creation_input_tokens", "cache_read_input_tokens"}
    assert result["modelUsage"]["claude-opus-4-8[1m]"]["costUSD"] == 0.5
    assert result["permission_denials"] == [] and result["terminal_reason"] == "completed"
    for key in ("duration_ms", "duration_api_ms", "num_turns", "uuid", "session_id"):
        assert key in result
    assert done.returncode == 0
    failed = run_fake(tmp_path, *STREAM, script=[{"result": {"is_error": True, "result": "boom"}}])
    assert failed.returncode == 1 and events(failed.stdout)[-1]["is_error"] is True
    zero = run_fake(tmp_path, *STREAM, script=[{"result": {"is_error": True}, "exit": 0}])
    assert zero.returncode == 0
    default = run_fake(tmp_path, *STREAM, script=[{"result": {}}])
    assert events(default.stdout)[-1]["total_cost_usd"] == 0.0123


def test_output_formats(tmp_path: Path) -> None:
    script = [{"init": {}}, {"text": "The answer."}, {"result": {}}]
    as_json = run_fake(tmp_path, "-p", "--output-format", "json", script=script)
    assert json.loads(as_json.stdout)["result"] == "The answer." and as_json.stdout.count("\n") == 1
    verbose = json.loads(run_fake(tmp_path, "-p", "--output-format", "json", "--verbose",
                                  script=script).stdout)
    assert [e["type"] for e in verbose] == ["system", "assistant", "result"]  # 2.1.197: an array
    assert run_fake(tmp_path, "-p", script=script).stdout == "The answer.\n"


def test_raw_stderr_sleep_and_exit_steps(tmp_path: Path) -> None:
    script = [{"raw": "not json {"}, {"stderr": "a warning"}, {"sleep": 0.05}, {"exit": 7},
              {"text": "never"}]
    done = run_fake(tmp_path, *STREAM, script=script)
    assert (done.returncode, done.stdout, done.stderr) == (7, "not json {\n", "a warning\n")
    no_result = run_fake(tmp_path, *STREAM, script=[{"init": {}}, {"text": "cut"}])
    assert no_result.returncode == 0 and [e["type"] for e in events(no_result.stdout)] == \
        ["system", "assistant"]


def test_crash_step(tmp_path: Path) -> None:
    done = run_fake(tmp_path, *STREAM, script=[{"init": {}}, {"crash": "SIGSEGV"}])
    assert done.returncode == -signal.SIGSEGV
    assert [e["type"] for e in events(done.stdout)] == ["system"]
    assert run_fake(tmp_path, "-p", script=[{"crash": "KILL"}]).returncode == -signal.SIGKILL


def test_write_step_writes_under_the_cwd_as_the_write_tool_would(tmp_path: Path) -> None:
    script = [{"init": {}}, {"tool_use": {"name": "Write", "input": {"file_path": "notes/a.md"}}},
              {"write": {"path": "notes/a.md", "content": "written"}},
              {"tool_result": {"content": "File created"}}, {"text": "Done."}, {"result": {}}]
    done = run_fake(tmp_path, *STREAM, script=script)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "notes" / "a.md").read_text() == "written"
    assert [e["type"] for e in events(done.stdout)] == \
        ["system", "assistant", "user", "assistant", "result"]
    for bad in ({"path": "/etc/x", "content": ""}, {"path": "../x", "content": ""},
                {"path": "x"}):
        refused = run_fake(tmp_path, *STREAM, script=[{"write": bad}])
        assert refused.returncode == 3 and "write needs a relative path" in refused.stderr


def test_json_schema_is_accepted_and_structured_output_is_scripted(tmp_path: Path) -> None:
    schema = '{"type":"object","properties":{"n":{"type":"number"}},"required":["n"]}'
    script = [{"init": {}}, {"tool_use": {"name": "StructuredOutput", "input": {"n": 1}}},
              {"tool_result": {"content": "Structured output provided successfully"}},
              {"result": {"structured_output": {"n": 1}, "result": '{"n":1}'}}]
    done = run_fake(tmp_path, *STREAM, f"--json-schema={schema}", script=script)
    assert done.returncode == 0, done.stderr
    result = events(done.stdout)[-1]
    assert (result["structured_output"], result["result"]) == ({"n": 1}, '{"n":1}')


def test_session_ids(tmp_path: Path) -> None:
    other = "11111111-2222-4333-8444-555555555555"
    for args, expected in ((["--resume", UUID], UUID), (["-r", UUID], UUID),
                           (["--session-id", UUID], UUID),
                           (["--resume", UUID, "--fork-session", "--session-id", other], other)):
        ids = {e["session_id"] for e in events(run_fake(tmp_path, *STREAM, *args).stdout)}
        assert ids == {expected}
    fresh = events(run_fake(tmp_path, *STREAM).stdout)[0]["session_id"]
    assert fake.UUID_RE.match(fresh) and fresh != UUID


def test_budget_overrun(tmp_path: Path) -> None:
    script = [{"init": {}}, {"text": "An expensive answer."}, {"result": {"total_cost_usd": 1.125}}]
    done = run_fake(tmp_path, *STREAM, "--max-budget-usd", "0.0001", script=script)
    assert done.returncode == 1
    result = events(done.stdout)[-1]
    assert result["subtype"] == "error_max_budget_usd" and result["is_error"] is True
    assert result["errors"] == ["Reached maximum budget ($0.0001)"]
    assert result["total_cost_usd"] == 1.125 and "result" not in result
    assert "terminal_reason" not in result  # as 2.1.197 prints it
    text = run_fake(tmp_path, "-p", "--max-budget-usd", "0.0001", script=script)
    assert (text.returncode, text.stdout) == (1, "Error: Exceeded USD budget (0.0001)")
    within = run_fake(tmp_path, *STREAM, "--max-budget-usd", "2", script=script)
    assert within.returncode == 0 and events(within.stdout)[-1]["subtype"] == "success"


def test_max_turns(tmp_path: Path) -> None:
    script = [{"init": {}}, {"tool_use": {"name": "Read", "input": {}}},
              {"tool_result": {"content": "x"}}, {"text": "never"}, {"result": {}}]
    done = run_fake(tmp_path, *STREAM, "--max-turns", "1", script=script)
    assert done.returncode == 1
    result = events(done.stdout)[-1]
    assert (result["subtype"], result["num_turns"], result["terminal_reason"]) == \
        ("error_max_turns", 2, "max_turns")
    assert result["errors"] == ["Reached maximum number of turns (1)"]
    assert "never" not in done.stdout
    assert run_fake(tmp_path, *STREAM, "--max-turns", "2", script=script).returncode == 0


def test_agents_inline_and_from_files(tmp_path: Path) -> None:
    agents = json.dumps({"reviewer": {"description": "Reviews", "prompt": "Be strict.",
                                      "tools": ["Read", "Grep"], "model": "haiku"}})
    done = run_fake(tmp_path, *STREAM, "--agents", agents, "--agent", "reviewer")
    init = events(done.stdout)[0]
    assert init["agents"] == ["claude", "Explore", "general-purpose", "Plan", "reviewer",
                              "statusline-setup"]
    assert init["tools"] == ["Read", "Grep"] and init["model"] == "claude-haiku-4-5-20251001"
    overridden = run_fake(tmp_path, *STREAM, "--agents", agents, "--agent", "reviewer",
                          "--model", "sonnet")
    assert events(overridden.stdout)[0]["model"] == "claude-sonnet-5"
    project = tmp_path / ".claude" / "agents"
    project.mkdir(parents=True)
    (project / "file.md").write_text("---\nname: from-file\ndescription: d\n---\nBody\n")
    (project / "nodesc.md").write_text("---\nname: nodesc\n---\nBody\n")
    user = tmp_path / "home" / ".claude" / "agents"
    user.mkdir(parents=True)
    (user / "u.md").write_text("---\nname: 'user-agent'\ndescription: d\nmodel: opus\n---\nB\n")
    assert run_fake(tmp_path, *STREAM, "--agent", "from-file").returncode == 0
    assert run_fake(tmp_path, *STREAM, "--agent", "user-agent").returncode == 0
    missing = run_fake(tmp_path, *STREAM, "--agent", "nodesc")
    assert missing.stderr == ("--agent 'nodesc' not found. Available agents: claude, Explore, "
                              "from-file, general-purpose, Plan, statusline-setup, user-agent\n")


def test_skills_in_init(tmp_path: Path) -> None:
    folder = tmp_path / ".claude" / "skills"
    for name, description in (("demo", "description: d\n"), ("hidden", "")):
        (folder / name).mkdir(parents=True)
        (folder / name / "SKILL.md").write_text(f"---\nname: other\n{description}---\nBody\n")
    init = events(run_fake(tmp_path, *STREAM).stdout)[0]
    assert init["skills"][0] == "demo" and "hidden" not in init["skills"]  # named by folder
    assert init["slash_commands"][:2] == ["demo", "hidden"]


# --------------------------------------------------------------------------------------------
# signals, hangs, spawned grandchildren
# --------------------------------------------------------------------------------------------
class Lines:
    """Lines of a child's pipe, read with a timeout (no hidden buffer, unlike readline)."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.buffer = b""

    def line(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.fd], [], [], left)[0], "no line in time"
            chunk = os.read(self.fd, 65536)
            assert chunk, f"EOF before a full line: {self.buffer!r}"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode() + "\n"

    def rest(self) -> str:
        """Everything up to EOF (call once the child has exited)."""
        while chunk := os.read(self.fd, 65536):
            self.buffer += chunk
        rest, self.buffer = self.buffer, b""
        return rest.decode()


@contextlib.contextmanager
def started(tmp_path: Path, script: Any, *args: str
            ) -> Iterator[tuple[subprocess.Popen[bytes], Lines, Lines]]:
    """The fake running `script` with stdin "go"; SIGKILLed if still running at the end."""
    (tmp_path / "records").mkdir(exist_ok=True)
    (tmp_path / "script.json").write_text(json.dumps(script))
    env = base_env(tmp_path, FAKE_CLAUDE_SCRIPT=str(tmp_path / "script.json"),
                   FAKE_CLAUDE_RECORD_DIR=str(tmp_path / "records"))
    proc = subprocess.Popen([sys.executable, str(FAKE), *(args or STREAM)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert proc.stdin and proc.stdout and proc.stderr
        proc.stdin.write(b"go")
        proc.stdin.close()
        yield proc, Lines(proc.stdout), Lines(proc.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_sigterm_exits_143_without_result_and_leaves_the_grandchild(
        tmp_path: Path, leaked: list[int]) -> None:
    script = [{"init": {}}, {"spawn": "sleeper"}, {"text": "partial"}, {"hang": True}]
    with started(tmp_path, script) as (proc, out, _):
        assert json.loads(out.line())["type"] == "system"
        assert json.loads(out.line())["type"] == "assistant"  # the spawn happened before
        children = tmp_path / "records" / f"{proc.pid}.children"
        (grandchild,) = [int(x) for x in children.read_text().split()]
        leaked.append(grandchild)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        assert out.rest() == ""  # no result event
    assert pid_alive(grandchild)  # a leaked "MCP server": the caller must kill the group
    assert os.getpgid(grandchild) == records(tmp_path)[0]["pgid"]


def test_a_setsid_sleeper_leaves_the_group_and_outlives_sigterm(
        tmp_path: Path, leaked: list[int]) -> None:
    script = [{"init": {}}, {"spawn": "setsid_sleeper"}, {"text": "partial"}, {"hang": True}]
    with started(tmp_path, script) as (proc, out, _):
        assert json.loads(out.line())["type"] == "system"
        assert json.loads(out.line())["type"] == "assistant"  # the spawn happened before
        children = tmp_path / "records" / f"{proc.pid}.children"
        (grandchild,) = [int(x) for x in children.read_text().split()]
        leaked.append(grandchild)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        os.kill(grandchild, signal.SIGTERM)
        assert pid_alive(grandchild)  # it ignores SIGTERM: only SIGKILL ends it
    assert os.getsid(grandchild) == grandchild != records(tmp_path)[0]["sid"]
    assert os.getpgid(grandchild) == grandchild


def test_sigint_emits_an_interrupted_result_and_exits_0(tmp_path: Path) -> None:
    with started(tmp_path, [{"init": {}}, {"text": "partial"}, {"hang": True}]) as (proc, out, _):
        out.line()
        out.line()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        interrupted, result = events(out.rest())
    assert interrupted["type"] == "user"
    assert interrupted["message"]["content"] == [{"type": "text",
                                                  "text": "[Request interrupted by user]"}]
    assert (result["subtype"], result["is_error"], result["terminal_reason"]) == \
        ("error_during_execution", True, "aborted_streaming")


def test_sigint_right_after_an_event_is_never_lost(tmp_path: Path) -> None:
    """The signal may land while the fake still flushes the line just read: handled after it."""
    script = [{"init": {}}, *[{"text": f"t{i}"} for i in range(200)], {"hang": True}]
    with started(tmp_path, script) as (proc, out, err):
        out.line()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, err.rest()
        lines = events(out.rest())
    assert lines[-1]["subtype"] == "error_during_execution"
    assert [e["type"] for e in lines[-2:]] == ["user", "result"]


def test_sigint_in_text_mode(tmp_path: Path) -> None:
    with started(tmp_path, [{"stderr": "started"}, {"hang": True}], "-p") as (proc, out, err):
        assert err.line() == "started\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert out.rest() == "Execution error"


def signal_set(pid: int, field: str, signum: int) -> bool:
    """True when ``signum`` is in the ``field`` mask (SigCgt: caught, SigIgn: ignored) of
    process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s*([0-9a-f]+)", status, re.M)
    assert match
    return bool(int(match.group(1), 16) >> (signum - 1) & 1)


def catches(pid: int, signum: int) -> bool:
    """True once process ``pid`` has a handler for ``signum``."""
    return signal_set(pid, "SigCgt", signum)


def wait_until(check: Any, within: float = 10) -> None:
    """Poll ``check`` (another process's state: nothing announces it) for up to ``within`` s."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not true within {within}s: {check}"
        time.sleep(0.01)


def test_sigint_before_the_run_is_ignored(tmp_path: Path) -> None:
    env = base_env(tmp_path, FAKE_CLAUDE_STDIN_TIMEOUT="10")
    with subprocess.Popen([sys.executable, str(FAKE), "-p", "arg"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          cwd=tmp_path) as proc:
        wait_until(lambda: catches(proc.pid, signal.SIGTERM))  # installed after SIGINT's
        proc.send_signal(signal.SIGINT)  # while it waits for stdin (closed by communicate)
        out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, b"Fake answer to: arg\n", b"")


def test_hang_ignoring_sigterm_needs_sigkill(tmp_path: Path) -> None:
    with started(tmp_path, [{"init": {}}, {"hang": "ignore_term"}]) as (proc, out, _):
        out.line()
        # The init line comes before the hang step: a signal sent before that step has
        # set SIG_IGN reaches the handler that exits 143.
        wait_until(lambda: all(signal_set(proc.pid, "SigIgn", s)
                               for s in (signal.SIGTERM, signal.SIGINT)))
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.3)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL


# --------------------------------------------------------------------------------------------
# several turns in one process (stream-json input), as tests/real_cli/test_live_turns.py
# checks them on the real CLI
# --------------------------------------------------------------------------------------------
LIVE = (*STREAM, "--input-format", "stream-json", "--permission-prompt-tool", "stdio")


@contextlib.contextmanager
def live(tmp_path: Path, script: Any, *args: str,
         version: str | None = None) -> Iterator[LiveChild]:
    """The fake in stream-json input mode, initialized, no user message sent yet."""
    (tmp_path / "records").mkdir(exist_ok=True)
    (tmp_path / "script.json").write_text(json.dumps(script))
    env = base_env(tmp_path, FAKE_CLAUDE_SCRIPT=str(tmp_path / "script.json"),
                   FAKE_CLAUDE_RECORD_DIR=str(tmp_path / "records"),
                   FAKE_CLAUDE_VERSION=version or "")
    proc = subprocess.Popen([sys.executable, str(FAKE), *LIVE, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            cwd=tmp_path)
    try:
        session = LiveChild(proc, timeout_s=10)
        session.send(INITIALIZE)
        assert session.until("control_response")[-1]["response"]["request_id"] == "init-1"
        yield session
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


TWO_TURNS = {"first question": [{"init": {}}, {"text": "answer one"},
                                {"result": {}, "turn_cost_usd": 0.01}],
             "second question": [{"init": {}}, {"text": "answer two"},
                                 {"result": {}, "turn_cost_usd": 0.03}]}


def test_a_second_user_message_is_a_second_turn_of_the_same_session(tmp_path: Path) -> None:
    with live(tmp_path, TWO_TURNS) as session:
        first = session.turn("first question")
        second = session.turn("second question")
        assert session.close() == 0
    assert event_kinds(first) == event_kinds(second) == ["system/init", "assistant", "result"]
    one, two = first[-1], second[-1]
    assert (one["result"], two["result"]) == ("answer one", "answer two")
    assert len({e["session_id"] for e in first + second}) == 1
    assert first[0]["uuid"] != second[0]["uuid"]
    (rec,) = records(tmp_path)
    assert rec["prompts"] == ["first question", "second question"]


def test_cost_model_usage_and_api_time_add_up_while_the_rest_is_per_turn(
        tmp_path: Path) -> None:
    script = {**TWO_TURNS, "second question": [{"init": {}}, {"tool_use": {"name": "Read"}},
                                               {"tool_result": {"content": "x"}},
                                               {"text": "answer two"},
                                               {"result": {}, "turn_cost_usd": 0.03}]}
    with live(tmp_path, script) as session:
        one = session.turn("first question")[-1]
        two = session.turn("second question")[-1]
        session.close()
    assert (one["total_cost_usd"], two["total_cost_usd"]) == (0.01, pytest.approx(0.04))
    assert (one["num_turns"], two["num_turns"]) == (1, 2)
    assert (one["usage"]["input_tokens"], two["usage"]["input_tokens"]) == (100, 200)
    [(model, totals)] = two["modelUsage"].items()
    assert model == "claude-opus-4-8[1m]"
    assert (totals["inputTokens"], totals["costUSD"]) == (300, pytest.approx(0.04))
    assert two["duration_api_ms"] >= one["duration_api_ms"]


@pytest.mark.parametrize("script", [{"default": [{"text": "D"}, {"result": {}}]},
                                    [{"text": "D"}, {"result": {}}]])
def test_a_follow_up_without_its_own_key_plays_the_default_or_the_list(
        tmp_path: Path, script: Any) -> None:
    with live(tmp_path, script) as session:
        assert [session.turn(p)[-1]["result"] for p in ("one", "two")] == ["D", "D"]
        assert session.close() == 0


def test_a_turn_with_an_empty_script_prints_nothing(tmp_path: Path) -> None:
    script = {"default": [{"init": {}}, {"text": "answer"}, {"result": {}}], "silent": []}
    with live(tmp_path, script) as session:
        session.send(user_message("silent"))
        assert event_kinds(session.turn("next")) == ["system/init", "assistant", "result"]
        assert session.close() == 0
    assert records(tmp_path)[0]["prompts"] == ["silent", "next"]


def test_a_message_sent_during_a_turn_is_answered_after_its_result(tmp_path: Path) -> None:
    release = tmp_path / "release"
    script = {"first question": [{"init": {}}, {"text": "working"}, {"until": str(release)},
                                 {"result": {}}],
              "second question": [{"init": {}}, {"text": "answer two"}, {"result": {}}]}
    with live(tmp_path, script) as session:
        session.send(user_message("first question"))
        assert event_kinds(session.until("assistant")) == ["system/init", "assistant"]
        session.send(user_message("second question"))
        release.touch()
        first = session.until("result")
        second = session.until("result")
        session.close()
    assert (first[-1]["result"], second[-1]["result"]) == ("working", "answer two")
    assert event_kinds(second) == ["system/init", "assistant", "result"]


def test_a_message_sent_while_a_permission_is_asked_is_not_lost(tmp_path: Path) -> None:
    script = {"first question": [{"init": {}}, {"tool_use": {"name": "Bash", "input": {}}},
                                 {"tool_result": {"content": "ran"}}, {"text": "one"},
                                 {"result": {}}],
              "second question": [{"init": {}}, {"text": "two"}, {"result": {}}]}
    with live(tmp_path, script) as session:
        session.send(user_message("first question"))
        asked = session.until("control_request")[-1]
        session.send(user_message("second question"), {
            "type": "control_response", "response": {
                "subtype": "success", "request_id": asked["request_id"],
                "response": {"behavior": "deny", "message": "no"}}})
        first = session.until("result")[-1]
        second = session.until("result")[-1]
        session.close()
    assert (first["result"], second["result"]) == ("one", "two")
    assert [d["tool_name"] for d in first["permission_denials"]] == ["Bash"]
    assert second["permission_denials"] == []  # per turn


def test_the_budget_caps_the_process_and_later_messages_get_the_error_at_once(
        tmp_path: Path) -> None:
    with live(tmp_path, {**TWO_TURNS, "third": [{"text": "never"}, {"result": {}}]},
              "--max-budget-usd", "0.035") as session:
        one = session.turn("first question")
        two = session.turn("second question")
        three = session.turn("third")
        assert session.close() == 1
    assert one[-1]["subtype"] == "success"
    over = two[-1]
    assert (over["subtype"], over["is_error"], over["total_cost_usd"]) == \
        ("error_max_budget_usd", True, pytest.approx(0.04))
    assert over["errors"] == ["Reached maximum budget ($0.035)"]
    assert over["stop_reason"] == "end_turn" and over["usage"]["input_tokens"] == 0
    assert event_kinds(three) == ["system/init", "result"]  # the model is not asked again
    assert (three[-1]["subtype"], three[-1]["stop_reason"]) == ("error_max_budget_usd", None)
    assert three[-1]["total_cost_usd"] == over["total_cost_usd"]


def test_max_turns_counts_each_message_afresh_and_the_last_result_sets_the_exit_code(
        tmp_path: Path) -> None:
    looping = [{"init": {}}, {"tool_use": {"name": "Read"}}, {"tool_result": {"content": "x"}},
               {"text": "never"}, {"result": {}}]
    script = {"loop": looping, "short": [{"init": {}}, {"text": "ok"}, {"result": {}}]}
    with live(tmp_path, script, "--max-turns", "1") as session:
        assert session.turn("loop")[-1]["subtype"] == "error_max_turns"
        assert session.turn("short")[-1]["subtype"] == "success"
        assert session.close() == 0
    with live(tmp_path, script, "--max-turns", "1") as session:
        assert session.turn("short")[-1]["subtype"] == "success"
        assert session.turn("loop")[-1]["subtype"] == "error_max_turns"
        assert session.close() == 1


@pytest.mark.parametrize("version", fake.VERSIONS)
def test_closing_stdin_before_any_message_prints_nothing_and_exits_0(
        tmp_path: Path, version: str) -> None:
    with live(tmp_path, [{"text": "never"}], version=version) as session:
        assert session.close() == 0
    assert records(tmp_path)[0]["prompts"] == []


# --------------------------------------------------------------------------------------------
# the real CLI, where no model is needed
# --------------------------------------------------------------------------------------------
def real_claude(version: str) -> Path:
    from tests.real_cli.support import real_claude_path

    return real_claude_path(version)


def real_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "real-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"), "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}  # and no API key


def first_error_line(stderr: str) -> str:
    """The first line of stderr; for a thrown error (a stack trace), its `error:` line."""
    lines = stderr.splitlines()
    if any(line.lstrip().startswith("at ") for line in lines):
        lines = [line for line in lines if line.startswith("error:")]
    return lines[0] if lines else ""


# (args, stdin) that fail in every tested version, and those that fail in one only.
BAD_INVOCATIONS: list[tuple[list[str], str]] = [
    (["-p", "--bogus-flag"], "hi"),
    (["-p", "--verbos"], "hi"),
    (["-p", "--output-format", "xml"], "hi"),
    (["-p", "--input-format=xml"], "hi"),
    (["-p", "--permission-mode", "bogus"], "hi"),
    (["-p", "--model"], "hi"),
    (["-p", "--output-format", "stream-json"], "hi"),
    (["-p", "--mcp-config", "missing.json"], "hi"),
    (["-p", "--mcp-config", "{not json"], "hi"),
    (["-p", "--mcp-config", '{"mcpServers": {}}', "prompt swallowed"], "hi"),
    (["-p", "--mcp-config", "[]"], "hi"),
    (["-p"], ""),
    (["-p", "--session-id", "nope"], "hi"),
    (["-p", "--max-budget-usd", "0"], "hi"),
    (["-p", "--agent", "nosuch"], "hi"),
    (["-p", "--resume", "abc"], "hi"),
    (["-p", "--include-partial-messages"], "hi"),
    (["-p", "--output-format", "json"], " \n"),
]
BAD_IN_ONE_VERSION: dict[str, list[tuple[list[str], str]]] = {
    "2.1.197": [(["-p", "--permission-mode", "manual"], "hi")],  # 2.1.332 offers "manual"
    "2.1.332": [],
}


@pytest.mark.real_cli
@pytest.mark.parametrize("version", list(BAD_IN_ONE_VERSION))
class TestAgainstRealCli:
    @pytest.fixture
    def claude(self, version: str) -> Path:
        path = real_claude(version)
        if not path.exists():
            pytest.skip(f"the real claude CLI {version} is not installed at {path}: run .ci/run")
        return path

    def run_real(self, claude: Path, tmp_path: Path, *args: str,
                 stdin: str = "hi") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(claude), *args], input=stdin, capture_output=True, text=True,
                              env=real_env(tmp_path), cwd=tmp_path, timeout=30)

    def test_version_and_help_text(self, claude: Path, tmp_path: Path, version: str) -> None:
        as_version = {"FAKE_CLAUDE_VERSION": version}
        real_version = self.run_real(claude, tmp_path, "--version")
        assert real_version.stdout == f"{version} (Claude Code)\n"
        assert run_fake(tmp_path, "--version", env=as_version).stdout == real_version.stdout
        help_file = FAKES / f"claude-{version}-help.txt"
        assert self.run_real(claude, tmp_path, "--help").stdout == help_file.read_text()
        assert self.run_real(claude, tmp_path, "-p", "--help").stdout == \
            run_fake(tmp_path, "-p", "--help", env=as_version).stdout

    def test_long_options_match_the_fake_table(self, claude: Path, tmp_path: Path,
                                               version: str) -> None:
        table = load_fake_module(version)
        real = help_long_options(self.run_real(claude, tmp_path, "--help").stdout)
        assert real == table.long_options(hidden=False)
        every = table.long_options(hidden=False) | table.long_options(hidden=True)
        assert real | {"--max-turns", "--permission-prompt-tool"} == every
        hidden = self.run_real(claude, tmp_path, "-p", "--max-turns")  # hidden yet known
        assert hidden.stderr == "error: option '--max-turns <turns>' argument missing\n"

    @pytest.mark.parametrize(("args", "stdin"), [
        *BAD_INVOCATIONS, *(case for cases in BAD_IN_ONE_VERSION.values() for case in cases)])
    def test_bad_invocations_fail_alike(self, claude: Path, tmp_path: Path, args: list[str],
                                        stdin: str, version: str) -> None:
        if (args, stdin) not in BAD_INVOCATIONS + BAD_IN_ONE_VERSION[version]:
            pytest.skip(f"a valid invocation for claude {version}")
        real = self.run_real(claude, tmp_path, *args, stdin=stdin)
        faked = run_fake(tmp_path, *args, stdin=stdin, env={"FAKE_CLAUDE_VERSION": version})
        assert faked.returncode == real.returncode != 0
        assert first_error_line(faked.stderr) == first_error_line(real.stderr)
        assert faked.stderr.splitlines()[1:2] == real.stderr.splitlines()[1:2] or \
            "at <anonymous>" in real.stderr
        assert faked.stdout == real.stdout == ""


def test_the_fake_tables_of_both_versions_differ_as_their_help_texts_do() -> None:
    old, new = (load_fake_module(v).long_options(hidden=False) for v in BAD_IN_ONE_VERSION)
    assert new - old == {"--autocompact", "--cloud", "--desktop", "--environment",
                         "--forward-subagent-text", "--permission-prompts", "--restricted",
                         "--system-prompt-snapshot", "--teleport"}
    assert old <= new
