"""Tell every connected client that the tool list changed, in both protocol eras."""

from __future__ import annotations

import weakref
from typing import Any

import anyio
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged


class Notifier:
    """Tells every connected client that the tool list changed, in both protocol eras.

    2026 clients hold a ``subscriptions/listen`` stream fed by the bus; 2025 clients
    are told on their connection, remembered from their ``notifications/initialized``
    until the connection ends.
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    def remember(self, session: Any) -> None:
        self._sessions.add(session)
        connection = getattr(session, "_connection", None)  # no public on-disconnect hook
        if connection is not None:
            connection.exit_stack.callback(self._sessions.discard, session)

    async def tools_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for session in list(self._sessions):
            try:
                await session.send_tool_list_changed()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._sessions.discard(session)
