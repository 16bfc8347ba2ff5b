"""The demo calendar's store: calendars, events and a journal of tool calls in one SQLite file.

Times are local wall-clock times written ``YYYY-MM-DDTHH:MM`` (one time zone for the whole demo),
so they sort as text. Every write that checks for a conflict runs in one ``BEGIN IMMEDIATE``
transaction: two calendar servers sharing the file (one per agent in a chain) cannot double-book.
Refusals are ``CalendarError`` with a message the model can act on.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

TIME_FORMAT = "%Y-%m-%dT%H:%M"

SCHEMA = """
CREATE TABLE IF NOT EXISTS calendars (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    calendar_id TEXT NOT NULL REFERENCES calendars(id),
    title TEXT NOT NULL,
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    attendees TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
    note TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    ok INTEGER NOT NULL,
    summary TEXT NOT NULL,
    depth TEXT
);
"""

DEFAULT_CALENDARS = (("alice", "Alice Martin"), ("bob", "Bob Chen"), ("room-a", "Meeting room A"))


class CalendarError(Exception):
    """A request the calendar refuses; the message says why and what to do instead."""


@dataclass(frozen=True)
class Event:
    id: int
    calendar: str
    title: str
    start: str
    end: str
    attendees: tuple[str, ...]
    status: str
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attendees": list(self.attendees)}


@dataclass(frozen=True)
class Slot:
    start: str
    end: str


class CalendarStore:
    """One SQLite file; a new connection per operation, so it is safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, path: Path) -> CalendarStore:
        """Create the file and the default calendars when they do not exist yet."""
        store = cls(path)
        with store._connection() as db:
            db.executescript(SCHEMA)
            db.executemany("INSERT OR IGNORE INTO calendars (id, name) VALUES (?, ?)",
                           DEFAULT_CALENDARS)
        return store

    # -- reads ---------------------------------------------------------------------------------
    def calendars(self) -> list[dict[str, str]]:
        with self._connection() as db:
            rows = db.execute("SELECT id, name FROM calendars ORDER BY id").fetchall()
        return [{"id": row["id"], "name": row["name"]} for row in rows]

    def events(self, calendar: str | None = None, day: date | None = None,
               include_cancelled: bool = False) -> list[Event]:
        query, params = "SELECT * FROM events WHERE 1=1", []
        if calendar is not None:
            query += " AND calendar_id = ?"
            params.append(calendar)
        if day is not None:
            query += " AND start < ? AND end > ?"
            params += [_fmt(datetime.combine(day + timedelta(days=1), time())),
                       _fmt(datetime.combine(day, time()))]
        if not include_cancelled:
            query += " AND status = 'confirmed'"
        with self._connection() as db:
            if calendar is not None:
                _require_calendar(db, calendar)
            rows = db.execute(query + " ORDER BY start, id", params).fetchall()
        return [_event(row) for row in rows]

    def event(self, event_id: int) -> Event:
        with self._connection() as db:
            return _get_event(db, event_id)

    def free_slots(self, calendars: Sequence[str], day: date, minutes: int, earliest: time,
                   latest: time, step_minutes: int, limit: int) -> list[Slot]:
        """Start times every ``step_minutes`` from ``earliest`` where all calendars are free."""
        with self._connection() as db:
            for calendar in calendars:
                _require_calendar(db, calendar)
        busy = [e for c in calendars for e in self.events(c, day)]
        slots: list[Slot] = []
        start = datetime.combine(day, earliest)
        last_end = datetime.combine(day, latest)
        while start + timedelta(minutes=minutes) <= last_end and len(slots) < limit:
            end = start + timedelta(minutes=minutes)
            if not any(_overlaps(e, start, end) for e in busy):
                slots.append(Slot(_fmt(start), _fmt(end)))
            start += timedelta(minutes=step_minutes)
        return slots

    def journal(self) -> list[dict[str, Any]]:
        with self._connection() as db:
            rows = db.execute("SELECT * FROM journal ORDER BY id").fetchall()
        return [{**dict(row), "arguments": json.loads(row["arguments"]), "ok": bool(row["ok"])}
                for row in rows]

    # -- writes --------------------------------------------------------------------------------
    def create(self, calendar: str, title: str, start: datetime, minutes: int,
               attendees: Sequence[str] = (), note: str | None = None) -> Event:
        end = start + timedelta(minutes=minutes)
        with self._transaction() as db:
            _require_calendar(db, calendar)
            _refuse_conflict(db, calendar, start, end, ignore=None)
            cursor = db.execute(
                "INSERT INTO events (calendar_id, title, start, end, attendees, note) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (calendar, title, _fmt(start), _fmt(end), json.dumps(list(attendees)), note))
            return _get_event(db, int(cursor.lastrowid or 0))

    def move(self, event_id: int, start: datetime, minutes: int | None) -> Event:
        with self._transaction() as db:
            event = _get_event(db, event_id)
            if event.status == "cancelled":
                raise CalendarError(f"event {event_id} is cancelled; create a new event instead")
            end = start + (timedelta(minutes=minutes) if minutes else
                           parse_local(event.end) - parse_local(event.start))
            _refuse_conflict(db, event.calendar, start, end, ignore=event_id)
            db.execute("UPDATE events SET start = ?, end = ? WHERE id = ?",
                       (_fmt(start), _fmt(end), event_id))
            return _get_event(db, event_id)

    def cancel(self, event_id: int, reason: str | None) -> Event:
        with self._transaction() as db:
            event = _get_event(db, event_id)
            if event.status == "cancelled":
                raise CalendarError(f"event {event_id} is already cancelled")
            db.execute("UPDATE events SET status = 'cancelled', note = coalesce(?, note) "
                       "WHERE id = ?", (reason, event_id))
            return _get_event(db, event_id)

    def record_call(self, tool: str, arguments: Any, ok: bool, summary: str,
                    depth: str | None) -> None:
        with self._connection() as db:
            db.execute(
                "INSERT INTO journal (at, tool, arguments, ok, summary, depth) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (datetime.now().isoformat(timespec="milliseconds"), tool,
                 json.dumps(arguments, default=str), int(ok), summary, depth))

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def parse_local(text: str) -> datetime:
    """``YYYY-MM-DDTHH:MM`` -> datetime; CalendarError for a date that does not exist."""
    try:
        return datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        raise CalendarError(f"{text!r} is not a valid local time; use YYYY-MM-DDTHH:MM, "
                            "e.g. 2026-03-10T14:30") from None



def _fmt(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def _event(row: sqlite3.Row) -> Event:
    return Event(id=row["id"], calendar=row["calendar_id"], title=row["title"],
                 start=row["start"], end=row["end"], attendees=tuple(json.loads(row["attendees"])),
                 status=row["status"], note=row["note"])


def _overlaps(event: Event, start: datetime, end: datetime) -> bool:
    return event.start < _fmt(end) and event.end > _fmt(start)


def _require_calendar(db: sqlite3.Connection, calendar: str) -> None:
    if db.execute("SELECT 1 FROM calendars WHERE id = ?", (calendar,)).fetchone() is None:
        known = ", ".join(r["id"] for r in db.execute("SELECT id FROM calendars ORDER BY id"))
        raise CalendarError(f"unknown calendar {calendar!r}; known calendars: {known}")


def _get_event(db: sqlite3.Connection, event_id: int) -> Event:
    row = db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise CalendarError(f"no event with id {event_id}; list_events shows the ids")
    return _event(row)


def _refuse_conflict(db: sqlite3.Connection, calendar: str, start: datetime, end: datetime,
                     ignore: int | None) -> None:
    row = db.execute(
        "SELECT * FROM events WHERE calendar_id = ? AND status = 'confirmed' AND start < ? "
        "AND end > ? AND id IS NOT ? ORDER BY start LIMIT 1",
        (calendar, _fmt(end), _fmt(start), ignore)).fetchone()
    if row is not None:
        clash = _event(row)
        raise CalendarError(
            f"{calendar} is busy from {clash.start} to {clash.end} (event {clash.id}, "
            f"{clash.title!r}); call find_slots to pick a free time")
