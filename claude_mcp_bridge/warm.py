"""The one owner of CLI processes that outlive a call: warm ones and live sessions.

**Warm** (``[warm] size`` > 0): processes started ahead of time per command line,
with ``--input-format stream-json``: the CLI then waits for its first user message
as long as it takes. A call whose command line (argv, working directory,
environment) matches a waiting process is handed to it by writing its prompt as one
stream-json user message; a replacement starts behind it. A command line is warmed
after its first (cold) call. A warm process was started with the very argv the call
would have run with, so budget cap, tools, permissions, forwarded MCP config and
depth are the same; admission (policy, budget reservation, slots) happens per call.

**Live** (``[warm] live_sessions`` > 0): after a call whose child gave a clean
``result``, the child stays alive, idle, waiting for its next user message (a warm
one too: it becomes live after its first call). A follow-up call with that
``session_id`` and the same command line (``--resume`` aside) is written to it: no
start-up, no transcript reload. Any other follow-up runs the usual way with
``--resume``, and the live process of that session is ended (a session lives in one
process at a time). So does a follow-up under a per-call cap once the process spent
anything: the CLI holds ``--max-budget-usd`` over the whole process, so a live follow-up
would get less than its cap. A live process that exited in between is dropped, and the
follow-up resumes. Sessions are bounded by count and by the memory their processes
hold, the least recently used ended first, and each by its tool's idle time.

Idle processes of either kind are ended when their time is up, on shutdown (their
whole groups), and, for live ones, when their tool's definition changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import anyio
import psutil
from anyio.abc import Process, TaskGroup

from .command import Command
from .kept import Kept
from .processes import end_process_group
from .runner import start

logger = logging.getLogger(__name__)

INPUT_FLAGS = ("--input-format", "stream-json")
RESUME_FLAG = "--resume="
CAP_FLAG = "--max-budget-usd="

Key = tuple[tuple[str, ...], str, frozenset[tuple[str, str]]]


def warm_command(command: Command) -> Command:
    """``command`` as a warm process runs it: stream-json input, the prompt as a message
    (a control-protocol command already is)."""
    if command.interactive:
        return command
    message = {"type": "user", "message": {"role": "user", "content": command.stdin.decode()}}
    return replace(command, argv=command.argv + INPUT_FLAGS,
                   stdin=(json.dumps(message) + "\n").encode())


def how(started: Process | Kept | None) -> str:
    """How a call starts, for its first progress message."""
    return " (live)" if isinstance(started, Kept) else " (warm)" if started else ""


def next_message(command: Command) -> Command:
    """``command`` as a live process takes it: its user message alone (the process
    answered ``initialize`` on its first call)."""
    frames = [line for line in command.stdin.splitlines(keepends=True)
              if json.loads(line).get("type") != "control_request"]
    return replace(command, stdin=b"".join(frames))


def _key(command: Command) -> Key:
    argv = tuple(arg for arg in command.argv if not arg.startswith(RESUME_FLAG))
    return (argv, str(command.cwd), frozenset(command.env.items()))


@dataclass
class _Waiting:
    process: Process
    since: float = field(default_factory=anyio.current_time)


@dataclass
class _Live:
    kept: Kept
    key: Key
    tool: str
    idle_s: float
    since: float = field(default_factory=anyio.current_time)


@dataclass(frozen=True)
class LiveLimits:
    """How many live sessions, and how much memory they may hold together."""

    sessions: int = 0
    memory_bytes: int = 1 << 30


class WarmPool:
    """Warm processes per command line and live sessions per session id."""

    def __init__(self, size: int, idle_s: float, kill_grace_s: float,
                 live: LiveLimits = LiveLimits()) -> None:
        self.size = size
        self.idle_s = idle_s
        self.live = live
        self._grace = kill_grace_s
        self._waiting: dict[Key, list[_Waiting]] = {}
        self._starting: dict[Key, int] = {}
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._added: anyio.Event | None = None
        self._bounding = anyio.Lock()
        self._tasks: TaskGroup | None = None
        self.hits = 0
        self.misses = 0
        self.live_hits = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[WarmPool]:
        """Keep the pool while serving; on exit every idle process group is ended."""
        async with anyio.create_task_group() as tg:
            self._tasks, self._added = tg, anyio.Event()
            if self.enabled or self.live.sessions:
                tg.start_soon(self._expire)
            try:
                yield self
            finally:
                self._tasks = None
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self._end_all()

    def take_for(self, command: Command, session_id: str | None
                 ) -> tuple[Command, Process | Kept | None]:
        """What runs ``command``: its session's live process, a warm one, or None (a cold
        start), with the command to feed it."""
        taken = self.take_live(session_id, command) if session_id else self.take(command)
        return taken if taken is not None else (command, None)

    # -- warm ------------------------------------------------------------------------------

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

    def waiting(self) -> int:
        return sum(len(items) for items in self._waiting.values())

    # -- live ------------------------------------------------------------------------------

    def take_live(self, session_id: str, command: Command) -> tuple[Command, Kept] | None:
        """The live process of ``session_id`` when it can run ``command`` (same command line,
        still alive), with the message to write to it; else None. Either way the session
        leaves the pool: a process that cannot take the follow-up is ended, because the
        follow-up resumes the session elsewhere."""
        entry = self._live.pop(session_id, None)
        if entry is None:
            return None
        exited = entry.kept.process.returncode is not None
        spent = entry.kept.cost_usd > 0 and any(a.startswith(CAP_FLAG) for a in command.argv)
        if exited or spent or entry.key != _key(command):
            why = ("it exited" if exited else "the CLI holds --max-budget-usd over the whole "
                   "process, and this one spent part of it" if spent
                   else "the follow-up runs another command line")
            logger.info("session %s: its live process is ended (%s); resuming", session_id, why)
            if self._tasks is not None:
                self._tasks.start_soon(self._end_kept, entry.kept)
            return None
        self.live_hits += 1
        return next_message(command), entry.kept

    async def keep(self, session_id: str, tool: str, command: Command, kept: Kept,
                   idle_s: float) -> None:
        """Hold ``kept`` for the next call of ``session_id`` (or end it, when sessions are
        off for the pool or the tool). The least recently used sessions beyond the count and
        memory limits are ended in the background, off the call's path."""
        if self._tasks is None or not self.live.sessions or idle_s <= 0:
            await self._end_kept(kept)
            return
        old = self._live.pop(session_id, None)
        self._live[session_id] = _Live(kept, _key(command), tool, idle_s)
        if old is not None:
            self._tasks.start_soon(self._end_kept, old.kept)
        self._tasks.start_soon(self._bound, session_id)
        if self._added is not None:
            self._added.set()

    async def _bound(self, fresh: str) -> None:
        async with self._bounding:
            while len(self._live) > self.live.sessions:
                await self._evict("the live session limit")
            sizes = await anyio.to_thread.run_sync(self._memory, fresh)
            while self._live and sum(sizes.values()) > self.live.memory_bytes:
                sizes.pop(next(iter(self._live)), None)
                await self._evict("the live session memory limit")

    def _memory(self, fresh: str) -> dict[str, int]:
        """The resident memory of each live session's process tree, in bytes. Only the tree
        of ``fresh``, just kept, is walked again (a walk scans every process on the machine);
        the others were walked when they were kept, and an idle CLI starts nothing."""
        sizes = {}
        for session_id, entry in list(self._live.items()):
            if session_id == fresh:
                entry.kept.tree.refresh()
            total = 0
            for process in entry.kept.tree.alive():
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += process.memory_info().rss
            sizes[session_id] = total
        return sizes

    async def _evict(self, why: str) -> None:
        session_id, entry = self._live.popitem(last=False)
        logger.info("session %s of %s: live process ended (%s)", session_id, entry.tool, why)
        await self._end_kept(entry.kept)

    async def end_sessions(self, tools: Iterable[str]) -> int:
        """End the live sessions of ``tools`` (their definitions changed); how many."""
        names = set(tools)
        ended = [sid for sid, entry in self._live.items() if entry.tool in names]
        for session_id in ended:
            await self._end_kept(self._live.pop(session_id).kept)
        return len(ended)

    def live_sessions(self) -> int:
        return len(self._live)

    # -- idle time, ending -----------------------------------------------------------------

    async def _expire(self) -> None:
        while True:
            idle = [self.idle_s, *(entry.idle_s for entry in self._live.values())]
            self._added = added = anyio.Event()
            with anyio.move_on_after(max(0.05, min(idle) / 4)):
                await added.wait()  # a new session may have a shorter idle time
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
            done = [sid for sid, entry in self._live.items()
                    if now - entry.since >= entry.idle_s
                    or entry.kept.process.returncode is not None]
            kept = [self._live.pop(session_id).kept for session_id in done]
            for process in stale:
                await self._end(process)
            for each in kept:
                await self._end_kept(each)

    async def discard(self, process: Process | Kept) -> None:
        """End a process that was taken but will not run its call (it was cancelled)."""
        if isinstance(process, Kept):
            await self._end_kept(process)
        else:
            await self._end(process)

    async def _end(self, process: Process) -> None:
        with anyio.CancelScope(shield=True):
            await end_process_group(process, self._grace)
            await process.aclose()

    async def _end_kept(self, kept: Kept) -> None:
        with anyio.CancelScope(shield=True):
            await end_process_group(kept.process, self._grace, kept.tree)
            await kept.process.aclose()

    async def _end_all(self) -> None:
        waiting = [w.process for items in self._waiting.values() for w in items]
        kept = [entry.kept for entry in self._live.values()]
        self._waiting.clear()
        self._live.clear()
        async with anyio.create_task_group() as tg:
            for process in waiting:
                tg.start_soon(self._end, process)
            for each in kept:
                tg.start_soon(self._end_kept, each)
