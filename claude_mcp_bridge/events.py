"""stream-json lines from ``claude -p --output-format stream-json --verbose`` -> typed events.

Raw frames are dicts only in this module. Event types and fields this module does
not know are skipped here, in one place: newer CLI versions add both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import NotJSON


@dataclass(frozen=True)
class InitEvent:
    """``system/init``: the session started."""

    session_id: str | None
    model: str | None
    tools: tuple[str, ...]
    mcp_servers: tuple[tuple[str, str], ...]  # (name, status)
    version: str | None = None
    """``claude_code_version``: the CLI that runs the session."""


@dataclass(frozen=True)
class TextEvent:
    """An assistant text block."""

    text: str


@dataclass(frozen=True)
class ToolUseEvent:
    """The agent asked to run a tool."""

    tool_use_id: str
    name: str


@dataclass(frozen=True)
class ToolResultEvent:
    """A tool finished; ``tool_use_id`` refers back to its ``ToolUseEvent``."""

    tool_use_id: str
    is_error: bool


@dataclass(frozen=True)
class NoticeEvent:
    """A ``system`` event worth telling the caller about (retries, denials, fallbacks)."""

    subtype: str
    message: str


@dataclass(frozen=True)
class ResultEvent:
    """The final ``result`` event. ``is_error`` is the truth, not ``subtype``."""

    subtype: str
    is_error: bool
    result: str | None
    errors: tuple[str, ...]
    session_id: str | None
    total_cost_usd: float | None
    duration_ms: int | None
    num_turns: int | None
    usage: dict[str, Any] = field(default_factory=dict)
    permission_denials: tuple[Any, ...] = ()
    terminal_reason: str | None = None
    api_error_status: int | None = None
    structured_output: Any = None
    """The validated JSON value of a run given ``--json-schema`` (None: there is none)."""

    @property
    def text(self) -> str:
        """The answer, or the errors when there is no answer."""
        if self.result:
            return self.result
        return "; ".join(self.errors)


@dataclass(frozen=True)
class ControlRequest:
    """The CLI asks its runner something (control protocol); ``can_use_tool`` is a
    permission prompt for ``tool_name`` with ``tool_input``."""

    request_id: str
    subtype: str
    tool_name: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)
    tool_use_id: str | None = None


Event = (InitEvent | TextEvent | ToolUseEvent | ToolResultEvent | NoticeEvent | ResultEvent
         | ControlRequest)


def parse_line(line: str) -> list[Event]:
    """Turn one stdout line into events (an assistant line can hold several blocks).

    Raises ``NotJSON`` for a line that is not a JSON object; returns ``[]`` for
    JSON the bridge has no use for.
    """
    try:
        frame = json.loads(line)
    except ValueError as exc:
        raise NotJSON(line) from exc
    if not isinstance(frame, dict):
        raise NotJSON(line)
    kind = frame.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    return parser(frame) if parser else []


def _system(frame: dict[str, Any]) -> list[Event]:
    subtype = _str(frame.get("subtype")) or ""
    if subtype == "init":
        servers = tuple(
            (_str(s.get("name")) or "?", _str(s.get("status")) or "?")
            for s in _list(frame.get("mcp_servers"))
            if isinstance(s, dict)
        )
        tools = tuple(t for t in _list(frame.get("tools")) if isinstance(t, str))
        return [InitEvent(_str(frame.get("session_id")), _str(frame.get("model")), tools, servers,
                          _str(frame.get("claude_code_version")))]
    message = _notice_message(subtype, frame)
    return [NoticeEvent(subtype, message)] if message else []


def _notice_message(subtype: str, frame: dict[str, Any]) -> str | None:
    if subtype == "api_retry":
        status = frame.get("error_status")
        return f"API retry {frame.get('attempt')}/{frame.get('max_retries')} (status {status})"
    if subtype == "permission_denied":
        return f"permission denied: {_str(frame.get('tool_name')) or 'a tool'}"
    if subtype == "model_fallback":
        return f"model fallback to {_str(frame.get('to_model')) or _str(frame.get('model')) or '?'}"
    return None


def _assistant(frame: dict[str, Any]) -> list[Event]:
    message = frame.get("message")
    if not isinstance(message, dict) or frame.get("parent_tool_use_id"):
        return []  # subagent traffic is not the agent's own answer
    events: list[Event] = []
    for block in _list(message.get("content")):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            events.append(TextEvent(block["text"]))
        elif block.get("type") == "tool_use":
            events.append(ToolUseEvent(_str(block.get("id")) or "", _str(block.get("name")) or "?"))
    return events


def _user(frame: dict[str, Any]) -> list[Event]:
    message = frame.get("message")
    if not isinstance(message, dict):
        return []
    return [
        ToolResultEvent(_str(block.get("tool_use_id")) or "", bool(block.get("is_error")))
        for block in _list(message.get("content"))
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


def _result(frame: dict[str, Any]) -> list[Event]:
    usage = frame.get("usage")
    return [
        ResultEvent(
            subtype=_str(frame.get("subtype")) or "unknown",
            is_error=bool(frame.get("is_error")),
            result=_str(frame.get("result")),
            errors=tuple(str(e) for e in _list(frame.get("errors"))),
            session_id=_str(frame.get("session_id")),
            total_cost_usd=_number(frame.get("total_cost_usd")),
            duration_ms=_int(frame.get("duration_ms")),
            num_turns=_int(frame.get("num_turns")),
            usage=usage if isinstance(usage, dict) else {},
            permission_denials=tuple(_list(frame.get("permission_denials"))),
            terminal_reason=_str(frame.get("terminal_reason")),
            api_error_status=_int(frame.get("api_error_status")),
            structured_output=frame.get("structured_output"),
        )
    ]


def _control_request(frame: dict[str, Any]) -> list[Event]:
    request = frame.get("request")
    request_id = _str(frame.get("request_id"))
    if not isinstance(request, dict) or request_id is None:
        return []
    tool_input = request.get("input")
    return [ControlRequest(
        request_id=request_id, subtype=_str(request.get("subtype")) or "",
        tool_name=_str(request.get("tool_name")) or "",
        tool_input=tool_input if isinstance(tool_input, dict) else {},
        tool_use_id=_str(request.get("tool_use_id")))]


_PARSERS = {"system": _system, "assistant": _assistant, "user": _user, "result": _result,
            "control_request": _control_request}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


class ProgressNarrator:
    """Turns events into the short, human progress messages a client shows."""

    def __init__(self) -> None:
        self._tool_names: dict[str, str] = {}

    def describe(self, event: Event) -> str | None:
        match event:
            case InitEvent(model=model, tools=tools, mcp_servers=servers):
                text = f"started ({model or 'default model'}, {len(tools)} tools"
                connected = [name for name, status in servers if status == "connected"]
                pending = [name for name, status in servers if status == "pending"]
                failed = [name for name, status in servers
                          if status not in ("connected", "pending")]
                if servers:
                    text += f", MCP: {len(connected)}/{len(servers)} connected"
                if pending:
                    text += f"; pending: {', '.join(pending)}"
                if failed:
                    text += f"; failed: {', '.join(failed)}"
                return text + ")"
            case TextEvent(text=text):
                return f"wrote {len(text.split())} words"
            case ToolUseEvent(tool_use_id=tool_id, name=name):
                self._tool_names[tool_id] = name
                return f"running tool {name}"
            case ToolResultEvent(tool_use_id=tool_id, is_error=is_error):
                name = self._tool_names.get(tool_id, "tool")
                return f"{name} failed" if is_error else f"{name} done"
            case NoticeEvent(message=message):
                return message
            case ResultEvent(num_turns=turns, total_cost_usd=cost):
                return f"finished ({turns or 0} turns, ${cost or 0:.4f})"
        return None


SUMS_RESUMED_FROM = (2, 1, 332)
"""From this CLI version on (checked: 2.1.332; 2.1.197 does not), a process started with
``--resume`` reports ``total_cost_usd`` over the whole session, its earlier processes
included. Versions in between are taken not to: charging a call more than its share is
safe, less is not."""


def sums_resumed_sessions(version: str | None) -> bool:
    """Whether this CLI's ``--resume`` total includes the session's earlier processes."""
    try:
        parts = tuple(int(part) for part in (version or "").split(".")[:3])
    except ValueError:
        return False
    return len(parts) == 3 and parts >= SUMS_RESUMED_FROM
