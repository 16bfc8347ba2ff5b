"""Serve over stdio: stdout carries only JSON-RPC frames; logs go to stderr.

The SDK points fd 1 at stderr while it serves, so a stray ``print`` cannot corrupt
the stream. The server stops on stdin EOF (the client went away) or on SIGTERM,
SIGHUP or SIGINT; either way in-flight calls are cancelled, which ends their
children's process groups (see ``runner.py``).

stdin is read without a worker thread: the SDK's default reader blocks a thread in
``readline``, and a signal could then not stop the server until the client closed
the pipe.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio
from mcp.server import Server
from mcp.server.stdio import stdio_server

from ..signals import cancel_on_signal

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


async def serve_stdio(server: Server[Any]) -> None:
    # The signal watcher's scope encloses the transport, so a signal also stops the
    # transport's stdin reader, which would otherwise wait for the client to close the pipe.
    with _stdin_lines(0) as stdin:
        async with anyio.create_task_group() as tg:
            await tg.start(cancel_on_signal, tg.cancel_scope)
            async with stdio_server(stdin=cast(Any, stdin)) as (read, write):
                logger.info("serving over stdio", extra={"event": "serve.ready"})
                await server.run(read, write, server.create_initialization_options())
            tg.cancel_scope.cancel()


@contextmanager
def _stdin_lines(fd: int) -> Iterator[AsyncIterator[str] | None]:
    """Cancellable lines of ``fd`` when it is a pipe, socket or terminal; else None
    (a regular file never blocks, so the SDK's own reader is fine)."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        yield None
        return
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        yield _read_lines(fd)
    finally:
        os.set_blocking(fd, was_blocking)  # the file description may be a shared terminal


async def _read_lines(fd: int) -> AsyncIterator[str]:
    buffer = bytearray()
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            yield line.decode("utf-8", errors="replace")
            continue
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            continue
        if not chunk:
            if buffer:
                yield buffer.decode("utf-8", errors="replace")
            return
        buffer += chunk
