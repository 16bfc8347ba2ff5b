"""A strict fake of the `claude` CLI 2.1.197 in print mode (`claude -p`), for tests. Stdlib only.

``FAKE_CLAUDE_VERSION=2.1.332`` makes it the latest tested release instead: its option table
(nine more options, ``manual`` among the permission modes, ``--agents <json-or-file>``), its
help text, its error wording and its init event (``source`` in each ``mcp_servers`` entry).
Everything else below was checked on 2.1.197.

Launching it
------------
Run it as ``python fake_claude.py ARGS...``. Code under test looks for an executable named
``claude``; the test fixture writes one next to a temp dir and puts it first (or passes its path):

    #!/bin/sh
    exec "<sys.executable>" "<repo>/tests/fakes/fake_claude.py" "$@"

Environment variables
---------------------
``FAKE_CLAUDE_SCRIPT``       path of a JSON file: a list of steps, or an object mapping keys to step
                             lists (key = first line of the prompt, stripped, when it is a key,
                             else ``"default"``). Each turn (each user message of stream-json
                             input) picks its steps this way; a list is every turn's script.
                             Unset: one default success run per turn.
``FAKE_CLAUDE_RECORD_DIR``   if set, every invocation writes ``<dir>/<pid>.json`` (atomically):
                             ``{"argv": [args after the program], "env": {...}, "stdin": str|null,
                             "prompt": the user messages of stream-json stdin (else stdin),
                             "prompts": [the prompt of each turn so far], "cwd", "pid", "pgid",
                             "ppid", "sid", "monotonic": when it was written, on
                             CLOCK_MONOTONIC}``; ``stdin`` (what was read up to the first turn) is
                             null when the run failed (or printed help/version) before reading
                             stdin. The file is rewritten when a turn starts. ``spawn`` steps
                             append the grandchild pid to ``<dir>/<pid>.children``.
``FAKE_CLAUDE_VERSION``      ``2.1.197`` (default) or ``2.1.332``: which real CLI to imitate.
``FAKE_CLAUDE_STDIN_TIMEOUT`` seconds to wait for the first stdin byte (default 3, like the real
                             CLI, which then warns on stderr and goes on without stdin).

Steps (one action key per step)
-------------------------------
``{"init": {overrides}}``            system/init event (overrides merged at top level)
``{"text": "..."}``                  assistant event with one text block (text blocks of one turn
                                     share a message id; a tool_result ends the turn)
``{"tool_use": {"name": "...", "input": {...}, "id"?: "toolu_..."}}``  assistant tool_use block
``{"tool_result": {"content": ..., "is_error"?: false, "tool_use_id"?: ...}}``  user event with a
                                     tool_result for the last tool_use (starts a new turn)
``{"result": {overrides}, "exit"?: N, "turn_cost_usd"?: X}``  result event (success unless
                                     overridden); the process exits at the end of the script (with
                                     stream-json input: when stdin closes) with 0, or 1 when the
                                     last result has ``is_error: true``, or with the step's
                                     ``exit``. The turn costs X (default 0.0123); the event's
                                     ``total_cost_usd`` is the process's total (see "Several
                                     turns"), unless overridden: then that value is the new total
``{"raw": "text"}``                  that line as-is on stdout (any output format)
``{"stderr": "text"}``               that line on stderr
``{"sleep": seconds}``               sleep (signals still handled)
``{"until": "/abs/path"}``           wait until that file exists (a test releases the fake when
                                     it has seen what it waits for; signals still handled)
``{"exit": code}``                   exit now with that code
``{"crash": "SIGSEGV"}``             kill itself with that signal (a name, with or without SIG, or
                                     a number)
``{"hang": true}``                   sleep forever (SIGTERM -> 143, SIGINT -> interrupted result)
``{"hang": "ignore_term"}``          ignore SIGTERM and SIGINT and sleep forever (only SIGKILL ends
                                     it)
``{"spawn": "sleeper"}``             start ``sys.executable -c "import time; time.sleep(3600)"`` in
                                     the fake's process group, never waited for (a leaked MCP
                                     server); SIGTERM does not end it
``{"spawn": "setsid_sleeper"}``      the same sleeper, but it calls ``setsid()`` (it leaves the
                                     fake's process group and session, as a daemonising MCP
                                     server does) and ignores SIGTERM (set before its exec, so
                                     there is no window); only SIGKILL ends it. Its pid is
                                     recorded in ``<pid>.children`` like the sleeper's
``{"write": {"path": "rel/file", "content": "..."}}``  write that file under the cwd (parent
                                     folders made), as the real CLI's Write tool does when the
                                     model calls it; script the tool_use/tool_result steps around
                                     it for the events. Only relative paths without ``..``

Structured output: ``--json-schema`` is accepted and not acted on. Script what 2.1.197 prints
when the model answers it: a ``tool_use`` of ``StructuredOutput`` with the value as input, its
``tool_result`` ("Structured output provided successfully"), then ``{"result":
{"structured_output": value, "result": "<the value as JSON>"}}`` (the real CLI offers that tool
to an agent with a ``tools`` list only when the list names it).

Limits: with ``--max-budget-usd X``, a result whose ``total_cost_usd`` exceeds X is replaced by the
``error_max_budget_usd`` result (exit 1). With ``--max-turns N``, a text/tool_use step that would
start model turn N+1 (model turns end at a tool_result) emits the ``error_max_turns`` result
instead (exit 1). Either ends the turn: the rest of its script is skipped (with stream-json input
the process then waits for the next message). A malformed script or FAKE_CLAUDE_SCRIPT exits 3
with ``fake claude: script error: ...``.

Output: ``stream-json`` (needs ``--verbose``) prints each event as one JSON line, flushed at once;
``json`` prints only the result object (with ``--verbose``: a JSON array of all events, as 2.1.197
does); ``text`` prints only the result text (error results print the CLI's error line, without a
trailing newline, as the real CLI does). Without a script: init,
``"Fake answer to: <prompt, stripped, first 200 chars>"``, result. Scripts are taken literally: no
implicit init or result. The result's ``result`` is the concatenated text of the last turn (the
text steps after the last tool_result): the real CLI reports only the final turn's text.

Control protocol (``--input-format stream-json --permission-prompt-tool stdio``, checked against
2.1.197 and 2.1.332): stdin is read line by line. A ``control_request`` ``initialize`` is answered
with a ``control_response`` (``commands``, ``agents``); the first ``user`` message is the prompt.
A ``tool_use`` step of a tool that needs permission (Bash, Write, Edit, NotebookEdit, WebFetch,
``mcp__*``; not pre-allowed by ``--allowedTools``, not in ``--disallowedTools``, mode not
bypassPermissions) prints a ``can_use_tool`` control request and waits for the
``control_response`` with its ``request_id`` (another id is ignored: the CLI keeps waiting).
``{"behavior": "allow", "updatedInput": {...}}`` lets the script go on; ``deny`` with a
``message`` skips the script's ``write`` steps up to the tool's ``tool_result``, which becomes an
error result carrying the message, and adds the use to ``permission_denials``. An ``allow``
without ``updatedInput`` is what 2.1.197 rejects: the tool is denied with
``Tool permission request failed: ZodError: ...`` (2.1.332 accepts it and runs the tool). After
a turn's result the process waits for the next user message (see below) until stdin closes.

Several turns in one process (``--input-format stream-json``; checked against 2.1.197 and
2.1.332 with and without the control protocol, the script of each turn picked by its prompt):
each further user message is one more turn of the same session, played after the running turn's
result (a message that arrives while a turn runs, even while a permission answer is awaited,
waits its turn). Per turn, as both real versions print them: ``system/init`` again (only its
``uuid`` differs: script it in each turn), the same ``session_id``, ``num_turns``, ``usage``,
``duration_ms`` and ``permission_denials`` of that turn alone, ``--max-turns`` counted afresh.
For the whole process: ``total_cost_usd`` (measured: turns of $0.0075 and $0.0225 printed 0.0075
then 0.03), ``modelUsage`` (tokens and ``costUSD``), ``duration_api_ms``, and
``--max-budget-usd``, which caps the process: the turn whose total goes over it ends with
``error_max_budget_usd`` and every later message is answered at once with init and the same
error, without asking the model (the process stays until stdin closes). Closing stdin ends the
process with 0, or 1 when its last result was an error; with no user message at all it prints
nothing and exits 0. The real CLI sends the earlier turns to the model in each request (a test
sees them in ``prompts`` of the record). Not reproduced: ``--resume`` in 2.1.332 reports
``total_cost_usd`` and ``modelUsage`` summed over the whole session, earlier processes included
(2.1.197: this process's turns only; both cap this process's spend); script the total with
``{"result": {"total_cost_usd": ...}}`` when a test needs it.

Real-CLI behaviour reproduced (checked against 2.1.197): commander.js argv parsing and its exact
error messages (unknown option with "Did you mean" suggestions, invalid choices, missing values,
``--opt=value``, combined short flags, variadic options swallowing following non-option args,
``--`` ending options, help/version); the order of the start-up checks; the 3 s stdin wait;
``--mcp-config`` parsing; ``--agent`` lookup in ``--agents``, ``$CLAUDE_CONFIG_DIR`` (else
``~/.claude``) ``/agents`` and ``.claude/agents`` of the cwd and its parents; budget and turn
limits; SIGTERM -> 143 without a result; SIGINT -> ``error_during_execution`` result and exit 0.
Stricter than the real CLI (marked "fake claude" in the messages): it refuses to run without
``-p``, rejects a non-positive-integer ``--max-turns`` and a malformed ``--agents`` (the real CLI
silently accepts both).
"""

from __future__ import annotations

import os
import signal

if __name__ == "__main__":
    # Until main() installs the real handlers (imports take some ms): SIGTERM exits 143 like the
    # CLI, SIGINT is ignored (the CLI ignores it before the run starts).
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(143))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import contextlib
import json
import math
import re
import select
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, NoReturn

VERSIONS = ("2.1.197", "2.1.332")
VERSION = os.environ.get("FAKE_CLAUDE_VERSION") or VERSIONS[0]
if VERSION not in VERSIONS:
    sys.exit(f"fake claude: FAKE_CLAUDE_VERSION must be one of {', '.join(VERSIONS)}, "
             f"got {VERSION!r}")
LATEST = VERSION == "2.1.332"
HELP_FILE = Path(__file__).resolve().with_name(f"claude-{VERSION}-help.txt")
PERMISSION_MODES = (["acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan"]
                    if LATEST else
                    ["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"])
# 2.1.332 options 2.1.197 lacks (it removed none).
LATEST_OPTIONS: list[dict[str, Any]] = [
    {"flags": "--autocompact <auto|tokens>"},
    {"flags": "--cloud [description|session_id|url]"},
    {"flags": "--desktop"},
    {"flags": "--environment <environment_id>"},
    {"flags": "--forward-subagent-text"},
    {"flags": "--permission-prompts <target>", "choices": ["host", "none"]},
    {"flags": "--restricted"},
    {"flags": "--system-prompt-snapshot <on|off>", "choices": ["on", "off"]},
    {"flags": "--teleport [session]"},
]

# --------------------------------------------------------------------------------------------
# The option table of `claude --help` 2.1.197, by hand from the help text: commander `flags`
# string (used verbatim in error messages), choices, and whether it is hidden from --help.
# Arity comes from the flags: `<x>` required value, `[x]` optional value, `<x...>` variadic,
# none: boolean. `-h, --help` is not in the table: commander treats it apart (see parse_argv).
# --------------------------------------------------------------------------------------------
OPTION_TABLE: list[dict[str, Any]] = [
    {"flags": "--add-dir <directories...>"},
    {"flags": "--agent <agent>"},
    {"flags": "--agents <json-or-file>" if LATEST else "--agents <json>"},
    {"flags": "--allow-dangerously-skip-permissions"},
    {"flags": "--allowedTools, --allowed-tools <tools...>"},
    {"flags": "--append-system-prompt <prompt>"},
    {"flags": "--ax-screen-reader"},
    {"flags": "--bg, --background"},
    {"flags": "--bare"},
    {"flags": "--betas <betas...>"},
    {"flags": "--brief"},
    {"flags": "--chrome"},
    {"flags": "-c, --continue"},
    {"flags": "--dangerously-skip-permissions"},
    {"flags": "-d, --debug [filter]"},
    {"flags": "--debug-file <path>"},
    {"flags": "--disable-slash-commands"},
    {"flags": "--disallowedTools, --disallowed-tools <tools...>"},
    {"flags": "--effort <level>"},
    {"flags": "--exclude-dynamic-system-prompt-sections"},
    {"flags": "--fallback-model <model>"},
    {"flags": "--file <specs...>"},
    {"flags": "--fork-session"},
    {"flags": "--from-pr [value]"},
    {"flags": "--ide"},
    {"flags": "--include-hook-events"},
    {"flags": "--include-partial-messages"},
    {"flags": "--input-format <format>", "choices": ["text", "stream-json"]},
    {"flags": "--json-schema <schema>"},
    {"flags": "--max-budget-usd <amount>"},
    {"flags": "--mcp-config <configs...>"},
    {"flags": "--model <model>"},
    {"flags": "-n, --name <name>"},
    {"flags": "--no-chrome"},
    {"flags": "--no-session-persistence"},
    {"flags": "--output-format <format>", "choices": ["text", "json", "stream-json"]},
    # 2.1.332 still accepts "default" although it no longer lists it.
    {"flags": "--permission-mode <mode>", "choices": PERMISSION_MODES, "also": ["default"]},
    {"flags": "--plugin-dir <path>", "repeatable": True},
    {"flags": "--plugin-url <url>", "repeatable": True},
    {"flags": "-p, --print"},
    {"flags": "--prompt-suggestions [value]",
     "choices": ["true", "false", "1", "0", "yes", "no", "on", "off"], "preset": "true"},
    {"flags": "--remote-control [name]"},
    {"flags": "--remote-control-session-name-prefix <prefix>"},
    {"flags": "--replay-user-messages"},
    {"flags": "-r, --resume [value]"},
    {"flags": "--safe-mode"},
    {"flags": "--session-id <uuid>"},
    {"flags": "--setting-sources <sources>"},
    {"flags": "--settings <file-or-json>"},
    {"flags": "--strict-mcp-config"},
    {"flags": "--system-prompt <prompt>"},
    {"flags": "--tmux"},
    {"flags": "--tools <tools...>"},
    {"flags": "--verbose"},
    {"flags": "-v, --version"},
    {"flags": "-w, --worktree [name]"},
    # Hidden: accepted by 2.1.197 although --help does not list it.
    {"flags": "--max-turns <turns>", "hidden": True},
    {"flags": "--permission-prompt-tool <tool>", "hidden": True},
    *(LATEST_OPTIONS if LATEST else []),
]
HELP_FLAGS = ("-h", "--help")
# Subcommands exist only when "-p"/"--print" is not in argv (then `claude mcp` etc. dispatch).
SUBCOMMANDS = ("agents", "auth", "auto-mode", "doctor", "gateway", "install", "mcp", "plugin",
               "plugins", "project", "setup-token", "ultrareview", "update", "upgrade")


class Option:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.flags: str = spec["flags"]
        parts = re.split(r"[ |,]+", self.flags)
        # commander's split: a first flag followed by another flag is the "short" spelling, even
        # when it is long (`--allowedTools, --allowed-tools`): `.long` is the last spelling.
        self.spellings = [p for p in parts if p.startswith("-")]
        self.long = next((s for s in reversed(self.spellings) if s.startswith("--")), None)
        self.name = (self.long or self.spellings[0]).lstrip("-")
        self.required = "<" in self.flags
        self.optional = "[" in self.flags
        self.variadic = "...>" in self.flags or "...]" in self.flags
        self.choices: list[str] | None = spec.get("choices")
        self.also: list[str] = spec.get("also", [])
        self.preset: str | None = spec.get("preset")
        self.hidden: bool = spec.get("hidden", False)
        self.repeatable: bool = spec.get("repeatable", False)

    def is_(self, arg: str) -> bool:
        return arg in self.spellings


OPTIONS = [Option(spec) for spec in OPTION_TABLE]


def find_option(arg: str) -> Option | None:
    return next((o for o in OPTIONS if o.is_(arg)), None)


def long_options(*, hidden: bool) -> set[str]:
    """Every long spelling in the table (the hidden ones only when asked), plus --help."""
    names = {"--help"} if not hidden else set()
    for option in OPTIONS:
        if option.hidden == hidden:
            names.update(s for s in option.spellings if s.startswith("--"))
    return names


# --------------------------------------------------------------------------------------------
# Exits, output, recording
# --------------------------------------------------------------------------------------------
STATE: dict[str, Any] = {"recorded": False, "stdin": None, "result_emitted": False,
                         "children": [], "writing": 0, "deferred": None, "run": None,
                         "interrupting": False, "prompts": []}


class Exit(Exception):
    def __init__(self, code: int, stderr: str = "", stdout: str = "") -> None:
        super().__init__(stderr)
        self.code, self.stderr, self.stdout = code, stderr, stdout


def write(stream: Any, text: str) -> None:
    """Write and flush. A SIGINT arriving meanwhile is handled after the write (a handler that
    wrote at once would re-enter the stream's buffer)."""
    STATE["writing"] += 1
    try:
        stream.buffer.write(text.encode("utf-8", "replace"))
        stream.buffer.flush()
    except BrokenPipeError:
        os._exit(1)
    finally:
        STATE["writing"] -= 1
    if STATE["deferred"] is not None and not STATE["writing"]:
        handler, STATE["deferred"] = STATE["deferred"], None
        handler()


def on_sigterm(signum: int, frame: Any) -> None:
    # Like the real CLI: exit 143, no result event; spawned sleepers are left running. No stdio
    # here: the main code may be inside a write of the same buffer.
    record(STATE["stdin"])
    os._exit(143)


def on_sigint(signum: int, frame: Any) -> None:
    run = STATE["run"]
    if run is None:
        return  # before the run starts (e.g. while waiting for stdin) the real CLI ignores it
    if STATE["writing"]:
        STATE["deferred"] = run.interrupted
    else:
        run.interrupted()


def record(stdin: str | None) -> None:
    if STATE["recorded"]:
        return
    STATE["recorded"] = True
    folder = os.environ.get("FAKE_CLAUDE_RECORD_DIR")
    if not folder:
        return
    pid = os.getpid()
    data = {"argv": sys.argv[1:], "env": dict(os.environ), "stdin": stdin,
            "prompt": recorded_prompt(stdin), "prompts": STATE["prompts"], "cwd": os.getcwd(),
            "pid": pid, "pgid": os.getpgid(0), "ppid": os.getppid(), "sid": os.getsid(0),
            "monotonic": time.monotonic()}
    tmp = Path(folder) / f".{pid}.json.tmp"
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        os.replace(tmp, Path(folder) / f"{pid}.json")
    except OSError as exc:
        write(sys.stderr, f"fake claude: cannot record into FAKE_CLAUDE_RECORD_DIR: {exc}\n")
        os._exit(3)


def record_turn(prompt: str) -> None:
    """Rewrite the record with one more turn's prompt (stream-json input keeps the session)."""
    STATE["prompts"].append(prompt)
    STATE["recorded"] = False
    record(STATE["stdin"])


def recorded_prompt(stdin: str | None) -> str | None:
    """The prompt as the run sees it: the user messages of stream-json input, else stdin."""
    if stdin is None or not stdin.lstrip().startswith("{"):
        return stdin
    try:
        return stream_json_prompt(stdin)
    except Exit:
        return stdin


def finish(code: int) -> NoReturn:
    record(STATE["stdin"])
    os._exit(code)  # all output went through write(), which flushes


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def js_number(value: float) -> str:
    """A float as JavaScript's Number#toString writes it (enough for messages)."""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", text)


def js_number_parse(text: str) -> float:
    """JavaScript's Number(text): NaN (float('nan')) when it is not a number."""
    s = text.strip()
    if s == "":
        return 0.0
    if re.fullmatch(r"[+-]?Infinity", s):
        return -math.inf if s.startswith("-") else math.inf
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if s[:2].lower() == prefix:
            try:
                return float(int(s[2:], base))
            except ValueError:
                return math.nan
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
        return float(s)
    return math.nan


def js_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def js_truthy(value: Any) -> bool:
    if isinstance(value, (dict, list)):
        return True
    return bool(value)


def json_parse(text: str) -> Any:
    """JSON.parse: raises ValueError; rejects NaN/Infinity as JavaScript does."""
    def bad_constant(name: str) -> Any:
        raise ValueError(f"invalid constant {name}")
    return json.loads(text, parse_constant=bad_constant)


# --------------------------------------------------------------------------------------------
# commander.js argv parsing
# --------------------------------------------------------------------------------------------
def edit_distance(a: str, b: str) -> int:
    """commander's Damerau-Levenshtein (optimal string alignment) distance."""
    if abs(len(a) - len(b)) > 3:
        return max(len(a), len(b))
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for j in range(1, len(b) + 1):
        for i in range(1, len(a) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def suggest(flag: str) -> str:
    """commander's "(Did you mean ...?)" for an unknown long option (visible options only)."""
    if not flag.startswith("--"):
        return ""
    candidates = {o.long for o in OPTIONS if o.long and not o.hidden} | {"--help"}
    word = flag[2:]
    best, similar = 3, []
    for candidate in sorted(c[2:] for c in candidates):
        if len(candidate) <= 1:
            continue
        distance = edit_distance(word, candidate)
        length = max(len(word), len(candidate))
        if (length - distance) / length > 0.4:
            if distance < best:
                best, similar = distance, [candidate]
            elif distance == best:
                similar.append(candidate)
    similar = ["--" + s for s in sorted(similar, key=lambda s: (s.lower(), s))]
    if len(similar) > 1:
        return f"\n(Did you mean one of {', '.join(similar)}?)"
    return f"\n(Did you mean {similar[0]}?)" if similar else ""


def help_text(print_mode: bool) -> str:
    text = HELP_FILE.read_text()
    if not print_mode:
        return text
    # With -p the CLI registers no subcommands: other usage line, no Commands section.
    lines = text.split("\n")
    end = lines.index("Commands:") - 1
    return "\n".join(["Usage: claude [options] [prompt]", *lines[1:end]]) + "\n"


def parse_argv(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Parse like commander (the version inside claude 2.1.197); raises Exit on errors."""
    print_mode = "-p" in args or "--print" in args
    opts: dict[str, Any] = {}
    operands: list[str] = []
    unknown: list[str] = []
    dest = operands

    def maybe_option(arg: str) -> bool:
        return len(arg) > 1 and arg[0] == "-"

    def set_value(option: Option, value: str | None) -> None:
        if value is None and option.preset is not None:
            value = option.preset
        if value is not None and option.choices is not None and \
                value not in option.choices + option.also:
            raise Exit(1, f"error: option '{option.flags}' argument '{value}' is invalid. "
                          f"Allowed choices are {', '.join(option.choices)}.\n")
        if option.name == "max-budget-usd":
            amount = js_number_parse(value or "")
            if (math.isnan(amount) or amount <= 0) and LATEST:
                raise Exit(1, f"error: option '{option.flags}' argument '{value}' is invalid. "
                              "--max-budget-usd must be a number greater than 0\n")
            if math.isnan(amount) or amount <= 0:
                # 2.1.197 throws here: its stderr is a source excerpt and a stack trace
                # around this line; the fake prints the line alone.
                raise Exit(1, "error: --max-budget-usd must be a positive number greater than 0\n")
        if option.name == "version":
            raise Exit(0, stdout=f"{VERSION} (Claude Code)\n")
        if option.variadic or option.repeatable:
            opts.setdefault(option.name, []).append(value)
        elif value is None and not (option.required or option.optional):
            opts[option.name] = True
        else:
            opts[option.name] = value if value is not None else True

    queue = list(args)
    active_variadic: Option | None = None
    while queue:
        arg = queue.pop(0)
        if arg == "--":
            if dest is unknown:
                dest.append(arg)
            dest.extend(queue)
            break
        if active_variadic is not None and not maybe_option(arg):
            set_value(active_variadic, arg)
            continue
        active_variadic = None
        if maybe_option(arg):
            option = find_option(arg)
            if option is not None:
                if option.required:
                    if not queue:
                        raise Exit(1, f"error: option '{option.flags}' argument missing\n")
                    set_value(option, queue.pop(0))
                elif option.optional:
                    value = queue.pop(0) if queue and not maybe_option(queue[0]) else None
                    set_value(option, value)
                else:
                    set_value(option, None)
                active_variadic = option if option.variadic else None
                continue
        if len(arg) > 2 and arg[0] == "-" and arg[1] != "-":
            option = find_option(f"-{arg[1]}")
            if option is not None:
                if option.required or option.optional:
                    set_value(option, arg[2:])
                else:
                    set_value(option, None)
                    queue.insert(0, f"-{arg[2:]}")
                continue
        if re.match(r"^--[^=]+=", arg):
            index = arg.index("=")
            option = find_option(arg[:index])
            if option is not None and (option.required or option.optional):
                set_value(option, arg[index + 1:])
                continue
        if maybe_option(arg):
            dest = unknown
        if not print_mode and not operands and not unknown and arg in SUBCOMMANDS:
            opts["subcommand"] = arg  # dispatched with the rest of argv, unchecked here
            return opts, [arg, *queue]
        dest.append(arg)

    if any(arg in HELP_FLAGS for arg in unknown):
        raise Exit(0, stdout=help_text(print_mode))
    if unknown:
        raise Exit(1, f"error: unknown option '{unknown[0]}'{suggest(unknown[0])}\n")
    return opts, operands


# --------------------------------------------------------------------------------------------
# Semantics
# --------------------------------------------------------------------------------------------
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
BUILTIN_AGENTS = ["claude", "Explore", "general-purpose", "Plan", "statusline-setup"]
BUILTIN_SKILLS = ["deep-research", "update-config", "verify", "debug", "code-review", "simplify",
                  "batch", "fewer-permission-prompts", "loop", "claude-api", "run",
                  "run-skill-generator"]
BUILTIN_COMMANDS = ["clear", "compact", "config", "context", "heapdump", "init", "reload-skills",
                    "review", "security-review", "usage", "insights", "goal", "team-onboarding"]
DEFAULT_TOOLS = ["Task", "Bash", "CronCreate", "CronDelete", "CronList", "Edit", "EnterWorktree",
                 "ExitWorktree", "NotebookEdit", "Read", "ReportFindings", "ScheduleWakeup",
                 "SendMessage", "Skill", "TaskCreate", "TaskGet", "TaskList", "TaskOutput",
                 "TaskStop", "TaskUpdate", "WebFetch", "WebSearch", "Workflow", "Write"]
KNOWN_TOOLS = {*DEFAULT_TOOLS, "Glob", "Grep", "ToolSearch"}
MODEL_ALIASES = {"opus": "claude-opus-4-8", "best": "claude-opus-4-8",
                 "sonnet": "claude-sonnet-5", "opusplan": "claude-sonnet-5",
                 "haiku": "claude-haiku-4-5-20251001", "fable": "claude-fable-5",
                 "default": "claude-opus-4-8[1m]"}
DEFAULT_MODEL = "claude-opus-4-8[1m]"
STDIN_WARNING = ("Warning: no stdin data received in 3s, proceeding without it. If piping from a "
                 "slow command, redirect stdin explicitly: < /dev/null to skip, or wait longer.\n")


def config_dir() -> Path:
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("HOME", "~")).expanduser() / ".claude"


def ancestors() -> list[Path]:
    cwd = Path(os.getcwd())
    return [cwd, *cwd.parents]


def front_matter(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    match = re.match(r"---\r?\n(.*?)\r?\n---", text, re.S)
    if not match:
        return None
    fields = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not line[:1].isspace():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            fields[key.strip()] = value
    return fields


def file_agents() -> dict[str, dict[str, Any]]:
    """Agents from <config>/agents and .claude/agents of the cwd and its parents."""
    found: dict[str, dict[str, Any]] = {}
    for folder in [config_dir() / "agents", *(p / ".claude" / "agents" for p in ancestors())]:
        for path in sorted(folder.glob("*.md")) if folder.is_dir() else []:
            fields = front_matter(path)
            if fields and fields.get("name") and fields.get("description"):
                found.setdefault(fields["name"], fields)
    return found


def file_skills() -> tuple[list[str], list[str]]:
    """(skills with a description, every skill) from the user dir, then cwd and its parents."""
    described: list[str] = []
    every: list[str] = []
    for folder in [config_dir() / "skills", *(p / ".claude" / "skills" for p in ancestors())]:
        if not folder.is_dir():
            continue
        for skill in sorted(folder.iterdir()):
            fields = front_matter(skill / "SKILL.md")
            if fields is None or skill.name in every:
                continue
            every.append(skill.name)
            if fields.get("description"):
                described.append(skill.name)
    return described, every


def split_list(values: list[str] | None) -> list[str]:
    return [item for value in values or [] for item in re.split(r"[,\s]+", value) if item]


def resolve_model(name: str) -> str:
    base, suffix = (name[:-4], "[1m]") if name.endswith("[1m]") else (name, "")
    if base == "default":
        return DEFAULT_MODEL
    return MODEL_ALIASES.get(base, base) + suffix


def load_mcp_configs(values: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every --mcp-config value: JSON text, else a file; raises Exit like the real CLI."""
    servers: list[tuple[str, dict[str, Any]]] = []
    for value in values:
        try:
            config = json_parse(value)
        except ValueError:
            config = None
        if not js_truthy(config):  # not JSON (or a falsy JSON value): a path
            path = os.path.abspath(value)
            if not os.path.isfile(path):
                raise Exit(1, "Error: Invalid MCP configuration:\n"
                              f"MCP config file not found: {path}\n")
            try:
                config = json_parse(Path(path).read_text())
            except (ValueError, UnicodeDecodeError):
                raise Exit(1, "Error: Invalid MCP configuration:\n"
                              "MCP config is not a valid JSON\n") from None
        if not isinstance(config, dict):
            raise Exit(1, "Error: Invalid MCP configuration:\nInvalid input: expected object, "
                          f"received {js_type(config)}\n")
        entries = config.get("mcpServers")
        if not isinstance(entries, dict):
            received = "undefined" if "mcpServers" not in config else js_type(entries)
            raise Exit(1, "Error: Invalid MCP configuration:\nmcpServers: Invalid input: expected "
                          f"record, received {received}\n")
        for name, entry in entries.items():  # malformed entries are ignored, as by the real CLI
            if isinstance(entry, dict) and (isinstance(entry.get("command"), str)
                                            or isinstance(entry.get("url"), str)):
                servers.append((name, entry))
    return servers


def load_agents(value: str) -> dict[str, dict[str, Any]]:
    """--agents: JSON text or a JSON file (fake-only strictness: the real CLI ignores bad ones)."""
    def bad(detail: str) -> Exit:
        return Exit(1, f"Error: fake claude: invalid --agents ({detail}); expected a JSON object "
                       '{"name": {"description": "...", "prompt": "..."}}\n')
    try:
        agents = json_parse(value)
    except ValueError:
        try:
            agents = json_parse(Path(value).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            raise bad("neither JSON nor a readable JSON file") from None
    if not isinstance(agents, dict):
        raise bad(f"got a JSON {js_type(agents)}")
    for name, agent in agents.items():
        if not isinstance(agent, dict):
            raise bad(f"agent {name!r} is not an object")
        for key in ("description", "prompt"):
            if not isinstance(agent.get(key), str):
                raise bad(f"agent {name!r} needs a string {key!r}")
    return agents


def read_stdin(stream_json: bool = False) -> str:
    """Read stdin like the CLI: wait up to 3 s for a first byte, then read to EOF. With
    ``--input-format stream-json`` 2.1.197 waits for its first message as long as it
    takes (checked: a user message written after 6 s was answered), so a caller can
    start it ahead of time."""
    try:
        if os.isatty(0):
            return ""
        timeout = None if stream_json else float(os.environ.get("FAKE_CLAUDE_STDIN_TIMEOUT", "3"))
        ready, _, _ = select.select([0], [], [], timeout)
    except (OSError, ValueError):
        return ""
    if not ready:
        write(sys.stderr, STDIN_WARNING)
        return ""
    chunks = []
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


PROMPTED_TOOLS = {"Bash", "Write", "Edit", "NotebookEdit", "WebFetch"}


class StdinLines:
    """stdin as lines, read as they come (the control protocol keeps stdin open)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.eof = False

    def next_line(self) -> str | None:
        while b"\n" not in self.buffer and not self.eof:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buffer += chunk
        if not self.buffer:
            return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")


STDIN = StdinLines()


def parse_frame(line: str) -> Any:
    try:
        return json_parse(line)
    except ValueError as exc:
        raise Exit(1, f"Error parsing streaming input line: {line}: SyntaxError: {exc}\n") from None


def read_stream_json_start(opts: dict[str, Any]) -> str:
    """Control protocol: answer ``initialize`` requests until the first user message; the raw
    lines read so far are returned (what ``record`` keeps as stdin)."""
    raw: list[str] = []
    while True:
        line = STDIN.next_line()
        if line is None:
            return "\n".join(raw)
        raw.append(line)
        if not line.strip():
            continue
        frame = parse_frame(line)
        if not isinstance(frame, dict):
            continue
        if frame.get("type") == "control_request":
            request = frame.get("request") or {}
            stream = opts.get("output-format") == "stream-json"
            if request.get("subtype") == "initialize" and stream:
                write(sys.stdout, dumps({"type": "control_response", "response": {
                    "subtype": "success", "request_id": frame.get("request_id"),
                    "response": {"commands": [{"name": n, "description": "", "argumentHint": ""}
                                              for n in BUILTIN_SKILLS],
                                 "agents": [{"name": n} for n in BUILTIN_AGENTS]}}}) + "\n")
        elif frame.get("type") == "user":
            return "\n".join(raw)


def wait_for_permission(request_id: str) -> dict[str, Any]:
    """The ``control_response`` to ``request_id`` (others are ignored, as by the CLI)."""
    while True:
        line = STDIN.next_line()
        if line is None:
            # stdin closed while the CLI waited for an answer: it ends without a result
            finish(0)
        frame = parse_frame(line) if line.strip() else None
        if isinstance(frame, dict) and frame.get("type") == "user":
            QUEUED.append(frame)  # the CLI answers it after this turn's result
        if not (isinstance(frame, dict) and frame.get("type") == "control_response"):
            continue
        response = frame.get("response") or {}
        if response.get("request_id") == request_id:
            return response


QUEUED: list[dict[str, Any]] = []
"""User messages that came while a turn was running, oldest first."""


def next_user_message() -> str | None:
    """The prompt of the next user message (a queued one first); None when stdin closes.
    Other frames between turns are skipped."""
    while not QUEUED:
        line = STDIN.next_line()
        if line is None:
            return None
        frame = parse_frame(line) if line.strip() else None
        if isinstance(frame, dict) and frame.get("type") == "user":
            QUEUED.append(frame)
    return stream_json_prompt(dumps(QUEUED.pop(0)))


def frames(raw: str) -> list[Any]:
    """The JSON frames of stream-json input (raises Exit on a malformed line, as the CLI)."""
    return [parse_frame(line) for line in raw.splitlines() if line.strip()]


def stream_json_prompt(raw: str) -> str:
    texts = []
    for message in frames(raw):
        if isinstance(message, dict) and message.get("type") == "user":
            content = (message.get("message") or {}).get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts += [b.get("text", "") for b in content
                          if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(texts)


def validate_before_stdin(opts: dict[str, Any]) -> dict[str, Any]:
    """The checks the real CLI makes before it reads stdin, in its order."""
    if opts.get("subcommand"):
        raise Exit(2, f"fake claude only supports --print (subcommand '{opts['subcommand']}')\n")
    if not opts.get("print"):
        raise Exit(2, "fake claude only supports --print (-p)\n")
    session_id = opts.get("session-id")
    if session_id is not None and (opts.get("resume") or opts.get("continue")) \
            and not opts.get("fork-session"):
        raise Exit(1, "Error: --session-id can only be used with --continue or --resume if "
                      "--fork-session is also specified.\n")
    if session_id is not None and not UUID_RE.match(session_id):
        raise Exit(1, "Error: Invalid session ID. Must be a valid UUID.\n")
    servers = load_mcp_configs(opts.get("mcp-config", []))
    output = opts.get("output-format", "text")
    input_format = opts.get("input-format", "text")
    if input_format == "stream-json" and output != "stream-json":
        raise Exit(1, "Error: --input-format=stream-json requires output-format=stream-json.\n")
    if opts.get("replay-user-messages") and not (input_format == output == "stream-json"):
        raise Exit(1, "Error: --replay-user-messages requires both --input-format=stream-json "
                      "and --output-format=stream-json.\n")
    if opts.get("include-partial-messages") and output != "stream-json":
        raise Exit(1, "Error: --include-partial-messages requires --print and "
                      "--output-format=stream-json.\n")
    max_turns = opts.get("max-turns")
    if max_turns is not None and not (max_turns.strip().isdigit() and int(max_turns) > 0):
        raise Exit(1, f"Error: fake claude: --max-turns must be a positive integer, got "
                      f"'{max_turns}' (claude 2.1.197 itself accepts any value)\n")
    agents = load_agents(opts["agents"]) if "agents" in opts else {}
    return {"servers": servers, "agents": agents}


def validate_after_stdin(opts: dict[str, Any], ctx: dict[str, Any], stdin: str,
                         operands: list[str]) -> str:
    """The checks the real CLI makes after reading stdin, in its order; returns the prompt."""
    bypass = (opts.get("dangerously-skip-permissions")
              or opts.get("allow-dangerously-skip-permissions")
              or opts.get("permission-mode") == "bypassPermissions")
    if bypass and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
        raise Exit(1, "--dangerously-skip-permissions cannot be used with root/sudo privileges "
                      "for security reasons\n")
    resume = opts.get("resume")
    if "resume" in opts and not isinstance(resume, str):
        raise Exit(1, "Error: --resume requires a valid session ID or session title when used "
                      "with --print. Usage: claude -p --resume <session-id|title>\n")
    if isinstance(resume, str) and not UUID_RE.match(resume):
        message = ("Error: --resume requires a valid session ID or session title when used with "
                   "--print. Usage: claude -p --resume <session-id|title>. Provided value "
                   f"\"{resume}\" is not a UUID and does not match any session title.")
        stdout = ""
        if opts.get("output-format") == "stream-json":
            event = error_result("error_during_execution", str(uuid.uuid4()), 0, [message])
            event.pop("terminal_reason")
            stdout = dumps(event) + "\n"
        raise Exit(1, message + "\n", stdout=stdout)
    known = {**file_agents(), **ctx["agents"]}
    agent = opts.get("agent")
    names = sorted({*BUILTIN_AGENTS, *known}, key=lambda s: (s.lower(), s))
    if agent is not None and agent not in names:
        raise Exit(1, f"--agent '{agent}' not found. Available agents: {', '.join(names)}\n")
    ctx["agent_names"] = names
    ctx["agent_def"] = known.get(agent) if agent else None
    if opts.get("input-format") == "stream-json":
        prompt = stream_json_prompt(stdin)
        if operands:
            prompt = operands[0] + ("\n" + prompt if prompt else "")
    else:
        prompt = operands[0] + ("\n" + stdin if stdin else "") if operands else stdin
    if prompt == "" and opts.get("input-format") != "stream-json":
        raise Exit(1, "Error: Input must be provided either through stdin or as a prompt argument "
                      "when using --print\n")
    if opts.get("output-format") == "stream-json" and not opts.get("verbose"):
        raise Exit(1, "Error: When using --print, --output-format=stream-json requires --verbose\n")
    return prompt


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------
def zero_usage() -> dict[str, Any]:
    return {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": 0,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
            "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
            "inference_geo": "", "iterations": [], "speed": "standard"}


def model_usage(model: str, usage: dict[str, Any], cost: float) -> dict[str, Any]:
    return {model: {"inputTokens": usage.get("input_tokens", 0),
                    "outputTokens": usage.get("output_tokens", 0),
                    "cacheReadInputTokens": usage.get("cache_read_input_tokens", 0),
                    "cacheCreationInputTokens": usage.get("cache_creation_input_tokens", 0),
                    "webSearchRequests": 0, "costUSD": cost, "contextWindow": 1000000,
                    "maxOutputTokens": 64000}}


def error_result(subtype: str, session_id: str, num_turns: int, errors: list[str],
                 **fields: Any) -> dict[str, Any]:
    event = {"type": "result", "subtype": subtype, "duration_ms": 0, "duration_api_ms": 0,
             "is_error": True, "num_turns": num_turns, "stop_reason": None,
             "session_id": session_id, "total_cost_usd": 0, "usage": zero_usage(),
             "modelUsage": {}, "permission_denials": [], "terminal_reason": None,
             "fast_mode_state": "off", "uuid": str(uuid.uuid4()), "errors": errors}
    event.update(fields)
    return event


def rand_id(prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(alphabet[b % len(alphabet)] for b in os.urandom(22))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


STEP_KEYS = {"init": set(), "text": set(), "tool_use": set(), "tool_result": set(),
             "result": {"exit", "turn_cost_usd"}, "raw": set(), "stderr": set(), "sleep": set(),
             "exit": set(), "crash": set(), "hang": set(), "spawn": set(), "write": set(),
             "until": set()}


DEFAULT_TURN_COST = 0.0123
"""What a turn costs unless its result step says otherwise."""


class TurnOver(Exception):
    """A limit ended the turn (its error result is out): the rest of its script is skipped."""


def turn_script(prompt: str) -> list[dict[str, Any]]:
    """The steps of the turn that answers ``prompt``: scripted, else the default answer."""
    script = load_script(prompt)
    if script is None:
        answer = f"Fake answer to: {prompt.strip()[:200]}"
        script = [{"init": {}}, {"text": answer}, {"result": {}}]
    return script


def script_error(message: str) -> Exit:
    return Exit(3, f"fake claude: script error: {message}\n")


def step_action(step: Any) -> str:
    """The action key of a step (``result`` may carry an ``exit``); raises on a malformed step."""
    keys = set(step) if isinstance(step, dict) else set()
    action = "result" if "result" in keys else next(iter(keys & set(STEP_KEYS)), "")
    if not action or keys - {action} - STEP_KEYS[action]:
        raise script_error(f"bad step {step!r}: one action of {sorted(STEP_KEYS)} expected")
    return action


def load_script(prompt: str) -> list[dict[str, Any]] | None:
    path = os.environ.get("FAKE_CLAUDE_SCRIPT")
    if not path:
        return None
    try:
        script = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise script_error(f"cannot read FAKE_CLAUDE_SCRIPT={path}: {exc}") from None
    if isinstance(script, dict):
        key = prompt.split("\n", 1)[0].strip() if prompt else ""
        if key not in script:
            key = "default"
        if key not in script:
            raise script_error(f"no key {prompt.splitlines()[0].strip() if prompt else ''!r} "
                               f"and no 'default' in {sorted(script)}")
        script = script[key]
    if not isinstance(script, list):
        raise script_error("the script must be a list of steps or an object of step lists")
    for step in script:
        action = step_action(step)
        value = step[action]
        if action == "tool_use" and not (isinstance(value, dict)
                                         and isinstance(value.get("name"), str)):
            raise script_error(f"bad step {step!r}: tool_use needs a name")
        if action in ("init", "result", "tool_result") and not isinstance(value, dict):
            raise script_error(f"bad step {step!r}: an object expected")
        if action == "write" and not (
                isinstance(value, dict) and set(value) == {"path", "content"}
                and isinstance(value["path"], str) and isinstance(value["content"], str)
                and value["path"] and not Path(value["path"]).is_absolute()
                and ".." not in Path(value["path"]).parts):
            raise script_error(f"bad step {step!r}: write needs a relative path (no '..') "
                               "and a string content")
        if action == "spawn" and value not in ("sleeper", "setsid_sleeper"):
            raise script_error(
                f"bad step {step!r}: only \"sleeper\" or \"setsid_sleeper\" can be spawned")
        cost = step.get("turn_cost_usd", 0) if action == "result" else 0
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0:
            raise script_error(f"bad step {step!r}: turn_cost_usd is a number >= 0")
        if action == "hang" and value not in (True, "ignore_term"):
            raise script_error(f"bad step {step!r}: hang is true or \"ignore_term\"")
    return script


class Run:
    """One scripted session: turns, events, output formats, signals."""

    def __init__(self, opts: dict[str, Any], ctx: dict[str, Any], prompt: str) -> None:
        self.opts, self.ctx, self.prompt = opts, ctx, prompt
        self.output = opts.get("output-format", "text")
        self.verbose = bool(opts.get("verbose"))
        if isinstance(opts.get("resume"), str) and not opts.get("fork-session"):
            self.session_id = opts["resume"]
        else:
            self.session_id = opts.get("session-id") or str(uuid.uuid4())
        agent = ctx.get("agent_def") or {}
        model = opts.get("model") or (agent.get("model")
                                      if agent.get("model") != "inherit" else None)
        self.model = resolve_model(model) if model else DEFAULT_MODEL
        self.message_model = self.model.removesuffix("[1m]")
        self.events: list[dict[str, Any]] = []
        self.message_id = ""
        self.last_tool_use_id: str | None = None
        self.exit_code = 0
        self.max_turns = int(opts["max-turns"]) if "max-turns" in opts else None
        self.denied: str | None = None
        """Why the last tool use was denied (its tool_result carries it)."""
        # What the process adds up over its turns (stream-json input), as the real CLI does:
        self.total_cost = 0.0
        self.api_ms = 0
        self.total_tokens = {"input_tokens": 0, "output_tokens": 0,
                             "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        self.over_budget = False
        self.new_turn()

    def new_turn(self) -> None:
        """Start a turn (a user message): model turns, timing, text and denials restart."""
        self.turn_started = time.monotonic()
        self.turns = 0
        self.turn_open = False
        self.turn_texts: list[str] = []
        self.denials: list[dict[str, Any]] = []
        STATE["result_emitted"] = False

    # ---- output
    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self.output == "stream-json":
            write(sys.stdout, dumps(event) + "\n")

    def emit_result(self, event: dict[str, Any]) -> None:
        self.emit(event)
        STATE["result_emitted"] = True
        if self.output == "json":
            write(sys.stdout, dumps(self.events if self.verbose else event) + "\n")
        elif self.output == "text":
            subtype = event.get("subtype")
            if subtype == "success":
                write(sys.stdout, f"{event.get('result') or ''}\n")
            elif subtype == "error_max_turns":
                write(sys.stdout, f"Error: Reached max turns ({self.max_turns})")
            elif subtype == "error_max_budget_usd":
                write(sys.stdout, f"Error: Exceeded USD budget ({self.budget_text()})")
            else:
                write(sys.stdout, "Execution error")

    def budget_text(self) -> str:
        return js_number(js_number_parse(self.opts.get("max-budget-usd", "0")))

    # ---- events
    def init_event(self, overrides: dict[str, Any]) -> dict[str, Any]:
        opts, ctx = self.opts, self.ctx
        agent = ctx.get("agent_def") or {}
        tools = list(DEFAULT_TOOLS)
        if os.environ.get("ENABLE_TOOL_SEARCH", "").lower() not in ("false", "0"):
            tools.append("ToolSearch")
        if "tools" in opts:
            wanted = split_list(opts["tools"])
            tools = list(DEFAULT_TOOLS) if wanted == ["default"] else \
                [t for t in KNOWN_TOOLS if t in wanted or (t == "Task" and "Agent" in wanted)]
        if agent.get("tools"):
            agent_tools = agent["tools"]
            tools = (list(agent_tools) if isinstance(agent_tools, list)
                     else split_list([agent_tools]))
        denied = set(split_list(opts.get("disallowed-tools")))
        if "Bash" in denied and "tools" not in opts and not agent.get("tools"):
            tools += ["Glob", "Grep"]
        tools = [t for t in tools if t not in denied]
        if not agent.get("tools"):
            tools = sorted(set(tools), key=lambda t: (t != "Task", t))
        servers = list(ctx["servers"])
        if not opts.get("strict-mcp-config"):
            try:
                project = json.loads(Path(".mcp.json").read_text()).get("mcpServers", {})
                servers += [(name, entry) for name, entry in project.items()
                            if isinstance(entry, dict)]
            except (OSError, ValueError, AttributeError):
                pass
        seen: dict[str, str] = {}  # name -> source, as 2.1.332 reports it
        dynamic = len(ctx["servers"])
        for index, (name, _) in enumerate(servers):
            seen.setdefault(name, "dynamic" if index < dynamic else "project")
        skills, every_skill = file_skills()
        mode = opts.get("permission-mode", "default")
        if opts.get("dangerously-skip-permissions"):
            mode = "bypassPermissions"
        munged = re.sub(r"[^A-Za-z0-9]", "-", os.getcwd())
        event = {
            "type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": self.session_id,
            "tools": tools,
            "mcp_servers": [{"name": n, "status": "connected", **({"source": s} if LATEST else {})}
                            for n, s in seen.items()],
            "model": self.model, "permissionMode": mode,
            "slash_commands": [*every_skill, *BUILTIN_SKILLS, *BUILTIN_COMMANDS],
            "apiKeySource": "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else "none",
            "claude_code_version": VERSION, "output_style": "default",
            "agents": ctx["agent_names"], "skills": [*skills, *BUILTIN_SKILLS], "plugins": [],
            "analytics_disabled": True, "product_feedback_disabled": True,
            "uuid": str(uuid.uuid4()),
            "memory_paths": {"auto": f"{config_dir()}/projects/{munged}/memory/"},
            "fast_mode_state": "off",
        }
        event.update(overrides)
        return event

    def assistant(self, block: dict[str, Any]) -> None:
        if not self.turn_open:
            if self.max_turns is not None and self.turns >= self.max_turns:
                self.finish_max_turns()
            self.turns += 1
            self.turn_open = True
            self.turn_texts = []
            self.message_id = rand_id("msg_01")
        self.emit({"type": "assistant", "message": {
            "id": self.message_id, "type": "message", "role": "assistant",
            "model": self.message_model, "content": [block], "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0},
            "context_management": None},
            "parent_tool_use_id": None, "session_id": self.session_id,
            "uuid": str(uuid.uuid4()), "request_id": rand_id("req_01")})

    def tool_result(self, spec: dict[str, Any]) -> None:
        tool_use_id = spec.get("tool_use_id", self.last_tool_use_id)
        if tool_use_id is None:
            raise script_error("tool_result without an earlier tool_use")
        content = spec.get("content", "")
        block: dict[str, Any] = {"tool_use_id": tool_use_id, "type": "tool_result",
                                 "content": content}
        if spec.get("is_error"):
            block["is_error"] = True
        self.turn_open = False
        self.emit({"type": "user", "message": {"role": "user", "content": [block]},
                   "parent_tool_use_id": None, "session_id": self.session_id,
                   "uuid": str(uuid.uuid4()), "timestamp": now_iso(),
                   "tool_use_result": f"Error: {content}" if spec.get("is_error") else content})

    def usage(self) -> dict[str, Any]:
        usage = zero_usage()
        usage.update(input_tokens=100 * max(self.turns, 1), output_tokens=20 * max(self.turns, 1))
        return usage

    def durations(self) -> tuple[int, int]:
        """(this turn's ms, the process's API ms so far): ``duration_ms`` is per turn,
        ``duration_api_ms`` adds up over the turns."""
        elapsed = max(1, int((time.monotonic() - self.turn_started) * 1000))
        return elapsed, self.api_ms + max(1, elapsed // 2)

    def add_turn(self, cost: float, usage: dict[str, Any], api_ms: int) -> None:
        """Add a finished turn to the process's totals."""
        self.total_cost, self.api_ms = cost, api_ms
        for key in self.total_tokens:
            value = usage.get(key, 0)
            self.total_tokens[key] += value if isinstance(value, int) else 0

    def result(self, step: dict[str, Any]) -> None:
        overrides = step["result"]
        duration, api = self.durations()
        usage = self.usage()
        turn_cost = step.get("turn_cost_usd", DEFAULT_TURN_COST)
        event: dict[str, Any] = {
            "type": "result", "subtype": "success", "is_error": False, "api_error_status": None,
            "duration_ms": duration, "duration_api_ms": api, "ttft_ms": api, "ttft_stream_ms": api,
            "time_to_request_ms": 0, "num_turns": max(self.turns, 1),
            "result": "".join(self.turn_texts), "stop_reason": "end_turn",
            "session_id": self.session_id, "total_cost_usd": self.total_cost + turn_cost,
            "usage": usage,
            "modelUsage": {}, "permission_denials": list(self.denials),
            "terminal_reason": "completed",
            "fast_mode_state": "off", "uuid": str(uuid.uuid4())}
        event.update(overrides)
        cost = event.get("total_cost_usd")
        self.add_turn(cost if isinstance(cost, (int, float)) else self.total_cost,
                      event["usage"] if isinstance(event["usage"], dict) else {}, api)
        if "modelUsage" not in overrides:
            event["modelUsage"] = model_usage(self.model, self.total_tokens, self.total_cost)
        budget = self.opts.get("max-budget-usd")
        if budget is not None and self.total_cost > js_number_parse(budget):
            self.over_budget = True
            self.emit_result(self.budget_result(duration, "end_turn"))
            self.exit_code = 1
            raise TurnOver
        self.emit_result(event)
        if "exit" in step:
            self.exit_code = int(step["exit"])
        else:
            self.exit_code = 1 if event.get("is_error") else 0

    def budget_result(self, duration: int, stop_reason: str | None) -> dict[str, Any]:
        """``error_max_budget_usd``: the process's spend went over ``--max-budget-usd``."""
        over = error_result(
            "error_max_budget_usd", self.session_id, max(self.turns, 1),
            [f"Reached maximum budget (${self.budget_text()})"],
            duration_ms=duration, duration_api_ms=self.api_ms, stop_reason=stop_reason,
            total_cost_usd=self.total_cost,
            modelUsage=model_usage(self.model, self.total_tokens, self.total_cost))
        if LATEST:
            over["terminal_reason"] = "budget_exhausted"
        else:
            over.pop("terminal_reason")  # none in 2.1.197
        return over

    def finish_max_turns(self) -> NoReturn:
        duration, api = self.durations()
        usage = self.usage()
        self.add_turn(self.total_cost + DEFAULT_TURN_COST, usage, api)
        self.emit_result(error_result(
            "error_max_turns", self.session_id, self.turns + 1,
            [f"Reached maximum number of turns ({self.max_turns})"], duration_ms=duration,
            duration_api_ms=api, stop_reason="tool_use", total_cost_usd=self.total_cost,
            usage=usage, modelUsage=model_usage(self.model, self.total_tokens, self.total_cost),
            terminal_reason="max_turns"))
        self.exit_code = 1
        raise TurnOver

    def interrupted(self) -> None:
        """SIGINT during the run: what 2.1.197 prints (exit code 0)."""
        if STATE["interrupting"]:
            return
        STATE["interrupting"] = True
        if not STATE["result_emitted"]:
            self.emit({"type": "user", "message": {"role": "user", "content": [
                {"type": "text", "text": "[Request interrupted by user]"}]},
                "parent_tool_use_id": None, "session_id": self.session_id,
                "uuid": str(uuid.uuid4()), "timestamp": now_iso()})
            self.emit_result(error_result(
                "error_during_execution", self.session_id, self.turns + 1,
                ["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null"],
                duration_ms=self.durations()[0], terminal_reason="aborted_streaming"))
        finish(0)

    # ---- script
    def run(self, script: list[dict[str, Any]]) -> NoReturn:
        """Play the first turn; with stream-json input, every further user message is one
        more turn of the same session, until stdin closes."""
        self.play(script)
        while self.opts.get("input-format") == "stream-json":
            prompt = next_user_message()
            if prompt is None:
                break
            record_turn(prompt)
            self.new_turn()
            if self.over_budget:  # the CLI answers at once, without asking the model
                self.emit(self.init_event({}))
                self.emit_result(self.budget_result(self.durations()[0], None))
                continue
            self.play(turn_script(prompt))
        finish(self.exit_code)

    def play(self, script: list[dict[str, Any]]) -> None:
        """One turn's steps; a limit reached ends the turn early."""
        with contextlib.suppress(TurnOver):
            self.steps(script)

    def steps(self, script: list[dict[str, Any]]) -> None:
        for step in script:
            action = step_action(step)
            value = step[action]
            if action == "init":
                self.emit(self.init_event(value))
            elif action == "text":
                self.assistant({"type": "text", "text": str(value)})
                self.turn_texts.append(str(value))
            elif action == "tool_use":
                self.last_tool_use_id = value.get("id") or rand_id("toolu_01")
                self.assistant({"type": "tool_use", "id": self.last_tool_use_id,
                                "name": value["name"], "input": value.get("input", {})})
                self.denied = self.permission(value["name"], value.get("input", {}))
            elif action == "tool_result":
                if self.denied is not None:
                    value = {"content": self.denied, "is_error": True}
                    self.denied = None
                self.tool_result(value)
            elif action == "result":
                self.result(step)
            elif action == "raw":
                write(sys.stdout, f"{value}\n")
            elif action == "stderr":
                write(sys.stderr, f"{value}\n")
            elif action == "sleep":
                time.sleep(float(value))
            elif action == "until":
                while not Path(value).exists():
                    time.sleep(0.01)
            elif action == "exit":
                finish(int(value))
            elif action == "crash":
                crash(value)
            elif action == "hang":
                if value == "ignore_term":
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                while True:
                    time.sleep(3600)
            elif action == "spawn":
                spawn_sleeper(leave_group=value == "setsid_sleeper")
            elif action == "write" and self.denied is None:  # a denied tool writes nothing
                target = Path(os.getcwd()) / value["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(value["content"])

    def permission(self, name: str, tool_input: dict[str, Any]) -> str | None:
        """Ask the runner on stdin when the tool needs permission; why it was denied, or None."""
        opts = self.opts
        if opts.get("permission-prompt-tool") != "stdio" or not (
                name in PROMPTED_TOOLS or name.startswith("mcp__")):
            return None
        if opts.get("permission-mode") == "bypassPermissions" or name in split_list(
                opts.get("allowed-tools")) or name in split_list(opts.get("disallowed-tools")):
            return None
        request_id = str(uuid.uuid4())
        write(sys.stdout, dumps({"type": "control_request", "request_id": request_id, "request": {
            "subtype": "can_use_tool", "tool_name": name, "display_name": name,
            "input": tool_input, "description": tool_input.get("description", name),
            "permission_suggestions": [], "tool_use_id": self.last_tool_use_id}}) + "\n")
        response = wait_for_permission(request_id)
        answer = response.get("response") if response.get("subtype") == "success" else None
        why = permission_refusal(answer)
        if why is not None:
            self.denials.append({"tool_name": name, "tool_use_id": self.last_tool_use_id,
                                 "tool_input": tool_input})
        return why


def permission_refusal(answer: Any) -> str | None:
    """None when ``answer`` allows the tool, else the tool_result text 2.1.197 gives."""
    if isinstance(answer, dict) and answer.get("behavior") == "allow" and isinstance(
            answer.get("updatedInput"), dict):
        return None
    if isinstance(answer, dict) and answer.get("behavior") == "deny" and isinstance(
            answer.get("message"), str):
        return answer["message"]
    return ("Tool permission request failed: ZodError: [\n  {\n    \"code\": \"invalid_union\","
            "\n    \"message\": \"Invalid input\"\n  }\n]")


def crash(name: str | int) -> NoReturn:
    if isinstance(name, int) or str(name).isdigit():
        number = int(name)
    else:
        text = str(name).upper()
        number = int(getattr(signal, text if text.startswith("SIG") else "SIG" + text))
    sys.stdout.flush()
    if number not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    time.sleep(5)  # a signal whose default action is not to terminate
    finish(70)


def spawn_sleeper(*, leave_group: bool = False) -> None:
    import subprocess  # only here: it is slow to import

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True,
                             preexec_fn=_leave_group_ignoring_sigterm if leave_group else None)
    STATE["children"].append(child)  # keep a reference: never waited for
    folder = os.environ.get("FAKE_CLAUDE_RECORD_DIR")
    if folder:
        with open(Path(folder) / f"{os.getpid()}.children", "a") as f:
            f.write(f"{child.pid}\n")


def _leave_group_ignoring_sigterm() -> None:
    # Runs in the forked child before exec: an ignored signal stays ignored across exec.
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> NoReturn:
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)  # last: a SIGTERM handler means both are in place
    try:
        opts, operands = parse_argv(sys.argv[1:])
        ctx = validate_before_stdin(opts)
        if opts.get("input-format") == "stream-json":
            stdin = read_stream_json_start(opts)
        else:
            stdin = read_stdin()
        STATE["stdin"] = stdin
        record(stdin)
        prompt = validate_after_stdin(opts, ctx, stdin, operands)
        if opts.get("input-format") == "stream-json" and not operands and not any(
                isinstance(f, dict) and f.get("type") == "user" for f in frames(stdin)):
            finish(0)  # stdin closed before any user message: both versions print nothing
        if prompt.strip() == "" and LATEST:
            raise Exit(1, "Error: Input contained only whitespace. Provide a prompt with text "
                          "through stdin or as a prompt argument when using --print\n")
        if prompt.strip() == "":
            # Whitespace only: 2.1.197 sends nothing to the model; stream-json prints nothing.
            if opts.get("output-format") == "stream-json":
                finish(0)
            raise Exit(1, "Error: No messages returned from query\n")
        record_turn(prompt)
        script = turn_script(prompt)
        run = STATE["run"] = Run(opts, ctx, prompt)
        run.run(script)
    except Exit as exc:
        if exc.stdout:
            write(sys.stdout, exc.stdout)
        if exc.stderr:
            write(sys.stderr, exc.stderr)
        finish(exc.code)


if __name__ == "__main__":
    main()
