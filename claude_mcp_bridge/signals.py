"""Stop on a shutdown signal: SIGTERM, SIGINT or SIGHUP (POSIX), Ctrl-C, Ctrl-Break or
closing the console (Windows) cancel a scope. Which signals, and how they are received,
is ``platform.shutdown_signals``."""

from __future__ import annotations

import anyio
from anyio import CancelScope
from anyio.abc import TaskStatus

from .platform import shutdown_signals


async def cancel_on_signal(
    scope: CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``scope`` on the first shutdown signal. Start it with
    ``await tg.start(...)``: the handlers are in place when that returns."""
    with shutdown_signals() as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
