"""A call's progress: human messages out, plus what a heartbeat needs to know.

Where the messages go is the caller's business (an MCP session, a job's recent events,
a test report): ``Progress`` only takes a ``say`` function.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from .events import Event, ProgressNarrator

Say = Callable[[str], Awaitable[None]]


class Progress:
    """Narrates a call's events and queue position, and keeps the client's timeout at bay."""

    def __init__(self, say: Say) -> None:
        self._say = say
        self._narrator = ProgressNarrator()
        self.last_said = time.monotonic()
        self.last_activity = "waiting to start"

    async def say(self, message: str, *, activity: bool = True) -> None:
        self.last_said = time.monotonic()
        if activity:
            self.last_activity = message
        await self._say(message)

    async def on_event(self, event: Event) -> None:
        message = self._narrator.describe(event)
        if message:
            await self.say(message)

    async def queued(self, position: int) -> None:
        await self.say(f"queued, position {position}")

    async def heartbeat(self, every_s: float, began: float) -> None:
        """Say something at least every ``every_s`` while the call runs (clients reset their
        timeouts on progress), with the elapsed time and the last thing the agent did."""
        while True:
            quiet_for = time.monotonic() - self.last_said
            if quiet_for < every_s:
                await anyio.sleep(every_s - quiet_for)
                continue
            elapsed = time.monotonic() - began
            await self.say(f"still working ({elapsed:.0f}s); last: {self.last_activity}",
                           activity=False)
