"""Stop on a shutdown signal: SIGTERM, SIGINT or SIGHUP cancel a scope."""

from __future__ import annotations

import signal

import anyio
from anyio import CancelScope
from anyio.abc import TaskStatus


async def cancel_on_signal(
    scope: CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``scope`` on the first SIGTERM, SIGINT or SIGHUP. Start it with
    ``await tg.start(...)``: the handlers are in place when that returns."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
