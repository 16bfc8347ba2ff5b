"""Concurrency and queue limits: at most N children at once, at most Q calls waiting.

One ``anyio.CapacityLimiter`` for the whole bridge (FIFO), plus one per tool and one
per client that has its own ``max_concurrency``; a call takes its tool's token, then
its client's, then the bridge's (always in that order, so no two calls deadlock).
Both limiters share one queue: a call that cannot start at once waits in it,
whichever limiter holds it back, is told its position each time the queue moves,
and is refused at once when ``max_queue`` calls are already waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import anyio

from .errors import QueueFull

__all__ = ["OnQueued", "QueueFull", "Slots"]

OnQueued = Callable[[int], Awaitable[None]]


class Slots:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        self._max_queue = max_queue
        self._waiting: list[object] = []
        """Calls that could not start at once, in arrival order, whichever limiter they
        wait for; a call's position is its place here."""
        self._moved = anyio.Event()
        self._shares: dict[tuple[str, str], anyio.CapacityLimiter] = {}
        """The limiters of tools and clients with their own max_concurrency."""

    @property
    def running(self) -> int:
        return self._limiter.borrowed_tokens

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @asynccontextmanager
    async def slot(
        self, tool: str, tool_concurrency: int | None, on_queued: OnQueued,
        client: tuple[str, int | None] | None = None,
    ) -> AsyncIterator[None]:
        """Hold a slot for the body; raises ``QueueFull`` when the call cannot even wait.
        ``client`` is (name, its max_concurrency) for a client's call."""
        token = object()
        shares = [self._share(("tool", tool), tool_concurrency)]
        if client is not None:
            shares.append(self._share(("client", client[0]), client[1]))
        limiters = [*(s for s in shares if s is not None), self._limiter]
        held: list[anyio.CapacityLimiter] = []
        try:
            # No await between the check and taking the tokens or a place in the queue,
            # so concurrent calls see each other's effect.
            if all(_free(limiter) for limiter in limiters):
                for limiter in limiters:
                    limiter.acquire_on_behalf_of_nowait(token)
                    held.append(limiter)
            elif len(self._waiting) >= self._max_queue:
                raise QueueFull(self.running, self.waiting)
            else:
                await self._wait(token, limiters, held, on_queued)
            yield
        finally:
            for limiter in reversed(held):
                limiter.release_on_behalf_of(token)

    def _share(self, key: tuple[str, str], limit: int | None) -> anyio.CapacityLimiter | None:
        if limit is None:
            return None
        limiter = self._shares.get(key)
        if limiter is None:
            limiter = self._shares[key] = anyio.CapacityLimiter(limit)
        elif limiter.total_tokens != limit:
            # Resize in place: a new limiter would forget the calls holding the old one.
            limiter.total_tokens = limit
        return limiter

    async def _wait(
        self, token: object, limiters: Sequence[anyio.CapacityLimiter],
        held: list[anyio.CapacityLimiter], on_queued: OnQueued,
    ) -> None:
        """Queue for every limiter in order, appending each one taken to ``held``."""
        self._waiting.append(token)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._tell_position, token, on_queued)
                for limiter in limiters:
                    await limiter.acquire_on_behalf_of(token)
                    held.append(limiter)
                tg.cancel_scope.cancel()
        finally:
            self._waiting.remove(token)
            self._moved.set()
            self._moved = anyio.Event()

    async def _tell_position(self, token: object, on_queued: OnQueued) -> None:
        told = 0
        while True:
            position = self._waiting.index(token) + 1
            if position != told:
                told = position
                await on_queued(position)
            await self._moved.wait()


def _free(limiter: anyio.CapacityLimiter) -> bool:
    """A token can be taken now without passing anyone already waiting for one."""
    return limiter.available_tokens >= 1 and limiter.statistics().tasks_waiting == 0
