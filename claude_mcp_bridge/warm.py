"""Warm starts: CLI processes started ahead of time, each serving exactly one call.

The CLI's own start-up (about 0.5 s here, seconds with the real API) is most of a
call's latency. With ``[warm] size`` > 0 the bridge keeps that many processes per
command line already started with ``--input-format stream-json``: the CLI then
waits for its first user message as long as it takes. A call whose command line
(argv, working directory, environment) matches a waiting process is handed to it by
writing its prompt as one stream-json user message and closing stdin; a
replacement starts behind it. A command line is warmed after its first (cold) call.

Each warm process serves one call and then exits like any other child: no context
is shared between calls. It was started with the very argv the call would have run
with, so budget cap, tools, permissions, forwarded MCP config and depth are the same;
admission (policy, budget reservation, slots) happens per call as always. Processes
idle for ``idle_s`` are ended, and all of them on shutdown (their whole groups).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import anyio
from anyio.abc import Process, TaskGroup

from .command import Command
from .processes import end_process_group
from .runner import start

logger = logging.getLogger(__name__)

INPUT_FLAGS = ("--input-format", "stream-json")

Key = tuple[tuple[str, ...], str, frozenset[tuple[str, str]]]


def warm_command(command: Command) -> Command:
    """``command`` as a warm process runs it: stream-json input, the prompt as a message
    (a control-protocol command already is)."""
    if command.interactive:
        return command
    message = {"type": "user", "message": {"role": "user", "content": command.stdin.decode()}}
    return replace(command, argv=command.argv + INPUT_FLAGS,
                   stdin=(json.dumps(message) + "\n").encode())


def _key(command: Command) -> Key:
    return (command.argv, str(command.cwd), frozenset(command.env.items()))


@dataclass
class _Waiting:
    process: Process
    since: float = field(default_factory=anyio.current_time)


class WarmPool:
    """Processes waiting for a call, per command line. Off when ``size`` is 0."""

    def __init__(self, size: int, idle_s: float, kill_grace_s: float) -> None:
        self.size = size
        self.idle_s = idle_s
        self._grace = kill_grace_s
        self._waiting: dict[Key, list[_Waiting]] = {}
        self._starting: dict[Key, int] = {}
        self._tasks: TaskGroup | None = None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[WarmPool]:
        """Keep the pool while serving; on exit every waiting process group is ended."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            if self.enabled:
                tg.start_soon(self._expire)
            try:
                yield self
            finally:
                self._tasks = None
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self._end_all()

    def take(self, command: Command) -> tuple[Command, Process] | None:
        """A warm process for ``command`` and the command to feed it, or None (a replacement
        is started either way, so the next such call finds one)."""
        if not self.enabled or self._tasks is None:
            return None
        key = _key(command)
        waiting = self._waiting.get(key, [])
        taken = None
        while waiting and taken is None:
            candidate = waiting.pop(0)
            if candidate.process.returncode is None:
                taken = candidate.process
            else:
                self._tasks.start_soon(self._end, candidate.process)
        self._fill(key, command)
        if taken is None:
            self.misses += 1
            return None
        self.hits += 1
        return warm_command(command), taken

    def _fill(self, key: Key, command: Command) -> None:
        assert self._tasks is not None
        missing = self.size - len(self._waiting.get(key, [])) - self._starting.get(key, 0)
        for _ in range(max(0, missing)):
            self._starting[key] = self._starting.get(key, 0) + 1
            self._tasks.start_soon(self._start, key, command)

    async def _start(self, key: Key, command: Command) -> None:
        try:
            argv = command.argv if command.interactive else command.argv + INPUT_FLAGS
            process = await start(replace(command, argv=argv))
        except OSError as exc:
            logger.warning("could not start a warm process: %s", exc)
            return
        finally:
            self._starting[key] -= 1
        self._waiting.setdefault(key, []).append(_Waiting(process))

    async def _expire(self) -> None:
        while True:
            await anyio.sleep(max(0.05, self.idle_s / 4))
            now = anyio.current_time()
            stale: list[Process] = []
            # Take them out first, with no await in between: take() may run at any await.
            for key, waiting in list(self._waiting.items()):
                keep = [w for w in waiting if now - w.since < self.idle_s
                        and w.process.returncode is None]
                stale += [w.process for w in waiting if w not in keep]
                if keep:
                    self._waiting[key] = keep
                else:
                    del self._waiting[key]
            for process in stale:
                await self._end(process)

    async def discard(self, process: Process) -> None:
        """End a process that was taken but will not run its call (it was cancelled)."""
        await self._end(process)

    async def _end(self, process: Process) -> None:
        with anyio.CancelScope(shield=True):
            await end_process_group(process, self._grace)
            await process.aclose()

    async def _end_all(self) -> None:
        waiting = [w.process for items in self._waiting.values() for w in items]
        self._waiting.clear()
        async with anyio.create_task_group() as tg:
            for process in waiting:
                tg.start_soon(self._end, process)

    def waiting(self) -> int:
        return sum(len(items) for items in self._waiting.values())
