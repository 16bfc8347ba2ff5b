"""Concurrency and queue limits: at most N children at once, at most Q calls waiting.

One ``anyio.CapacityLimiter`` for the whole bridge (FIFO), plus one per tool that
has its own ``max_concurrency``. A waiting call is told its position in the queue
each time it moves; a call that would make the queue longer than ``max_queue`` is
refused at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

OnQueued = Callable[[int], Awaitable[None]]


class QueueFull(Exception):
    def __init__(self, running: int, waiting: int) -> None:
        self.running = running
        self.waiting = waiting
        super().__init__(
            f"the bridge is busy: {running} calls running and {waiting} waiting (the queue is "
            "full); retry later, or raise [limits] max_queue / max_concurrency")


class Slots:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        self._max_queue = max_queue
        self._waiting: list[object] = []
        self._moved = anyio.Event()
        self._per_tool: dict[str, anyio.CapacityLimiter] = {}

    @property
    def running(self) -> int:
        return self._limiter.borrowed_tokens

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @asynccontextmanager
    async def slot(
        self, tool: str, tool_concurrency: int | None, on_queued: OnQueued
    ) -> AsyncIterator[None]:
        """Hold a slot for the body; raises ``QueueFull`` when the call cannot even wait."""
        token = object()
        if self._limiter.available_tokens < 1 and len(self._waiting) >= self._max_queue:
            raise QueueFull(self.running, self.waiting)
        tool_limiter = self._tool_limiter(tool, tool_concurrency)
        if tool_limiter is not None:
            await tool_limiter.acquire_on_behalf_of(token)
        try:
            await self._acquire(token, on_queued)
            try:
                yield
            finally:
                self._limiter.release_on_behalf_of(token)
        finally:
            if tool_limiter is not None:
                tool_limiter.release_on_behalf_of(token)

    def _tool_limiter(self, tool: str, limit: int | None) -> anyio.CapacityLimiter | None:
        if limit is None:
            return None
        limiter = self._per_tool.get(tool)
        if limiter is None or limiter.total_tokens != limit:
            limiter = self._per_tool[tool] = anyio.CapacityLimiter(limit)
        return limiter

    async def _acquire(self, token: object, on_queued: OnQueued) -> None:
        try:
            self._limiter.acquire_on_behalf_of_nowait(token)
            return
        except anyio.WouldBlock:
            pass
        self._waiting.append(token)
        acquired = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._tell_position, token, on_queued)
                await self._limiter.acquire_on_behalf_of(token)
                acquired = True
                tg.cancel_scope.cancel()
        except BaseException:
            if acquired:
                self._limiter.release_on_behalf_of(token)
            raise
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
