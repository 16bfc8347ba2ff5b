"""run(command, limits, on_event) -> RunResult: the only owner of a ``claude`` child.

The child lives for one ``await run(...)``. It starts in a new session (its own
process group), because ``claude`` starts MCP servers of its own and those must end
with it. Whatever way ``run`` is left (normal exit, timeout, cancellation by the
client, server shutdown, an exception in ``on_event``), the whole group is ended
under a shield: SIGTERM, a bounded grace, then SIGKILL. The one exception: a run
asked to ``keep`` its child that ended with a ``result`` returns the child alive
(``Kept``), waiting for its next user message; a later ``run`` takes it over.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .command import Command
from .errors import NotJSON
from .events import (
    ControlRequest,
    Event,
    InitEvent,
    ResultEvent,
    parse_line,
    sums_resumed_sessions,
)
from .kept import Kept, this_turn
from .processes import CallTree, Identity, end_process_group, start_group_leader

logger = logging.getLogger(__name__)

OnEvent = Callable[[Event], Awaitable[None]]
OnSpawn = Callable[[Identity | None], Coroutine[Any, Any, None]]
OnControl = Callable[[ControlRequest], Awaitable[dict[str, Any]]]
"""Answers a ``can_use_tool`` request: ``{"behavior": "allow", "updatedInput": {...}}`` or
``{"behavior": "deny", "message": "why"}``."""

TREE_REFRESH_S = 1.0
"""How often a running child's process tree is looked at again."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 1800.0
    """Wall-clock limit of one run; the child's group is ended when it passes."""
    kill_grace_s: float = 5.0
    """Time between SIGTERM and SIGKILL."""
    result_grace_s: float = 5.0
    """Time a child may take to exit after its ``result`` event (some never do)."""
    max_line_bytes: int = 64 * 1024 * 1024
    """Longest stdout line accepted; a longer one ends the run as a protocol error."""
    stderr_tail_bytes: int = 8192
    """How much of the end of stderr is kept for error messages."""
    stall_s: float | None = None
    """A child that prints nothing on stdout for this long is ended as stalled."""


@dataclass(frozen=True)
class RunResult:
    """What happened to one child. ``result`` is None when no ``result`` event came."""

    exit_code: int | None
    result: ResultEvent | None
    duration_s: float
    stderr_tail: str = ""
    stray_lines: tuple[str, ...] = ()
    timed_out: bool = False
    start_error: str | None = None
    protocol_error: str | None = None
    killed: bool = False
    stalled: bool = False
    """Ended because it printed nothing for ``Limits.stall_s``."""
    kept: Kept | None = None
    """The child, alive after its ``result``, when the run was asked to keep it."""


@dataclass
class _Collected:
    result: ResultEvent | None = None
    got_result: anyio.Event = field(default_factory=anyio.Event)
    result_handled: anyio.Event = field(default_factory=anyio.Event)
    cost_before: float = 0.0
    """What the child's ``total_cost_usd`` counts beyond this turn, subtracted from it: a
    kept child's earlier turns, or (a CLI that sums resumed sessions) the session's
    earlier calls."""
    session_cost: float | None = None
    """A resumed session's earlier cost, taken into ``cost_before`` once the ``init`` event
    names a CLI that counts it."""
    stdout_done: anyio.Event = field(default_factory=anyio.Event)
    stray: list[str] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)
    protocol_error: str | None = None
    last_output: float = field(default_factory=anyio.current_time)
    stalled: bool = False


@dataclass
class _Answerer:
    """Writes the runner's answers to the child's control requests on its stdin."""

    process: Process
    on_control: OnControl | None
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def answer(self, request: ControlRequest) -> None:
        response: dict[str, Any]
        if request.subtype == "can_use_tool" and self.on_control is not None:
            answer = await self.on_control(request)
            response = {"subtype": "success", "request_id": request.request_id,
                        "response": answer}
        else:
            response = {"subtype": "error", "request_id": request.request_id,
                        "error": f"the bridge does not answer {request.subtype!r} requests"}
        await self.send({"type": "control_response", "response": response})

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        # a child that is gone cannot be answered; its exit tells why
        async with self.lock:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError,
                                     OSError):
                await self.process.stdin.send((json.dumps(frame) + "\n").encode())


async def start(command: Command) -> Process:
    """Start ``command`` as the leader of a new process group (raises ``OSError``),
    registered with the watchdog so it ends if the bridge dies."""
    process = await start_group_leader(command.argv, cwd=command.cwd, env=command.env)
    CallTree(process.pid)
    return process


async def run(
    command: Command, limits: Limits, on_event: OnEvent, *,
    started: Process | Kept | None = None, keep: bool = False, session_cost: float = 0.0,
    on_spawn: OnSpawn | None = None, on_control: OnControl | None = None,
) -> RunResult:
    """Start the child (or take over ``started``: a warm one already running ``command``'s
    argv, or a kept one, to which ``command.stdin`` is its next user message), feed it
    ``command.stdin``, stream its events to ``on_event``, and end its tree, unless ``keep``
    and it gave its ``result``: then it is returned alive in ``RunResult.kept``.
    ``on_spawn`` is awaited as soon as the child runs, with its identity (None if it is
    gone already), so what it does overlaps the child's start-up (the ledger keeps the
    identity for recovery after a crash). Permission prompts are answered by
    ``on_control`` (denied without it), and its stdin is closed after its result. Every
    ``result`` reports the cost of this run alone: a kept child's earlier turns, and a
    resumed session's ``session_cost`` when the CLI counts it, are subtracted."""
    began = anyio.current_time()
    kept = None
    if isinstance(started, Kept):
        kept, process, tree, stdout = started, started.process, started.tree, started.stdout
    else:
        try:
            process = started if started is not None else await start_group_leader(
                command.argv, cwd=command.cwd, env=command.env)
        except OSError as exc:
            reason = f"could not start {command.argv[0]}: {exc.strerror or exc}"
            return RunResult(None, None, anyio.current_time() - began, start_error=reason)
        tree = CallTree(process.pid)
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
    collected = _Collected(cost_before=kept.cost_usd if kept else 0.0,
                           session_cost=None if kept else session_cost)
    keeping = killed = False
    try:
        with anyio.move_on_after(limits.timeout_s) as deadline:
            if on_spawn is not None:
                await on_spawn(tree.leader)
            await _supervise(process, stdout, command, limits, on_event, collected, tree,
                             _Answerer(process, on_control), keep)
        keeping = keep and _can_keep(process, collected)
    finally:
        if not keeping:
            with anyio.CancelScope(shield=True):
                killed = await end_process_group(process, limits.kill_grace_s, tree)
                await _close(process)
    return RunResult(
        exit_code=process.returncode,
        result=collected.result,
        duration_s=anyio.current_time() - began,
        stderr_tail=collected.stderr.decode("utf-8", "replace").strip(),
        stray_lines=tuple(collected.stray[-5:]),
        timed_out=deadline.cancelled_caught,
        protocol_error=collected.protocol_error,
        killed=killed,
        stalled=collected.stalled,
        kept=_kept(process, stdout, tree, collected, kept) if keeping else None,
    )


def _can_keep(process: Process, collected: _Collected) -> bool:
    """A child is kept only alive and in a clean state: its turn ended with a result."""
    result = collected.result
    return (process.returncode is None and result is not None and not result.is_error
            and result.session_id is not None and collected.protocol_error is None
            and not collected.stalled)


def _kept(process: Process, stdout: BufferedByteReceiveStream, tree: CallTree,
          collected: _Collected, before: Kept | None) -> Kept:
    assert collected.result is not None
    cost = collected.cost_before + (collected.result.total_cost_usd or 0.0)
    return Kept(process, stdout, tree, cost_usd=cost, turns=before.turns + 1 if before else 1)


async def _supervise(
    process: Process, stdout: BufferedByteReceiveStream, command: Command, limits: Limits,
    on_event: OnEvent, collected: _Collected, tree: CallTree, answerer: _Answerer,
    keep: bool,
) -> None:
    assert process.stderr is not None
    until = collected.got_result if command.interactive else None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_keep_up, tree)
        tg.start_soon(_feed_stdin, process, command.stdin, answerer.lock, until, keep)
        tg.start_soon(_drain_tail, process.stderr, collected.stderr, limits.stderr_tail_bytes)
        tg.start_soon(_read_events, stdout, limits.max_line_bytes, on_event, collected,
                      answerer)
        if keep:  # the turn is over once its result is handled; the child waits on
            await _turn_or_end(process, collected, limits)
        else:
            await _wait_for_end(process, collected, limits)
        if not (keep and collected.result_handled.is_set()):
            # Output written just before exit is still in the pipe; a leaked grandchild may
            # hold the pipe open forever, so the wait for EOF is bounded.
            with anyio.move_on_after(1.0):
                await collected.stdout_done.wait()
        tg.cancel_scope.cancel()


async def _keep_up(tree: CallTree) -> None:
    """Learn the child's descendants while it runs: one that leaves its group or outlives
    its parent is still ended with the call, and by the watchdog if the bridge dies."""
    while True:
        await anyio.sleep(TREE_REFRESH_S)
        await anyio.to_thread.run_sync(tree.refresh)


async def _wait_for_end(process: Process, collected: _Collected, limits: Limits) -> None:
    """Return when the child exits, ``result_grace_s`` after its result event, when it
    breaks the protocol, or when it has been silent for ``stall_s``."""
    result_grace_s = limits.result_grace_s
    async with anyio.create_task_group() as tg:

        async def exited() -> None:
            await process.wait()
            tg.cancel_scope.cancel()

        async def lingered_after_result() -> None:
            await collected.got_result.wait()
            await anyio.sleep(result_grace_s)
            logger.info("child %s gave its result but did not exit; ending it", process.pid)
            tg.cancel_scope.cancel()

        async def stopped_reading() -> None:
            await collected.stdout_done.wait()
            if collected.protocol_error:
                tg.cancel_scope.cancel()

        async def went_silent(stall_s: float) -> None:
            while True:
                silent_for = anyio.current_time() - collected.last_output
                if silent_for >= stall_s:
                    break
                await anyio.sleep(stall_s - silent_for)
            logger.warning("child %s printed nothing for %gs; ending it as stalled",
                           process.pid, stall_s)
            collected.stalled = True
            tg.cancel_scope.cancel()

        tg.start_soon(exited)
        tg.start_soon(lingered_after_result)
        tg.start_soon(stopped_reading)
        if limits.stall_s is not None:
            tg.start_soon(went_silent, limits.stall_s)


async def _turn_or_end(process: Process, collected: _Collected, limits: Limits) -> None:
    """Return when the turn's result is handled, or as ``_wait_for_end`` would."""
    async with anyio.create_task_group() as tg:

        async def handled() -> None:
            await collected.result_handled.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(handled)
        await _wait_for_end(process, collected, limits)
        tg.cancel_scope.cancel()


async def _feed_stdin(
    process: Process, data: bytes, lock: anyio.Lock, until: anyio.Event | None, keep: bool,
) -> None:
    """Write ``data``; close stdin then, or (control protocol) once ``until`` is set: the
    CLI ends when its input does, and answers to its prompts go on stdin until then. A
    child to be kept keeps its stdin open for its next message."""
    assert process.stdin is not None
    try:
        async with lock:
            await process.stdin.send(data)
        if until is not None and not keep:
            await until.wait()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the child exited without reading its prompt; its exit code tells why
    finally:
        if not keep:
            await process.stdin.aclose()


async def _drain_tail(stream: ByteReceiveStream, tail: bytearray, keep: int) -> None:
    try:
        async for chunk in stream:
            tail.extend(chunk)
            del tail[:-keep]
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def _read_events(
    buffered: BufferedByteReceiveStream, max_line: int, on_event: OnEvent,
    collected: _Collected, answerer: _Answerer,
) -> None:
    try:
        while True:
            try:
                raw = await buffered.receive_until(b"\n", max_line)
            except anyio.IncompleteRead:
                raw = bytes(buffered.buffer)  # last line without a newline
                if raw.strip():
                    await _handle_line(raw, on_event, collected, answerer)
                return
            except anyio.DelimiterNotFound:
                raw = None
            # receive_until returns a line of any length when it arrived whole in the buffer
            if raw is None or len(raw) > max_line:
                collected.protocol_error = f"the CLI printed a line longer than {max_line} bytes"
                return
            await _handle_line(raw, on_event, collected, answerer)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return
    finally:
        collected.stdout_done.set()


async def _handle_line(
    raw: bytes, on_event: OnEvent, collected: _Collected, answerer: _Answerer
) -> None:
    collected.last_output = anyio.current_time()
    line = raw.decode("utf-8", "replace").strip()
    if not line:
        return
    try:
        events = parse_line(line)
    except NotJSON:
        collected.stray.append(line[:500])
        return
    for event in events:
        if isinstance(event, InitEvent) and collected.session_cost is not None:
            if sums_resumed_sessions(event.version):
                collected.cost_before = collected.session_cost
            collected.session_cost = None  # the first init decides
        if isinstance(event, ControlRequest):
            # The CLI waits for the answer (a person may take minutes): the silence is ours.
            await answerer.answer(event)
            collected.last_output = anyio.current_time()
            continue
        if isinstance(event, ResultEvent):
            event = this_turn(event, collected.cost_before)
            collected.result = event
            collected.got_result.set()
        await on_event(event)
        if isinstance(event, ResultEvent):
            collected.result_handled.set()


async def _close(process: Process) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
