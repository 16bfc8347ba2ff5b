"""ASGI middleware that refuses a bad request before any route or the SDK sees it.

- :class:`HostAndOrigin`: the DNS-rebinding check on *every* path. The SDK checks only its
  own transports, so a page on a rebound name could read ``/health`` and ``/ready``
  (budget left, calls in flight) from a tokenless loopback bridge.
- :class:`JsonDepthLimit`: a JSON-RPC body nested deeper than a limit gets a parse error.
  40 KB of ``[`` (well under the body cap) raised ``RecursionError`` in the parsers: a 500
  and a traceback in the log instead of an answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PARSE_ERROR = -32700


def allowed(value: str, patterns: Sequence[str]) -> bool:
    """Whether a Host or Origin value matches; ``name:*`` matches ``name:<port>``."""
    for pattern in patterns:
        if value == pattern:
            return True
        if pattern.endswith(":*"):
            base, _, port = value.rpartition(":")
            if base == pattern[:-2] and port.isdigit():
                return True
    return False


class HostAndOrigin:
    """Host must be allowed (421 otherwise); an Origin, when sent, too (403 otherwise)."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str], origins: Sequence[str]) -> None:
        self._app = app
        self._hosts = tuple(hosts)
        self._origins = tuple(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _refusal(self, headers: Headers) -> JSONResponse | None:
        host = headers.get("host", "")
        if not allowed(host, self._hosts):
            return JSONResponse({"error": "misdirected_request", "error_description":
                                 f"Host {host[:100]!r} is not served here; add it to "
                                 "[http] allowed_hosts if it should be"}, status_code=421)
        origin = headers.get("origin")
        if origin is not None and not allowed(origin, self._origins):
            return JSONResponse({"error": "forbidden", "error_description":
                                 f"Origin {origin[:100]!r} is not allowed; add it to "
                                 "[http] allowed_origins if it should be"}, status_code=403)
        return None


def too_deep(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def nesting_problem(body: bytes, limit: int) -> str | None:
    """Why ``body`` is refused for its nesting, or None (bodies that are not JSON pass:
    the SDK answers them with its own parse error)."""
    try:
        value = json.loads(body)
    except RecursionError:
        return f"JSON nested deeper than {limit} levels"
    except ValueError:
        return None
    if isinstance(value, dict | list) and too_deep(value, limit):
        return f"JSON nested deeper than {limit} levels"
    return None


class JsonDepthLimit:
    """For POSTs: reads the body (up to ``max_body_bytes``), refuses one nested too deeply
    with a JSON-RPC parse error (400), and hands the rest to ``app`` unchanged."""

    def __init__(self, app: ASGIApp, max_depth: int, max_body_bytes: int) -> None:
        self._app = app
        self._max_depth = max_depth
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more and len(body) <= self._max_body:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body arrived: nothing to answer
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
        problem = None if more else nesting_problem(bytes(body), self._max_depth)
        if problem is not None:
            refusal = JSONResponse({"jsonrpc": "2.0", "id": None, "error": {
                "code": PARSE_ERROR, "message": f"Parse error: {problem}"}}, status_code=400)
            await refusal(scope, receive, send)
            return
        await self._app(scope, _replay(bytes(body), more, receive), send)


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive that returns the body already read, then defers to ``receive``."""
    pending = [{"type": "http.request", "body": body, "more_body": more}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()
    return replayed
