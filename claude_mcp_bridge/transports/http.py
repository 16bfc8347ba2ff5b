"""Serve over HTTP: Streamable HTTP at ``/mcp`` and legacy SSE at ``/sse``, one app.

    /mcp        Streamable HTTP (stateful, SSE responses: progress and cancellation work)
    /sse        legacy SSE stream; its messages are POSTed to /messages/?session_id=...
    /health     liveness: the process is up (never needs the token)
    /ready      readiness: catalog loaded, ledger open, claude found (503 otherwise)

Safety, in the order a request meets it:
- connection limits (``limits.py``): a cap below the descriptor limit, deadlines for
  the request head and body (408);
- Host and Origin on every path (``guards.py``): loopback names or the config's
  allow-lists (421 / 403), against DNS rebinding;
- a bearer token on everything but ``/health``: the single token, or a client's
  (``[clients.<name>]``, known by its hash; ``clients.py``), compared in constant time.
  Required when either is configured, and always when binding beyond loopback. The
  client's name goes into the ASGI scope, where the server reads it for every call;
- JSON nested too deeply gets a parse error (``guards.py``); the SDK's body limit (413);
- the session cap on Streamable HTTP, where unused and least recently used idle
  sessions make room (``sessions.py``); the same cap (503) on open SSE streams.

SIGTERM or SIGINT drains: new calls are refused, calls in flight get
``drain_timeout_s`` to finish, the rest are stopped (children ended, ledger rows
settled), then uvicorn closes the connections.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import anyio
import uvicorn
from mcp.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..clients import CLIENT_SCOPE_KEY, NO_CLIENTS, Clients
from ..config import HttpConfig
from ..server import POST_SCOPE_KEY, Bridge
from .guards import HostAndOrigin, JsonDepthLimit
from .limits import ConnectionLimits, GuardedListener, guarded_protocol, raise_fd_limit
from .sessions import SessionKeeper

logger = logging.getLogger(__name__)

TOKEN_VAR = "CLAUDE_MCP_BRIDGE_TOKEN"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_OPEN_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class HttpOptions:
    """Everything the HTTP server needs, resolved from the config, flags and environment."""

    host: str
    port: int
    token: str | None
    allowed_hosts: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    max_body_bytes: int
    max_sessions: int
    session_idle_timeout_s: float
    unused_session_timeout_s: float
    drain_timeout_s: float
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    max_json_depth: int
    stateless: bool = False

    @classmethod
    def from_config(cls, http: HttpConfig, *, host: str | None, port: int | None,
                    token: str | None) -> HttpOptions:
        return cls(
            host=host or http.host, port=http.port if port is None else port,
            token=token or http.token, allowed_hosts=tuple(http.allowed_hosts),
            allowed_origins=tuple(http.allowed_origins), max_body_bytes=http.max_body_bytes,
            max_sessions=http.max_sessions, session_idle_timeout_s=http.session_idle_timeout_s,
            unused_session_timeout_s=http.unused_session_timeout_s,
            drain_timeout_s=http.drain_timeout_s, max_connections=http.max_connections,
            header_timeout_s=http.header_timeout_s, body_timeout_s=http.body_timeout_s,
            max_json_depth=http.max_json_depth, stateless=http.stateless)

    def problem(self, clients: Clients = NO_CLIENTS) -> str | None:
        """Why this configuration must not start, or None."""
        if not is_loopback(self.host) and not self.token and not clients.any_token:
            return (f"binding to {self.host} exposes agents that run commands on this machine; "
                    f"set a bearer token ([http] token or ${TOKEN_VAR}), give a client one "
                    "(`claude-mcp-bridge token add NAME`) or bind to 127.0.0.1")
        return None

    def security(self) -> TransportSecuritySettings:
        hosts = [*_LOOPBACK_NAMES, *(f"{name}:*" for name in _LOOPBACK_NAMES)]
        if not is_loopback(self.host) and self.host not in ("0.0.0.0", "::"):
            hosts += [self.host, f"{self.host}:*"]
        origins = [f"{scheme}://{name}{port}" for scheme in ("http", "https")
                   for name in _LOOPBACK_NAMES for port in ("", ":*")]
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[*hosts, *self.allowed_hosts],
            allowed_origins=[*origins, *self.allowed_origins])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticate:
    """ASGI middleware: every path but ``/health`` needs ``Authorization: Bearer <token>``,
    the single token (the owner) or a client's, whenever either exists or the bridge
    listens beyond loopback. The clients are read per request, so a token revoked in the
    config file stops working as soon as the file is reloaded."""

    def __init__(self, app: ASGIApp, token: str | None, clients: Callable[[], Clients], *,
                 always: bool) -> None:
        self._app = app
        self._token = token.encode() if token else None
        self._clients = clients
        self._always = always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        clients = self._clients()
        if self._token is None and not clients.any_token and not self._always:
            await self._app(scope, receive, send)  # a tokenless loopback bridge
            return
        scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
        credentials = credentials.strip() if scheme.lower() == "bearer" else ""
        if self._token is not None and hmac.compare_digest(credentials.encode(), self._token):
            await self._app(scope, receive, send)
            return
        client = clients.identify(credentials) if credentials else None
        if client is not None:
            await self._app({**scope, CLIENT_SCOPE_KEY: client}, receive, send)
            return
        response = JSONResponse(
            {"error": "unauthorized", "error_description": "missing or wrong bearer token"},
            status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        await response(scope, receive, send)


class StopOnDisconnect:
    """ASGI middleware for ``/mcp``: a client whose POST connection drops before its
    answer was sent has its tool call stopped (and its child ended).

    The SDK keeps a stateful session's request running when the POST's response
    stream goes away without a ``notifications/cancelled`` (a killed client, a proxy
    timeout); this watches the ASGI ``http.disconnect`` and tells the bridge.
    """

    def __init__(self, app: ASGIApp, bridge: Bridge, max_body_bytes: int) -> None:
        self._app = app
        self._bridge = bridge
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        post = uuid.uuid4().hex
        scope = {**scope, POST_SCOPE_KEY: post}  # the server's request_key reads it
        body = bytearray()
        key: tuple[str | None, str] | None = None
        answered = False

        async def watched_receive() -> Message:
            nonlocal key
            message = await receive()
            if message["type"] == "http.request" and len(body) <= self._max_body:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    key = _call_key(post, bytes(body))
            elif (message["type"] == "http.disconnect" and key is not None and not answered
                  and self._bridge.calls.stop_call(key, "the client disconnected")):
                logger.info("client disconnected during call %s: stopping it", key[1])
            return message

        async def watched_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True
            await send(message)

        await self._app(scope, watched_receive, watched_send)


def _call_key(post: str, body: bytes) -> tuple[str | None, str] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    return (post, str(message.get("id")))


class _StreamCount:
    """Open legacy SSE streams, capped like Streamable HTTP sessions."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @contextmanager
    def hold(self) -> Iterator[bool]:
        if self.open >= self.limit:
            yield False
            return
        self.open += 1
        try:
            yield True
        finally:
            self.open -= 1


def build_app(bridge: Bridge, server: Server[Any], options: HttpOptions) -> ASGIApp:
    security = options.security()
    manager = StreamableHTTPSessionManager(
        app=server, security_settings=security, max_request_body_size=options.max_body_bytes,
        max_sessions=options.max_sessions, session_idle_timeout=options.session_idle_timeout_s,
        stateless=options.stateless)
    sse = SseServerTransport("/messages/", security_settings=security,
                             max_request_body_size=options.max_body_bytes)
    streams = _StreamCount(options.max_sessions)
    mcp_app: ASGIApp = StopOnDisconnect(StreamableHTTPASGIApp(manager), bridge,
                                        options.max_body_bytes)
    sessions = None if options.stateless else SessionKeeper(
        mcp_app, manager, max_sessions=options.max_sessions,
        unused_timeout_s=options.unused_session_timeout_s)

    async def handle_sse(request: Request) -> Response:
        with streams.hold() as admitted:
            if not admitted:
                return JSONResponse({"error": "too many open SSE sessions"}, status_code=503)
            async with sse.connect_sse(request.scope, request.receive,
                                       request._send) as (read, write):
                await server.run(read, write, server.create_initialization_options())
        return Response()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run(), anyio.create_task_group() as tg:
            if sessions is not None:  # stateless: no sessions to keep
                tg.start_soon(sessions.expire_unused)
            yield
            tg.cancel_scope.cancel()

    app: ASGIApp = Starlette(
        routes=[
            Route("/mcp", endpoint=JsonDepthLimit(sessions or mcp_app, options.max_json_depth,
                                                  options.max_body_bytes)),
            Route("/sse", endpoint=handle_sse, methods=["GET"]),
            Mount("/messages/", app=JsonDepthLimit(sse.handle_post_message,
                                                   options.max_json_depth,
                                                   options.max_body_bytes)),
            *_probes(bridge),
        ],
        lifespan=lifespan,
    )
    app = Authenticate(app, options.token, lambda: bridge.clients,
                       always=not is_loopback(options.host))
    return HostAndOrigin(app, security.allowed_hosts or (), security.allowed_origins or ())


def _probes(bridge: Bridge) -> list[Route]:
    """``/health`` (the process answers) and ``/ready`` (it can take calls, and why not)."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": version("claude-mcp-bridge"),
                             "uptime_s": round(time.monotonic() - bridge.started, 3)})

    async def ready(request: Request) -> Response:
        body = await anyio.to_thread.run_sync(readiness, bridge)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    return [Route("/health", endpoint=health, methods=["GET"]),
            Route("/ready", endpoint=ready, methods=["GET"])]


def readiness(bridge: Bridge) -> dict[str, Any]:
    """The /ready body: what a load balancer or a person needs to see at a glance."""
    registry = bridge.catalog.registry
    problems = []
    if bridge.settings.claude.path is None:
        problems.append(bridge.settings.claude.missing_message())
    if bridge.calls.draining:
        problems.append("shutting down")
    if bridge.ledger.problem:
        problems.append(bridge.ledger.problem)
    try:
        left = bridge.ledger.budget_left(bridge.global_budget)
    except Exception as exc:  # the ledger is unusable: not ready, and say why
        problems.append(f"ledger: {exc}")
        left = {"daily": None, "monthly": None}
    return {
        "ready": not problems,
        "problems": problems,
        "version": version("claude-mcp-bridge"),
        "uptime_s": round(time.monotonic() - bridge.started, 3),
        "tools_published": len(bridge.catalog.tools),
        "files_rejected": sum(1 for d in registry.diagnostics if d.severity == "error"),
        "calls_in_flight": bridge.calls.count,
        "calls_queued": bridge.slots.waiting,
        "budget_left_today_usd": left["daily"],
        "budget_left_month_usd": left["monthly"],
    }


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the bridge drains first, then stops it."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(
    bridge: Bridge, server: Server[Any], options: HttpOptions,
    on_started: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    app = build_app(bridge, server, options)
    fd_limit = raise_fd_limit()
    limits = ConnectionLimits.within(
        fd_limit, max_connections=options.max_connections,
        header_timeout_s=options.header_timeout_s, body_timeout_s=options.body_timeout_s)
    if limits.max_connections < options.max_connections:
        logger.info("at most %d connections: the descriptor limit is %d",
                    limits.max_connections, fd_limit)
    protocol = guarded_protocol(limits)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_config=None,
                            access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                            ws="none", http=protocol, backlog=limits.backlog)
    listener = GuardedListener.around(config.bind_socket(), protocol.guard)
    web = _Uvicorn(config)
    async with anyio.create_task_group() as tg:

        async def drain_then_stop() -> None:
            await bridge.calls.drain(options.drain_timeout_s)
            web.should_exit = True

        async def stop_on_signal() -> None:
            # The receiver stays open until the server is down: a second signal must not
            # kill the process mid-drain (it stops the calls in flight at once instead).
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as got:
                async for signum in got:
                    name = signal.Signals(signum).name
                    if not bridge.calls.draining:
                        logger.info("received %s: draining", name)
                        tg.start_soon(drain_then_stop)
                    else:
                        logger.warning("received %s again: stopping calls in flight now", name)
                        bridge.calls.stop_all()

        async def announce() -> None:
            while not web.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await anyio.sleep(0.02)
            url = _url(web, options.host)
            logger.info("listening on %s (Streamable HTTP at /mcp, SSE at /sse)", url,
                        extra={"event": "http.listening", "url": url})
            if on_started is not None:
                await on_started(url)

        tg.start_soon(stop_on_signal)
        tg.start_soon(announce)
        await web.serve(sockets=[listener])
        tg.cancel_scope.cancel()


def _url(web: uvicorn.Server, host: str) -> str:
    for listener in web.servers:
        for sock in listener.sockets:
            port = sock.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            return f"http://{shown}:{port}"
    return f"http://{host}"
