"""Serve over stdio: stdout carries only JSON-RPC frames; logs go to stderr.

While serving, fd 1 points at stderr, so a stray ``print`` (or a child that inherits it)
cannot corrupt the stream. The server stops on stdin EOF (the client went away) or on a
shutdown signal (SIGTERM, SIGHUP or SIGINT; Ctrl-C or Ctrl-Break on Windows); either way
in-flight calls are cancelled, which ends their children's trees (see ``runner.py``).

stdin is read so that a signal stops the server at once (``platform.stdin_lines``):
the SDK's default reader blocks a worker thread in ``readline`` that a cancellation
waits for, so the server would not stop until the client closed the pipe.

stdout is written on the event loop (POSIX): the SDK's default writer takes two worker
thread hops (write, flush) per frame, five frames a call, and a 5 MB ``tools/list`` answer
goes through a text wrapper and a thread. ``_stdout_frames`` writes to a non-blocking
private copy of fd 1, waiting only while the pipe is full. Passing a writer skips the SDK's
own diversion of fd 1, so it diverts fd 1 to stderr itself, and puts it back on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio
from mcp.server import Server
from mcp.server.stdio import stdio_server

from ..platform import stdin_lines
from ..signals import cancel_on_signal

logger = logging.getLogger(__name__)


async def serve_stdio(server: Server[Any]) -> None:
    # The signal watcher's scope encloses the transport, so a signal also stops the
    # transport's stdin reader, which would otherwise wait for the client to close the pipe.
    with stdin_lines(0) as stdin, _stdout_frames(1) as stdout:
        async with anyio.create_task_group() as tg:
            await tg.start(cancel_on_signal, tg.cancel_scope)
            async with stdio_server(stdin=cast(Any, stdin), stdout=cast(Any, stdout)) as (
                    read, write):
                logger.info("serving over stdio", extra={"event": "serve.ready"})
                await server.run(read, write, server.create_initialization_options())
            tg.cancel_scope.cancel()


@contextmanager
def _stdout_frames(fd: int) -> Iterator[_FrameWriter | None]:
    """A writer of frames to ``fd`` on a private copy, while ``fd`` itself points at
    stderr; None (the SDK's own writer and diversion) on Windows, or where descriptors
    cannot be copied or diverted."""
    if sys.platform == "win32":
        yield None
        return
    try:
        private = os.dup(fd)  # not inherited by children (PEP 446)
    except OSError:
        yield None
        return
    if private < 3:  # a standard descriptor was closed: leave them all to the SDK
        os.close(private)
        yield None
        return
    try:
        os.dup2(2, fd)
    except OSError:  # no stderr to divert to: the SDK's writer, which then writes in place
        os.close(private)
        yield None
        return
    was_blocking = os.get_blocking(private)
    try:
        os.set_blocking(private, False)
        yield _FrameWriter(private)
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(private, was_blocking)  # the description may be a shared terminal
            os.dup2(private, fd)
        os.close(private)


class _FrameWriter:
    """What ``stdio_server`` needs of stdout (``write``, ``flush``), on a non-blocking fd."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def write(self, text: str) -> None:
        data = memoryview(text.encode())
        while data:
            try:
                data = data[os.write(self._fd, data):]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)

    async def flush(self) -> None:
        pass
