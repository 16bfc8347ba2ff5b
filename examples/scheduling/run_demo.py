"""Run the scheduling demo end to end and print every hop as it happens.

    .venv/bin/python examples/scheduling/run_demo.py          # offline: real CLI, scripted model
    .venv/bin/python examples/scheduling/run_demo.py --live   # your Claude login or API key

An MCP client (this script) starts `claude-mcp-bridge serve` over stdio and calls the
`agent_scheduler` tool twice. Each call is a real `claude -p` run of the `scheduler` agent, which
talks to the calendar MCP server the bridge forwarded to it; in the second call the scheduler
hands a booking to the `calendar-clerk` agent through a second bridge (agent -> bridge -> agent
-> calendar, two levels deep). Offline, the model is a scripted Messages API on loopback
(tests/fakes/messages_api.py): the CLI, the bridges, the MCP servers and the SQLite calendar are
all real; only the model's choices are written down in advance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time as clock
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

from calendar_store import CalendarStore  # noqa: E402

from tests.fakes.messages_api import ScriptedModel, scripted_model  # noqa: E402

PINNED_CLI = REPO / ".cache" / "claude-cli" / "node_modules" / ".bin" / "claude"
DEPTH = {"scheduler": 1, "calendar-clerk": 2}


@dataclass(frozen=True)
class Scene:
    title: str
    prompt: str
    script: list[dict[str, Any]]
    """The model's turns, in the order the CLIs ask for them (offline only)."""


def next_tuesday(today: date) -> date:
    return today + timedelta(days=(1 - today.weekday()) % 7 or 7)


def tool(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_use": {"name": name, "input": arguments}}


def scenes(day: str) -> list[Scene]:
    review = {"calendar": "alice", "title": "Design review", "start": f"{day}T09:30",
              "duration_minutes": 30, "attendees": ["bob"]}
    brief = (f"Book 'Planning', 60 minutes, on calendar room-a with attendee alice, on {day}: "
             "the first slot where alice and room-a are both free.")
    return [
        Scene("one level: bridge -> scheduler -> calendar",
              f"Book a 30-minute design review for alice and bob on {day}.",
              [tool("mcp__calendar__find_slots", calendars=["alice", "bob"], date=day,
                    duration_minutes=30),
               tool("mcp__calendar__create_event", **review),
               {"text": f"Booked event 3: Design review, alice with bob, {day} 09:30-10:00."}]),
        Scene("two levels: bridge -> scheduler -> bridge -> calendar-clerk -> calendar",
              f"Book a 60-minute planning session for alice in room A on {day}, and move "
              "the design review to 14:00.",
              [tool("mcp__agents__agent_calendar-clerk", prompt=brief),
               tool("mcp__calendar__find_slots", calendars=["alice", "room-a"], date=day,
                    duration_minutes=60),
               tool("mcp__calendar__create_event", calendar="room-a", title="Planning",
                    start=f"{day}T12:00", duration_minutes=60, attendees=["alice"]),
               {"text": f"Booked event 4: Planning, room-a with alice, {day} 12:00-13:00."},
               tool("mcp__calendar__move_event", event_id=3, start=f"{day}T14:00"),
               {"text": "Event 4: Planning, room-a, 12:00-13:00 (booked by calendar-clerk). "
                        "Event 3: Design review moved to 14:00-14:30."}]),
    ]


def seed(store: CalendarStore, day: date) -> None:
    store.create("bob", "Standup", datetime.combine(day, time(9, 0)), 30)
    store.create("alice", "Focus time", datetime.combine(day, time(10, 0)), 120)


@dataclass
class Flow:
    """Prints each hop once, as the sources report it: progress of the bridge call, the model
    turns the scripted server answered, and the calendar's journal."""

    store: CalendarStore
    model: ScriptedModel | None
    agents: dict[str, str]
    """Agent name -> the first line of its body, to tell whose turn a request is."""
    started: float = field(default_factory=clock.monotonic)
    seen_turns: int = 0
    seen_journal: int = 0
    nested_cost_usd: float = 0.0
    """What the calls the agents made through a bridge cost (the top call's cost excludes it)."""

    def say(self, who: str, depth: int, text: str) -> None:
        elapsed = clock.monotonic() - self.started
        print(f"  +{elapsed:5.2f}s  {'    ' * depth}{who:<9} {text}", flush=True)

    async def on_progress(self, progress: float, total: float | None, message: str | None
                          ) -> None:
        if message:
            self.poll()  # what led to this event is older than it
            self.say("bridge", 0, message)

    def poll(self) -> None:
        if self.model is not None:
            turns = self.model.turn_requests
            for request in turns[self.seen_turns:]:
                for result in request.tool_results[-1:]:  # it came back before this turn
                    self.nested_answer(result)
                agent = self.agent_of(request.system_text)
                self.say("model", DEPTH.get(agent, 1), f"[{agent}] {describe(request.turn)}")
            self.seen_turns = len(turns)
        journal = self.store.journal()
        for row in journal[self.seen_journal:]:
            depth = int(row["depth"] or 0)
            mark = "->" if row["ok"] else "refused:"
            self.say("calendar", depth, f"{row['tool']} {mark} {row['summary']}")
        self.seen_journal = len(journal)

    def nested_answer(self, result: dict[str, Any]) -> None:
        """A bridge result coming back up the chain carries the nested call's cost."""
        try:
            answer = json.loads(str(result.get("content")))
        except ValueError:
            return
        if isinstance(answer, dict) and "cost_usd" in answer:
            self.nested_cost_usd += answer["cost_usd"] or 0
            self.say("bridge", 1, f"nested call answered: {answer['result']!r} "
                                  f"(${answer['cost_usd'] or 0:.4f}, {answer['num_turns']} turns)")

    def agent_of(self, system_text: str) -> str:
        return next((name for name, line in self.agents.items() if line in system_text), "?")

    async def watch(self) -> None:
        while True:
            self.poll()
            await anyio.sleep(0.01)


def describe(turn: dict[str, Any] | None) -> str:
    if not turn:
        return "answers"
    if "tool_use" in turn:
        call = turn["tool_use"]
        return f"calls {call['name']} {json.dumps(call['input'])}"
    return f"answers {turn.get('text', '')!r}"


def agent_first_lines() -> dict[str, str]:
    lines = {}
    for path in sorted((HERE / ".claude" / "agents").glob("*.md")):
        body = path.read_text().split("---", 2)[2].strip()
        lines[path.stem] = body.splitlines()[0]
    return lines


async def run_scenes(params: StdioServerParameters, flow: Flow, chosen: list[Scene],
                     model: ScriptedModel | None) -> None:
    async with Client(params) as client:
        for number, scene in enumerate(chosen, 1):
            print(f"\n== scene {number}: {scene.title}")
            if model is not None:
                model.add(*scene.script)
            flow.say("you", 0, f"agent_scheduler({scene.prompt!r})")
            flow.nested_cost_usd = 0.0
            show_result(await call_watched(client, flow, scene.prompt), flow.nested_cost_usd)


async def call_watched(client: Client, flow: Flow, prompt: str) -> types.CallToolResult:
    """Call the scheduler while the flow's other sources are polled."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(flow.watch)
        result = await client.call_tool("agent_scheduler", {"prompt": prompt},
                                        progress_callback=flow.on_progress)
        flow.poll()
        tg.cancel_scope.cancel()
    return result


def show_result(result: types.CallToolResult, nested_cost_usd: float) -> None:
    output = result.structured_content or {}
    text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
    cost = output.get("cost_usd") or 0.0
    print(f"  result ({'ERROR' if result.is_error else 'ok'}, {output.get('num_turns')} turns, "
          f"session {output.get('session_id')}):")
    for line in text.splitlines():
        print(f"    {line}")
    if nested_cost_usd:
        print(f"  cost: ${cost:.4f} scheduler + ${nested_cost_usd:.4f} nested calls "
              f"= ${cost + nested_cost_usd:.4f}")
    else:
        print(f"  cost: ${cost:.4f}")


def show_calendar(store: CalendarStore, day: date) -> None:
    print(f"\n== the calendar store on {day} ({store.path})")
    for event in store.events(day=day, include_cancelled=True):
        people = ", ".join(event.attendees) or "-"
        print(f"  #{event.id:<3} {event.calendar:<7} {event.start[11:]}-{event.end[11:]}  "
              f"{event.title:<14} {event.status:<10} attendees: {people}")


def find_cli(explicit: str | None, live: bool) -> Path:
    candidates = [explicit, os.environ.get("CLAUDE_MCP_BRIDGE_REAL_CLAUDE"),
                  None if live else str(PINNED_CLI), shutil.which("claude")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate).absolute()
    raise SystemExit("run_demo: no claude CLI found; install Claude Code, or run .ci/run to "
                     f"install the pinned one under {PINNED_CLI.parent}, or pass --claude PATH")


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    if keep:
        yield Path(tempfile.mkdtemp(prefix="scheduling-demo-"))
        return
    with tempfile.TemporaryDirectory(prefix="scheduling-demo-") as folder:
        yield Path(folder)


def bridge_params(claude: Path, folder: Path, store: CalendarStore,
                  model: ScriptedModel | None) -> StdioServerParameters:
    env = {
        "PYTHONPATH": str(REPO),
        "CLAUDE_MCP_BRIDGE_CLAUDE_BIN": str(claude),
        "CLAUDE_MCP_BRIDGE_DATA_DIR": str(folder / "bridge-data"),
        "CALENDAR_DB": str(store.path),
    }
    if model is None:  # live: your environment, with your login or ANTHROPIC_API_KEY
        env = {**os.environ, **env}
    else:  # offline: a home of its own and the scripted model, nothing of your account
        (folder / "home" / ".claude").mkdir(parents=True, exist_ok=True)
        env.update(PATH=os.environ.get("PATH", ""), **model.cli_env(str(folder / "home")))
        # The CLI waits for alwaysLoad servers 5 s by default; a busy machine needs longer.
        env["MCP_CONNECT_TIMEOUT_MS"] = "30000"
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "claude_mcp_bridge", "serve", "--project-dir", str(HERE),
              "--strict-mcp-config", "--mcp-config", str(HERE / "delegate.mcp.json"),
              "--log-level", "WARNING"],
        env=env)


def show_usage(params: StdioServerParameters) -> None:
    print("\n== the ledger both bridges share (claude-mcp-bridge usage)")
    done = subprocess.run([sys.executable, "-m", "claude_mcp_bridge", "usage", "--since", "1h",
                           "--log-level", "WARNING"],
                          env=params.env, capture_output=True, text=True, check=False)
    print("  " + (done.stdout or done.stderr).strip().replace("\n", "\n  "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--live", action="store_true",
                        help="use the real model (your Claude login or ANTHROPIC_API_KEY); "
                             "costs a few cents")
    parser.add_argument("--claude", help="the claude executable (default: the pinned one "
                                         "under .cache/, else claude on PATH)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    claude = find_cli(args.claude, args.live)
    day = next_tuesday(date.today())
    chosen = scenes(day.isoformat())
    print(f"claude: {claude}\nmodel:  {'live' if args.live else 'scripted, on loopback'}")
    print("Each line: seconds since start, who, what. Indented one step per hop down the chain:\n"
          "bridge = progress of the call this script made; model = a model turn of the agent\n"
          "in [brackets]; calendar = a row the calendar server wrote to its journal table.")
    with ExitStack() as stack:
        folder = stack.enter_context(workdir(args.keep))
        store = CalendarStore.open(folder / "calendar.sqlite3")
        seed(store, day)
        model = None if args.live else stack.enter_context(scripted_model())
        params = bridge_params(claude, folder, store, model)
        flow = Flow(store, model, agent_first_lines())
        anyio.run(run_scenes, params, flow, chosen, model)
        show_calendar(store, day)
        show_usage(params)
        if args.keep:
            print(f"\nkept {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
