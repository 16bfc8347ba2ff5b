"""Streamable HTTP sessions kept to what they are used for.

The SDK keeps a session until DELETE or ``session_idle_timeout`` (30 min) and refuses new
ones at ``max_sessions``: five bare ``initialize`` requests locked every later client out
for half an hour. :class:`SessionKeeper`, in front of the SDK's ``/mcp`` app:

- closes a session that sent no request after ``initialize`` once it is
  ``unused_timeout_s`` old;
- at the cap, makes room by closing the least recently used session that has no request
  in flight (a running tool call is one), and answers 503 saying so only when every
  session is busy.

A closed session's id answers 404, after which MCP clients start a new session.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

INTERNAL_ERROR = -32603


@dataclass
class _Use:
    opened: float
    last: float
    requests_in_flight: int = 0  # POSTs being answered; a tool call holds one while it runs
    used: bool = False  # answered a request other than initialize


class SessionKeeper:
    def __init__(self, app: ASGIApp, manager: StreamableHTTPSessionManager, *,
                 max_sessions: int, unused_timeout_s: float) -> None:
        self._app = app
        self._manager = manager
        self._max = max_sessions
        self._unused_timeout = unused_timeout_s
        self._uses: dict[str, _Use] = {}
        self._opening = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        session = headers.get(MCP_SESSION_ID_HEADER)
        if scope["type"] != "http":
            await self._app(scope, receive, send)
        elif session is None and _opens_a_session(scope["method"], headers):
            await self._open(scope, receive, send)
        elif session is not None and session in self._uses:
            await self._serve(session, self._uses[session], scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def expire_unused(self) -> None:
        """Close sessions that never made a request; runs for the server's lifetime."""
        while True:
            await anyio.sleep(min(1.0, self._unused_timeout / 4))
            now = time.monotonic()
            for session, use in list(self._uses.items()):
                if (not use.used and not use.requests_in_flight
                        and now - use.opened >= self._unused_timeout):
                    logger.info("session %s made no request in %g s: closed", session,
                                self._unused_timeout,
                                extra={"event": "http.session_expired", "session": session})
                    await self._close(session)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        victim = self._least_recently_used_idle() if self._at_cap() else None
        if self._at_cap() and victim is None:
            message = (f"all {self._max} sessions have a call in flight; "
                       "try again when one ends")
            logger.warning("refused a new session: %s", message)
            await _error(message)(scope, receive, send)
            return
        self._opening += 1  # before any await: concurrent openings see each other
        counted = True
        if victim is not None:
            logger.info("session %s closed to make room for a new one (%d open)", victim,
                        self._max, extra={"event": "http.session_evicted", "session": victim})
            await self._close(victim)

        async def watch(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start":
                self._opening -= 1  # from here the SDK counts the session itself
                counted = False
                session = _session_of(message)
                if message["status"] == 200 and session is not None:
                    now = time.monotonic()
                    self._uses[session] = _Use(opened=now, last=now)
            await send(message)

        try:
            await self._app(scope, receive, watch)
        finally:
            if counted:
                self._opening -= 1

    def _at_cap(self) -> bool:
        live = self._live()
        for gone in self._uses.keys() - live.keys():
            del self._uses[gone]  # ended by DELETE or the SDK's idle timeout
        return len(live) + self._opening >= self._max

    def _least_recently_used_idle(self) -> str | None:
        idle = [(use.last, session) for session, use in self._uses.items()
                if not use.requests_in_flight]
        return min(idle)[1] if idle else None

    async def _serve(self, session: str, use: _Use, scope: Scope, receive: Receive,
                     send: Send) -> None:
        post = scope["method"] == "POST"
        use.last = time.monotonic()
        use.requests_in_flight += post

        async def watch(message: Message) -> None:
            if post and message["type"] == "http.response.start" and message["status"] == 200:
                use.used = True
            await send(message)

        try:
            await self._app(scope, receive, watch)
        finally:
            use.last = time.monotonic()
            use.requests_in_flight -= post

    async def _close(self, session: str) -> None:
        self._uses.pop(session, None)
        transport = self._live().get(session)
        if transport is not None:
            # The SDK has no public way to end a session from the server side; this is the
            # method its own DELETE and idle paths use (forget the id, then terminate).
            await self._manager._discard_session(session, transport)

    def _live(self) -> dict[str, StreamableHTTPServerTransport]:
        return self._manager._server_instances


def _opens_a_session(method: str, headers: Headers) -> bool:
    """A POST without a session id on the handshake era (2026 requests have no session)."""
    version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
    return method == "POST" and (version is None or version in HANDSHAKE_PROTOCOL_VERSIONS)


def _session_of(message: Message) -> str | None:
    wanted = MCP_SESSION_ID_HEADER.lower().encode()
    for name, value in message.get("headers", []):
        if name.lower() == wanted:
            session: Any = value.decode("latin-1")
            return str(session)
    return None


def _error(message: str) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": None,
                         "error": {"code": INTERNAL_ERROR, "message": message}},
                        status_code=503)
