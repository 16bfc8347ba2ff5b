"""A call's progress: human messages out, plus what a heartbeat needs to know.

Where the messages go is the caller's business (an MCP session, a job's recent events,
a test report): ``Progress`` only takes a ``say`` function.

With a ``gap_s``, messages go out at most one per ``gap_s``: one that comes sooner waits
(a newer one replaces it) and goes out when the gap has passed, sent by the heartbeat's
task; one still waiting when the call ends is dropped, as its answer says more. The CLI
often prints several events at once (its start, its text, its result), and every
notification costs the client a message to parse and validate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import anyio

from .events import Event, ProgressNarrator

Say = Callable[[str], Awaitable[None]]


class Progress:
    """Narrates a call's events and queue position, and keeps the client's timeout at bay."""

    def __init__(self, say: Say, gap_s: float = 0.0) -> None:
        self._say = say
        self._narrator = ProgressNarrator()
        self.last_said = time.monotonic()
        self.last_activity = "waiting to start"
        self._gap_s = gap_s
        self._sent_at = -math.inf
        self._waiting: str | None = None
        self._wake = anyio.Event()

    async def say(self, message: str, *, activity: bool = True, hold: bool = True) -> None:
        """Send ``message``, or with ``hold`` keep it for the heartbeat when the last one
        went out less than the gap ago."""
        self.last_said = now = time.monotonic()
        if activity:
            self.last_activity = message
        if hold and now - self._sent_at < self._gap_s:
            self._waiting = message
            self._wake.set()
            return
        await self._send(message)

    async def _send(self, message: str) -> None:
        self._waiting = None
        self._sent_at = time.monotonic()
        await self._say(message)

    async def on_event(self, event: Event) -> None:
        message = self._narrator.describe(event)
        if message:
            await self.say(message)

    async def queued(self, position: int) -> None:
        # never held: while a call waits for its slot no heartbeat runs to send it later
        await self.say(f"queued, position {position}", hold=False)

    async def heartbeat(self, every_s: float, began: float) -> None:
        """Say something at least every ``every_s`` while the call runs (clients reset their
        timeouts on progress), with the elapsed time and the last thing the agent did; send
        a waiting message once its gap has passed."""
        while True:
            now = time.monotonic()
            if self._waiting is not None and now >= self._sent_at + self._gap_s:
                await self._send(self._waiting)
                continue
            quiet_for = now - self.last_said
            if quiet_for >= every_s:
                await self.say(f"still working ({now - began:.0f}s); last: "
                               f"{self.last_activity}", activity=False)
                continue
            wait = every_s - quiet_for
            if self._waiting is not None:
                wait = min(wait, self._sent_at + self._gap_s - now)
            self._wake = anyio.Event()
            with anyio.move_on_after(wait):
                await self._wake.wait()
