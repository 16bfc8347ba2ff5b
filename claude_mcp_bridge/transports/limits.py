"""Connection limits uvicorn does not enforce: a deadline for the request head and one for
the body, and a cap on open connections kept below the descriptor limit.

uvicorn's h11 protocol arms its only timer (keep-alive) after a response; a connection
that never finishes its request head is held for ever. 1,100 such connections from one
host used up a 1,024-descriptor process, and then ``/health`` and every call timed out
("Too many open files"). So each connection here is in one of three phases:

    head   waiting for a request head     closed after ``header_timeout_s`` (408 if it sent bytes)
    body   reading the request body       closed after ``body_timeout_s`` with 408
    busy   its request is being answered  no read deadline (a call may run for an hour)

The deadline of a phase starts when the phase does; bytes trickling in do not extend it.
When ``max_connections`` are open, a new connection closes the one that has waited longest
for a request head, so a flood of idle connections cannot lock anyone out; if every
connection is mid-request, the new one gets 503 and is closed. This is decided in the
listening socket's ``accept`` (:class:`GuardedListener`): asyncio accepts a batch of
sockets before any reaches the protocol, and deciding there instead ran a 1,024-descriptor
process out of descriptors in the middle of a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from ..platform import raise_descriptor_limit

logger = logging.getLogger(__name__)

Phase = Literal["head", "body", "busy"]

# Descriptors kept free for everything but client connections: the ledger, the agents'
# pipes, log files, the MCP servers' own sockets.
_RESERVED_SHARE = 4
_MIN_RESERVED = 64
_FD_TARGET = 65536
_ACCEPT_QUEUE = 2048


def raise_fd_limit() -> int:
    """Raise the descriptor limit towards ``_FD_TARGET``; return the limit in force."""
    return raise_descriptor_limit(_FD_TARGET)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    backlog: int = 2048

    @classmethod
    def within(cls, fd_limit: int, *, max_connections: int, header_timeout_s: float,
               body_timeout_s: float) -> ConnectionLimits:
        """Limits that leave a quarter of ``fd_limit`` for everything but connections.

        The connections a newcomer closes release their descriptors only on the event
        loop's next turn, and asyncio accepts up to ``backlog`` sockets in one turn, so
        the backlog comes out of the reserve too.
        """
        reserved = max(_MIN_RESERVED, fd_limit // _RESERVED_SHARE)
        return cls(max(1, min(max_connections, fd_limit - reserved)), header_timeout_s,
                   body_timeout_s, backlog=max(16, min(2048, reserved // 2)))


class OpenConnections:
    """The open connections of one server; those waiting for a request head oldest first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._waiting: dict[GuardedH11Protocol, None] = {}  # insertion order = wait start
        self._busy: set[GuardedH11Protocol] = set()
        self._accepted = 0  # accepted sockets whose protocol has not started yet

    def __len__(self) -> int:
        return len(self._waiting) + len(self._busy) + self._accepted

    def make_room(self) -> bool:
        """Hold a place for a socket being accepted, closing the connection that has
        waited longest for a request head if need be; False when all are mid-request."""
        if len(self) >= self.limits.max_connections:
            if not self._waiting:
                return False
            oldest = next(iter(self._waiting))
            self.forget(oldest)
            oldest.close_for_room()
        self._accepted += 1
        return True

    def admit(self, connection: GuardedH11Protocol) -> None:
        """``connection``'s protocol started: it takes the place held for it."""
        self._accepted = max(0, self._accepted - 1)
        self._busy.add(connection)

    def moved(self, connection: GuardedH11Protocol, phase: Phase) -> None:
        self.forget(connection)
        if phase == "head":
            self._waiting[connection] = None
        else:
            self._busy.add(connection)

    def forget(self, connection: GuardedH11Protocol) -> None:
        self._waiting.pop(connection, None)
        self._busy.discard(connection)


def _raw_response(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


_FULL = _raw_response("503 Service Unavailable",
                      "too many open connections, all of them mid-request; try again later")
_HEAD_TOO_SLOW = _raw_response("408 Request Timeout", "the request head took too long")
_BODY_TOO_SLOW = _raw_response("408 Request Timeout", "the request body took too long")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and a place in :class:`OpenConnections`."""

    guard: ClassVar[OpenConnections]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase: Phase | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.admit(self)
        self._follow_phase()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_phase()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_phase()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.guard.forget(self)
        super().connection_lost(exc)

    def close_for_room(self) -> None:
        """Closed to let a newer connection in (it had sent no complete request)."""
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.close()

    def _follow_phase(self) -> None:
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        phase: Phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY \
            else "busy"
        if phase == self._phase:
            return  # a deadline runs from the start of its phase: trickling bytes do not move it
        self._phase = phase
        self._cancel_deadline()
        self.guard.moved(self, phase)
        limits = self.guard.limits
        if phase == "head":
            self._deadline = self.loop.call_later(limits.header_timeout_s, self._head_too_slow)
        elif phase == "body":
            self._deadline = self.loop.call_later(limits.body_timeout_s, self._body_too_slow)

    def _head_too_slow(self) -> None:
        buffered, _ = self.conn.trailing_data
        if buffered:  # a silent idle connection is just closed, as after keep-alive
            self.transport.write(_HEAD_TOO_SLOW)
        self.transport.close()

    def _body_too_slow(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(_BODY_TOO_SLOW)
        if cycle is not None:
            # The app sees a disconnect now, and anything it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class GuardedListener(socket.socket):
    """A listening socket that accepts a connection only if :class:`OpenConnections`
    has room for it; otherwise answers 503 and closes it at once."""

    guard: OpenConnections

    @classmethod
    def around(cls, sock: socket.socket, guard: OpenConnections) -> GuardedListener:
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.guard = guard
        return listener

    def listen(self, backlog: int = 0) -> None:
        # asyncio passes the same number as the listen queue's length and as how many
        # sockets it accepts per turn; only the second needs to be small (see
        # ConnectionLimits.within), so a burst waits in the kernel's queue instead of
        # having its SYNs dropped.
        super().listen(max(backlog, _ACCEPT_QUEUE))

    def accept(self) -> tuple[socket.socket, Any]:
        conn, address = super().accept()
        if self.guard.make_room():
            return conn, address
        # debug only: a log line per refused connection would be a flood of its own
        logger.debug("refused a connection: %d open, all mid-request", len(self.guard))
        with contextlib.suppress(OSError), conn:
            conn.setblocking(False)
            conn.send(_FULL)
        raise ConnectionAbortedError  # asyncio's accept loop skips it and carries on


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one server: its instances share one :class:`OpenConnections`."""
    class BridgeH11Protocol(GuardedH11Protocol):
        guard = OpenConnections(limits)

    return BridgeH11Protocol
