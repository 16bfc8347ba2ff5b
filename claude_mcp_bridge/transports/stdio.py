"""Serve over stdio: stdout carries only JSON-RPC frames; logs go to stderr.

The SDK points fd 1 at stderr while it serves, so a stray ``print`` cannot corrupt
the stream. The server stops on stdin EOF (the client went away) or on a shutdown
signal (SIGTERM, SIGHUP or SIGINT; Ctrl-C or Ctrl-Break on Windows); either way
in-flight calls are cancelled, which ends their children's trees (see ``runner.py``).

stdin is read so that a signal stops the server at once (``platform.stdin_lines``):
the SDK's default reader blocks a worker thread in ``readline`` that a cancellation
waits for, so the server would not stop until the client closed the pipe.
"""

from __future__ import annotations

import logging
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
    with stdin_lines(0) as stdin:
        async with anyio.create_task_group() as tg:
            await tg.start(cancel_on_signal, tg.cancel_scope)
            async with stdio_server(stdin=cast(Any, stdin)) as (read, write):
                logger.info("serving over stdio", extra={"event": "serve.ready"})
                await server.run(read, write, server.create_initialization_options())
            tg.cancel_scope.cancel()
