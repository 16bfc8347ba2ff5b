"""``tools/list`` from a cache of its wire form: per catalog, per protocol version, and
filtered per request to what the client may see.

The SDK shapes a ``tools/list`` result in three passes (dump the handler's models, validate
the dump against the protocol version's result schema, dump that again): at 2,500 tools
about 500 ms and some 130 MB of short-lived objects per listing. The tools change only
with the catalog, so ``ListingCache``, a server middleware, keeps each tool's finished wire
form and answers with a dict, which the SDK sends as it is (a middleware's own result is
trusted: ``ServerRunner._on_request``).

What a client sees is never cached: every request asks the server for the tools this
client may see now (``BridgeServer.visible_tools``, issue 20) and the answer is made of
the wire forms of exactly those tools, so a tool hidden from a client cannot reach it
through the cache, and a reload of the config's clients applies to the next listing.
The wire forms are dropped when the catalog object changes (a reload).

Building keeps the SDK's shaping: the envelope (``resultType``, the ``serverInfo`` stamp of
2026 versions) comes from the real handler asked for an empty list, and the tools go
through the version's own result schema (``mcp_types.methods.serialize_server_result``) a
hundred at a time, so little is alive at once; tools that share a schema share its wire
form too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult

CHUNK = 100
"""Tools shaped per pass of the schema: enough to amortise a pass, few to hold at once."""

_ENVELOPE_ONLY: ContextVar[bool] = ContextVar("envelope_only", default=False)


def envelope_only() -> bool:
    """True while the cache asks the ``tools/list`` handler for its envelope: the handler
    then answers with no tools."""
    return _ENVELOPE_ONLY.get()


@dataclass(frozen=True)
class Listed:
    """What one ``tools/list`` request may be answered with."""

    catalog: object
    """The catalog the tools come from: a new object after every reload."""
    published: Sequence[types.Tool]
    """Every tool the server publishes."""
    visible: Sequence[types.Tool]
    """The ones this request's client may see (a subset of the same objects)."""


@dataclass(frozen=True)
class _Shaped:
    """The wire forms of one catalog's tools in one protocol version."""

    tools: Sequence[types.Tool]
    """Held, so that no other object can take one of their ids while the cache lives."""
    wire: Mapping[int, dict[str, Any]]
    """By ``id(tool)``."""
    envelope: dict[str, Any]

    def covers(self, tools: Sequence[types.Tool]) -> bool:
        return all(id(tool) in self.wire for tool in tools)

    def answer(self, tools: Sequence[types.Tool]) -> dict[str, Any]:
        return {**self.envelope, "tools": [self.wire[id(tool)] for tool in tools]}


class ListingCache:
    """Middleware: answers ``tools/list`` (first page, no cursor) with the wire forms of
    the tools ``listed`` says the request may see, shaping those of a catalog and protocol
    version on their first listing."""

    def __init__(self, listed: Callable[[ServerRequestContext[Any]], Awaitable[Listed]]
                 ) -> None:
        self._listed = listed
        self._for: object = None
        self._shaped: dict[str, _Shaped] = {}

    async def __call__(self, ctx: ServerRequestContext[Any],
                       call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list" or _has_cursor(ctx.params) or not _ready(ctx):
            return await call_next(ctx)  # the SDK's own path: a cursor, or its gate
        listed = await self._listed(ctx)
        if listed.catalog is not self._for:
            self._for, self._shaped = listed.catalog, {}
        version = ctx.protocol_version
        shaped = self._shaped.get(version)
        if shaped is None or not shaped.covers(listed.visible):
            envelope = await _envelope(ctx, call_next)
            shaped = _Shaped(tuple(listed.published),
                             wire_forms(version, envelope, listed.published), envelope)
            if self._for is listed.catalog:  # not reloaded meanwhile
                self._shaped[version] = shaped
        return shaped.answer(listed.visible)


async def _envelope(ctx: ServerRequestContext[Any], call_next: CallNext) -> dict[str, Any]:
    token = _ENVELOPE_ONLY.set(True)
    try:
        envelope = await call_next(ctx)
    finally:
        _ENVELOPE_ONLY.reset(token)
    if not isinstance(envelope, dict):
        raise TypeError(f"tools/list envelope: expected a dict, got {type(envelope)}")
    return {key: value for key, value in envelope.items() if key != "tools"}


_SCHEMAS = (("input_schema", "inputSchema"), ("output_schema", "outputSchema"))
_STAND_IN = {"type": "object"}


def wire_forms(version: str, envelope: dict[str, Any],
               tools: Sequence[types.Tool]) -> dict[int, dict[str, Any]]:
    """Each tool's wire form in a ``tools/list`` answer of ``version``, by ``id(tool)``, as
    the SDK would shape it. The schemas are most of the answer and usually the same from
    one tool to the next, so a run of equal schemas is shaped once, alone, and shared; the
    tools are shaped with a stand-in."""
    from mcp_types.methods import serialize_server_result

    wire: dict[int, dict[str, Any]] = {}
    last: tuple[Any, Any, dict[str, Any]] | None = None
    for start in range(0, len(tools), CHUNK):
        chunk = tools[start:start + CHUNK]
        dumped = [_without_schemas(tool) for tool in chunk]
        shaped = serialize_server_result("tools/list", version,
                                         {**envelope, "tools": dumped})["tools"]
        for tool, out in zip(chunk, shaped, strict=True):
            if last is None or (tool.input_schema, tool.output_schema) != last[:2]:
                last = (tool.input_schema, tool.output_schema,
                        _shaped_schemas(version, envelope, tool))
            out.update(last[2])
            wire[id(tool)] = out
    return wire


def _without_schemas(tool: types.Tool) -> dict[str, Any]:
    dumped = tool.model_dump(by_alias=True, mode="json", exclude_none=True,
                             exclude={name for name, _ in _SCHEMAS})
    dumped["inputSchema"] = _STAND_IN
    return dumped


def _shaped_schemas(version: str, envelope: dict[str, Any],
                    tool: types.Tool) -> dict[str, Any]:
    """The wire form of ``tool``'s schemas in a ``tools/list`` answer of ``version``."""
    from mcp_types.methods import serialize_server_result

    alone = tool.model_dump(by_alias=True, mode="json", exclude_none=True,
                            include={"name", *(name for name, _ in _SCHEMAS)})
    [out] = serialize_server_result("tools/list", version, {**envelope, "tools": [alone]})[
        "tools"]
    return {wire_key: out[wire_key] for _, wire_key in _SCHEMAS if wire_key in out}


def _has_cursor(params: Mapping[str, Any] | None) -> bool:
    return params is not None and params.get("cursor") is not None


def _ready(ctx: ServerRequestContext[Any]) -> bool:
    """The SDK's gate would let this request through: the client said ``initialize``, or
    speaks a 2026 version (no handshake)."""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return ctx.session.client_params is not None or \
        ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
