"""A small calendar MCP server (stdio) for the scheduling demo.

    python3 calendar_server.py --db calendar.sqlite3
    CALENDAR_DB=calendar.sqlite3 python3 calendar_server.py

Tools: list_calendars, list_events, find_slots, create_event, move_event, cancel_event. Every
argument is validated (pydantic models, whose JSON schemas are the published input schemas); a
bad argument or a refused request (unknown calendar, a clash, a cancelled event) is a tool result
with ``isError`` and a message that says what to do, never a protocol error. Every call, refused
ones included, is written to the store's ``journal`` table with the bridge depth it came from
(``CLAUDE_MCP_BRIDGE_DEPTH`` of the ``claude`` process that started this server).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any

import anyio
import mcp_types as types
from calendar_store import CalendarError, CalendarStore, parse_local
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

logger = logging.getLogger("calendar")

LocalTime = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$",
                                 description="Local time, YYYY-MM-DDTHH:MM, e.g. 2026-03-10T14:30")]
Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="A day, YYYY-MM-DD")]
ClockTime = Annotated[str, Field(pattern=r"^\d{2}:\d{2}$", description="A time of day, HH:MM")]
CalendarId = Annotated[str, Field(min_length=1, max_length=64,
                                  description="A calendar id from list_calendars")]
Minutes = Annotated[int, Field(ge=5, le=480, description="Length in minutes (5-480)")]
EventId = Annotated[int, Field(ge=1, description="An event id from create_event or list_events")]


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ListCalendars(_Arguments):
    pass


class ListEvents(_Arguments):
    calendar: CalendarId
    date: Day


class FindSlots(_Arguments):
    calendars: Annotated[list[CalendarId], Field(min_length=1, max_length=10,
                                                 description="Everyone who must be free")]
    date: Day
    duration_minutes: Minutes
    earliest: ClockTime = "09:00"
    latest: ClockTime = "17:00"
    step_minutes: Annotated[int, Field(ge=5, le=240)] = 30
    limit: Annotated[int, Field(ge=1, le=20)] = 5


class CreateEvent(_Arguments):
    calendar: CalendarId
    title: Annotated[str, Field(min_length=1, max_length=200)]
    start: LocalTime
    duration_minutes: Minutes
    attendees: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]],
                         Field(max_length=50)] = []
    note: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class MoveEvent(_Arguments):
    event_id: EventId
    start: LocalTime
    duration_minutes: Minutes | None = Field(
        default=None, description="New length; default: keep the current length")


class CancelEvent(_Arguments):
    event_id: EventId
    reason: Annotated[str, Field(max_length=500)] | None = None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CalendarError(f"{text!r} is not a valid day; use YYYY-MM-DD") from None


def _clock(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise CalendarError(f"{text!r} is not a valid time of day; use HH:MM") from None


def list_calendars(store: CalendarStore, args: ListCalendars) -> dict[str, Any]:
    return {"calendars": store.calendars()}


def list_events(store: CalendarStore, args: ListEvents) -> dict[str, Any]:
    events = store.events(args.calendar, _day(args.date))
    return {"calendar": args.calendar, "date": args.date, "events": [e.as_dict() for e in events]}


def find_slots(store: CalendarStore, args: FindSlots) -> dict[str, Any]:
    earliest, latest = _clock(args.earliest), _clock(args.latest)
    if earliest >= latest:
        raise CalendarError(f"earliest ({args.earliest}) must be before latest ({args.latest})")
    slots = store.free_slots(args.calendars, _day(args.date), args.duration_minutes, earliest,
                             latest, args.step_minutes, args.limit)
    return {"calendars": args.calendars, "date": args.date,
            "slots": [asdict(slot) for slot in slots]}


def create_event(store: CalendarStore, args: CreateEvent) -> dict[str, Any]:
    event = store.create(args.calendar, args.title, parse_local(args.start),
                         args.duration_minutes, args.attendees, args.note)
    return {"event": event.as_dict()}


def move_event(store: CalendarStore, args: MoveEvent) -> dict[str, Any]:
    event = store.move(args.event_id, parse_local(args.start), args.duration_minutes)
    return {"event": event.as_dict()}


def cancel_event(store: CalendarStore, args: CancelEvent) -> dict[str, Any]:
    return {"event": store.cancel(args.event_id, args.reason).as_dict()}


@dataclass(frozen=True)
class ToolSpec:
    arguments: type[_Arguments]
    run: Callable[[CalendarStore, Any], dict[str, Any]]
    description: str
    read_only: bool


TOOLS: dict[str, ToolSpec] = {
    "list_calendars": ToolSpec(ListCalendars, list_calendars,
                               "List the calendars (people and rooms) with their ids.", True),
    "list_events": ToolSpec(ListEvents, list_events,
                            "List the confirmed events of one calendar on one day.", True),
    "find_slots": ToolSpec(FindSlots, find_slots,
                           "Find start times on a day when every given calendar is free for the "
                           "whole duration (default window 09:00-17:00, every 30 minutes).", True),
    "create_event": ToolSpec(CreateEvent, create_event,
                             "Create an event on a calendar; refused when it clashes with an "
                             "event there. Returns the event with its id.", False),
    "move_event": ToolSpec(MoveEvent, move_event,
                           "Move an event to a new start time (and optionally a new length); "
                           "refused when the new time clashes.", False),
    "cancel_event": ToolSpec(CancelEvent, cancel_event,
                             "Cancel an event (it stays in the store as cancelled).", False),
}


def tool_list() -> list[types.Tool]:
    return [
        types.Tool(
            name=name, description=spec.description,
            input_schema=spec.arguments.model_json_schema(),
            annotations=types.ToolAnnotations(read_only_hint=spec.read_only,
                                              destructive_hint=not spec.read_only,
                                              open_world_hint=False))
        for name, spec in TOOLS.items()
    ]


def invalid_arguments(exc: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in exc.errors(include_url=False)]
    return "invalid arguments: " + "; ".join(problems)


def run_tool(store: CalendarStore, spec: ToolSpec, arguments: dict[str, Any]
             ) -> tuple[dict[str, Any] | None, str]:
    """(payload, summary) on success, (None, message) when the call is refused."""
    try:
        payload = spec.run(store, spec.arguments.model_validate(arguments))
    except ValidationError as exc:
        return None, invalid_arguments(exc)
    except CalendarError as exc:
        return None, str(exc)
    return payload, _summary(payload)


def _summary(payload: dict[str, Any]) -> str:
    if "event" in payload:
        e = payload["event"]
        return (f"event {e['id']} {e['status']}: {e['title']!r} on {e['calendar']} "
                f"{e['start']}-{e['end'][11:]}")
    if "slots" in payload:
        return f"{len(payload['slots'])} free slots"
    if "events" in payload:
        return f"{len(payload['events'])} events"
    return f"{len(payload.get('calendars', []))} calendars"


def create_server(store: CalendarStore, depth: str | None = None) -> Server[Any]:
    async def on_list_tools(ctx: ServerRequestContext[Any],
                            params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def on_call_tool(ctx: ServerRequestContext[Any],
                           params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = TOOLS.get(params.name)
        if spec is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown tool {params.name!r}")
        arguments = dict(params.arguments or {})
        payload, summary = await anyio.to_thread.run_sync(run_tool, store, spec, arguments)
        await anyio.to_thread.run_sync(store.record_call, params.name, arguments,
                                       payload is not None, summary, depth)
        logger.info("%s %s: %s", params.name, "ok" if payload is not None else "refused", summary)
        if payload is None:
            return types.CallToolResult(content=[types.TextContent(type="text", text=summary)],
                                        is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(payload))],
            structured_content=payload)

    return Server("calendar", version="0.1.0", title="Demo calendar",
                  instructions="Times are local, written YYYY-MM-DDTHH:MM. Use find_slots "
                               "before create_event.",
                  on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve(store: CalendarStore, depth: str | None) -> None:
    server = create_server(store, depth)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The scheduling demo's calendar (MCP, stdio).")
    parser.add_argument("--db", type=Path, default=Path(os.environ.get("CALENDAR_DB") or
                                                         "calendar.sqlite3"),
                        help="SQLite file (default: $CALENDAR_DB, else calendar.sqlite3)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s calendar: %(message)s")
    store = CalendarStore.open(args.db.expanduser())
    anyio.run(serve, store, os.environ.get("CLAUDE_MCP_BRIDGE_DEPTH"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
