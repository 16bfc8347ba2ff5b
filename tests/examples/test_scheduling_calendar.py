"""The scheduling demo's calendar server (examples/scheduling/calendar_server.py), in memory
through the SDK's client, in both protocol eras."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from mcp import Client, MCPError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scheduling"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
calendar_server = importlib.import_module("calendar_server")
calendar_store = importlib.import_module("calendar_store")

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["auto", "legacy"])
def mode(request):
    return request.param


@pytest.fixture
def store(tmp_path):
    return calendar_store.CalendarStore.open(tmp_path / "calendar.sqlite3")


async def calls(store, *requests, mode="auto", depth="1"):
    async with Client(calendar_server.create_server(store, depth), mode=mode) as client:
        return [await client.call_tool(name, arguments) for name, arguments in requests]


def payload(result):
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def test_the_tools_and_their_schemas(store, mode):
    async with Client(calendar_server.create_server(store), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert list(tools) == ["list_calendars", "list_events", "find_slots", "create_event",
                           "move_event", "cancel_event"]
    create = tools["create_event"].input_schema
    assert create["required"] == ["calendar", "title", "start", "duration_minutes"]
    assert create["additionalProperties"] is False
    assert create["properties"]["duration_minutes"]["maximum"] == 480
    assert tools["find_slots"].annotations.read_only_hint is True
    assert tools["cancel_event"].annotations.destructive_hint is True


async def test_find_slots_skips_what_anyone_has_booked(store, mode):
    [booked, found, calendars] = await calls(
        store,
        ("create_event", {"calendar": "bob", "title": "Standup", "start": "2026-03-10T09:00",
                          "duration_minutes": 45}),
        ("find_slots", {"calendars": ["alice", "bob"], "date": "2026-03-10",
                        "duration_minutes": 60, "limit": 2}),
        ("list_calendars", {}),
        mode=mode)
    assert payload(booked)["event"]["id"] == 1
    assert payload(found)["slots"] == [{"start": "2026-03-10T10:00", "end": "2026-03-10T11:00"},
                                       {"start": "2026-03-10T10:30", "end": "2026-03-10T11:30"}]
    assert [c["id"] for c in payload(calendars)["calendars"]] == ["alice", "bob", "room-a"]


async def test_create_move_and_cancel_change_the_store(store):
    [created, moved, cancelled, listed] = await calls(
        store,
        ("create_event", {"calendar": "alice", "title": " 1:1 ", "start": "2026-03-10T14:00",
                          "duration_minutes": 30, "attendees": ["bob"]}),
        ("move_event", {"event_id": 1, "start": "2026-03-11T09:00"}),
        ("cancel_event", {"event_id": 1, "reason": "bob is away"}),
        ("list_events", {"calendar": "alice", "date": "2026-03-11"}))
    assert payload(created)["event"]["title"] == "1:1"
    assert payload(moved)["event"]["end"] == "2026-03-11T09:30"  # the length is kept
    assert payload(cancelled)["event"]["status"] == "cancelled"
    assert payload(listed)["events"] == []
    [event] = store.events(include_cancelled=True)
    assert (event.start, event.status, event.note) == ("2026-03-11T09:00", "cancelled",
                                                       "bob is away")


@pytest.mark.parametrize(("name", "arguments", "message"), [
    ("create_event", {"calendar": "alice", "title": "x", "start": "2026-03-10 09:00",
                      "duration_minutes": 30}, "invalid arguments: start: String should match"),
    ("create_event", {"calendar": "alice", "title": "x", "start": "2026-02-30T09:00",
                      "duration_minutes": 30}, "'2026-02-30T09:00' is not a valid local time"),
    ("create_event", {"calendar": "alice", "title": "   ", "start": "2026-03-10T09:00",
                      "duration_minutes": 30}, "title: Value error, must not be blank"),
    ("create_event", {"calendar": "alice", "title": "x", "start": "2026-03-10T09:00",
                      "duration_minutes": "30"}, "duration_minutes: Input should be a valid"),
    ("create_event", {"calendar": "alice", "title": "x", "start": "2026-03-10T09:00",
                      "duration_minutes": 600}, "duration_minutes: Input should be less than"),
    ("create_event", {"calendar": "carol", "title": "x", "start": "2026-03-10T09:00",
                      "duration_minutes": 30},
     "unknown calendar 'carol'; known calendars: alice, bob, room-a"),
    ("create_event", {"calendar": "alice", "title": "x", "start": "2026-03-10T09:00",
                      "duration_minutes": 30, "room": "a"}, "room: Extra inputs are not permitted"),
    ("find_slots", {"calendars": [], "date": "2026-03-10", "duration_minutes": 30},
     "calendars: List should have at least 1 item"),
    ("find_slots", {"calendars": ["alice"], "date": "2026-03-10", "duration_minutes": 30,
                    "earliest": "15:00", "latest": "09:00"},
     "earliest (15:00) must be before latest (09:00)"),
    ("move_event", {"event_id": 7, "start": "2026-03-10T09:00"},
     "no event with id 7; list_events shows the ids"),
    ("cancel_event", {}, "event_id: Field required"),
])
async def test_bad_requests_are_tool_errors_that_say_what_to_do(store, mode, name, arguments,
                                                                 message):
    [result] = await calls(store, (name, arguments), mode=mode)
    assert result.is_error
    assert message in result.content[0].text
    [entry] = store.journal()
    assert (entry["tool"], entry["ok"], entry["arguments"]) == (name, False, arguments)


async def test_a_clash_is_refused_and_names_the_event_in_the_way(store):
    clash = {"calendar": "alice", "title": "Late", "start": "2026-03-10T09:15",
             "duration_minutes": 30}
    [first, second, moved_onto] = await calls(
        store,
        ("create_event", {"calendar": "alice", "title": "Standup", "start": "2026-03-10T09:00",
                          "duration_minutes": 30}),
        ("create_event", clash),
        ("move_event", {"event_id": 1, "start": "2026-03-10T09:00", "duration_minutes": 60}))
    assert not first.is_error and not moved_onto.is_error  # an event never clashes with itself
    assert second.is_error
    assert second.content[0].text == (
        "alice is busy from 2026-03-10T09:00 to 2026-03-10T09:30 (event 1, 'Standup'); "
        "call find_slots to pick a free time")
    assert [e.title for e in store.events("alice")] == ["Standup"]


async def test_the_journal_records_each_call_with_the_bridge_depth(store):
    await calls(store, ("list_calendars", {}), ("cancel_event", {"event_id": 1}), depth="2")
    assert [(j["tool"], j["ok"], j["depth"]) for j in store.journal()] == [
        ("list_calendars", True, "2"), ("cancel_event", False, "2")]


async def test_an_unknown_tool_is_a_protocol_error(store, mode):
    async with Client(calendar_server.create_server(store), mode=mode) as client:
        with pytest.raises(MCPError, match="unknown tool 'delete_everything'"):
            await client.call_tool("delete_everything", {})
