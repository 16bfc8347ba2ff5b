"""A scripted Anthropic Messages API on loopback, for running the real `claude` CLI offline.

    with scripted_model([{"text": "Hello"}]) as server:
        env = {"PATH": ..., **server.cli_env(home)}   # ANTHROPIC_BASE_URL, key, offline switches
        ... run `claude -p --output-format stream-json --verbose` with env ...
        server.requests        # every request, in arrival order (RecordedRequest)
        server.turn_requests   # the model turns only (each consumed one script turn)
        server.last.system_text, server.last.tool_names, server.last.tool_results

A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 with a free port, in a thread: no event loop, so it
works the same from sync and async tests. Each response closes its connection (HTTP/1.0).

The script is a list of turns, consumed in order by the model turns ("main" requests):

- ``{"text": "..."}``: an assistant text answer, stop_reason ``end_turn``.
- ``{"tool_use": {"name": "Read", "input": {...}, "id": "toolu_x"}}`` (``id`` optional): a tool
  call, stop_reason ``tool_use``; a ``"text"`` in the same turn comes first as its own block;
  ``tool_use`` may also be a list of calls.
- ``{"error": 401|429|500|529, "message": "..."?}``: that HTTP status with the Anthropic error body
  (``{"type":"error","error":{"type":"authentication_error",...}}``) and ``x-should-retry: false``.
- ``{"delay": seconds}``: wait before answering; ``{"slow": seconds}``: wait between stream chunks
  (the text and the tool input are then sent in about 8 deltas). Both can be keys of a turn, or a
  turn of their own, which then applies to the next turn (a bare modifier consumes no request).
- ``{"hold": "name"}``: the request is recorded, then not answered until the test calls
  ``release("name")`` (or the server stops): the model "thinks" exactly as long as a test needs,
  e.g. to write to the CLI while its turn runs.
- ``{"usage": {"input_tokens": n, "output_tokens": n, ...}}``: the usage reported for the turn
  (default ``DEFAULT_USAGE``); the CLI computes ``total_cost_usd`` from it.
- ``{"stop_reason": "max_tokens"}``: overrides the stop reason.
- ``{"break": true}``: the stream is cut (TCP reset) after its first delta and the turn, without
  ``break``, goes back to the front of the script: the CLI 2.1.197 then retries the same turn
  *without streaming* and gets the answer as one JSON message.

When the script runs out, every model turn is answered with the text ``"done"``.

What the real CLI 2.1.197 sent in ``-p`` mode (checked with this server, see
``tests/fixtures/real_cli/``): one ``HEAD /`` at start-up, then one ``POST /v1/messages?beta=true``
with ``"stream": true`` per model turn, subagent turns included (they carry another system prompt
and fewer tools, and are model turns too). Nothing else reached the base URL in plain, tool,
Bash-with-rules, subagent, MCP, resume and agent runs: no title generation, no quota probe, no
Bash prefix check (a plain run without ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` also sent
nothing else to the base URL). A broken stream
is retried once with a non-streaming request (no ``stream`` key). :func:`classify` still answers
the side-request shapes other versions and modes are known to send (``max_tokens`` of 1, or no
tools and a system prompt that is not the CLI's own) with ``side_text``, without consuming a turn;
they are kept in ``side_requests``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_USAGE",
    "ERRORS",
    "RecordedRequest",
    "ScriptedModel",
    "classify",
    "cli_env",
    "scripted_model",
]

#: HTTP status -> (Anthropic error type, default message), as the real API answers.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

DEFAULT_USAGE: dict[str, int] = {"input_tokens": 100, "output_tokens": 20,
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

_MODIFIERS = frozenset({"delay", "slow"})
# The CLI's own system prompt (2.1.197) has one of these in its first blocks, after the
# "x-anthropic-billing-header: ..." block: plain runs and --agent runs say "You are a Claude
# agent, built on Anthropic's Claude Agent SDK.", --append-system-prompt runs "You are Claude
# Code, ...", subagents "You are an agent for Claude Code, ...".
_MAIN_SYSTEM_MARKERS = ("You are Claude Code", "You are a Claude agent",
                        "You are an agent for Claude Code")


def cli_env(base_url: str, home: str, **extra: str) -> dict[str, str]:
    """The variables that point the real CLI at ``base_url``, offline, with its own config dir.

    Add ``PATH`` yourself. ``HOME`` and ``CLAUDE_CONFIG_DIR`` (``<home>/.claude``) keep the run
    away from the user's files; give each concurrent run its own ``home``.
    """
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-test",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "ENABLE_TOOL_SEARCH": "false",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "HOME": home,
        "CLAUDE_CONFIG_DIR": f"{home}/.claude",
        **extra,
    }


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None for HEAD/GET; str if it was not JSON)
    kind: str = "other"  # "main" (a model turn), "side", "probe" (HEAD), "other"
    turn: dict[str, Any] | None = None  # the script turn that answered it (main only)

    def _get(self, key: str) -> Any:
        return self.body.get(key) if isinstance(self.body, dict) else None

    @property
    def model(self) -> str | None:
        model = self._get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return bool(self._get("stream"))

    @property
    def system_blocks(self) -> list[str]:
        system = self._get("system")
        if isinstance(system, str):
            return [system]
        return [b.get("text", "") for b in system or [] if isinstance(b, dict)]

    @property
    def system_text(self) -> str:
        return "\n".join(self.system_blocks)

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in self._get("tools") or [] if isinstance(t, dict)]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self._get("messages") or [])

    def blocks(self, block_type: str) -> list[dict[str, Any]]:
        """Every content block of ``block_type`` in the messages, in order."""
        found = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                found += [b for b in content if isinstance(b, dict) and b.get("type") == block_type]
        return found

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        return self.blocks("tool_result")

    @property
    def message_text(self) -> str:
        """The text of every message (tool results included), for "did X reach the model"."""
        parts: list[str] = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
                continue
            for block in content or []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text":
                    parts.append(block.get("text", ""))
                elif block.get("type") == "tool_result":
                    inner = block.get("content")
                    if isinstance(inner, str):
                        parts.append(inner)
                    elif isinstance(inner, list):
                        parts += [i.get("text", "") for i in inner if isinstance(i, dict)]
        return "\n".join(parts)


def classify(method: str, path: str, body: Any) -> str:
    """Tell the CLI's model turns ("main") from side requests, probes and anything else."""
    if method == "HEAD":
        return "probe"
    if method != "POST" or urlsplit(path).path != "/v1/messages" or not isinstance(body, dict):
        return "other"
    if body.get("max_tokens") == 1:
        return "side"  # a quota / connectivity probe
    system = body.get("system")
    if isinstance(system, str):
        head = system
    else:
        head = "\n".join(b.get("text", "") for b in (system or [])[:3] if isinstance(b, dict))
    if not body.get("tools") and not any(marker in head for marker in _MAIN_SYSTEM_MARKERS):
        return "side"  # title / topic / command-prefix helpers: no tools, their own prompt
    return "main"


class ScriptedModel:
    """The server; :func:`scripted_model` runs one for a ``with`` block."""

    def __init__(self, script: Sequence[Mapping[str, Any]] = (), *,
                 side_text: str = "Side answer", default_text: str = "done") -> None:
        self._script: list[dict[str, Any]] = [dict(t) for t in script]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self.side_text = side_text
        self.default_text = default_text
        self.requests: list[RecordedRequest] = []
        self._released: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- script ------------------------------------------------------------------------------
    def add(self, *turns: Mapping[str, Any]) -> None:
        """Append turns to the script (also while running)."""
        with self._lock:
            self._script += [dict(t) for t in turns]

    @property
    def remaining(self) -> list[dict[str, Any]]:
        """The turns not consumed yet."""
        with self._lock:
            return copy.deepcopy(self._script)

    def _next_turn(self) -> dict[str, Any]:
        with self._lock:
            turn: dict[str, Any] = {}
            while self._script:
                item = self._script.pop(0)
                turn = {**turn, **item}
                if not set(item) <= _MODIFIERS:
                    return turn
            return {"text": self.default_text, **turn}

    def _push_front(self, turn: dict[str, Any]) -> None:
        with self._lock:
            self._script.insert(0, turn)

    # -- records -----------------------------------------------------------------------------
    def _record(self, record: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()

    @property
    def turn_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "main"]

    @property
    def side_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "side"]

    @property
    def last(self) -> RecordedRequest:
        """The last model turn request (fails when there was none)."""
        turns = self.turn_requests
        assert turns, "no model request reached the scripted server"
        return turns[-1]

    def release(self, name: str) -> None:
        """Answer the turns held with ``{"hold": name}`` (now and later)."""
        with self._changed:
            self._released.add(name)
            self._changed.notify_all()

    def _held(self, name: str) -> bool:
        """Wait until ``name`` is released; False when the server stopped first."""
        with self._changed:
            while name not in self._released:
                if self._stop.is_set():
                    return False
                self._changed.wait()
            return True

    def wait_for_turns(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Block until ``count`` model turns have arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(r.kind == "main" for r in self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli_env(self, home: str, **extra: str) -> dict[str, str]:
        """:func:`cli_env` for this server."""
        return cli_env(self.base_url, home, **extra)

    def start(self) -> ScriptedModel:
        model = self

        class Handler(_Handler):
            server_model = model

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = False  # server_close() joins the handlers: nothing left behind
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"scripted-model-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in delay/slow; they return at once
        with self._changed:
            self._changed.notify_all()  # and those held
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops; False when it stopped."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()

    def _message_id(self) -> str:
        return f"msg_fake_{next(self._ids):04d}"


@contextlib.contextmanager
def scripted_model(script: Sequence[Mapping[str, Any]] = (), **options: Any
                   ) -> Iterator[ScriptedModel]:
    """Run a :class:`ScriptedModel` on 127.0.0.1 (a free port) for the ``with`` block."""
    with ScriptedModel(script, **options) as server:
        yield server


# -- HTTP ------------------------------------------------------------------------------------
def _content_blocks(turn: Mapping[str, Any], message_id: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.get("text") is not None:
        blocks.append({"type": "text", "text": str(turn["text"])})
    calls = turn.get("tool_use")
    if isinstance(calls, Mapping):
        calls = [calls]
    for n, call in enumerate(calls or []):
        blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_{message_id[4:]}_{n}",
                       "name": call["name"], "input": dict(call.get("input") or {})})
    return blocks


def _chunks(text: str, parts: int) -> list[str]:
    """``text`` in about ``parts`` pieces (at spaces when there are enough words)."""
    if not text or parts <= 1:
        return [text]
    words = text.split(" ")
    if len(words) >= parts:
        size = -(-len(words) // parts)
        return [" ".join(words[i:i + size]) + (" " if i + size < len(words) else "")
                for i in range(0, len(words), size)]
    size = max(1, -(-len(text) // parts))
    return [text[i:i + size] for i in range(0, len(text), size)]


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, default = ERRORS.get(status, ("api_error", f"HTTP {status}"))
    return {"type": "error", "error": {"type": kind, "message": message or default},
            "request_id": "req_fake"}


class _Handler(BaseHTTPRequestHandler):
    server_model: ScriptedModel
    protocol_version = "HTTP/1.0"  # one response per connection: no keep-alive bookkeeping
    timeout = 60  # socket timeout: a stuck client cannot hold a handler thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _keep(self, body: Any) -> RecordedRequest:
        record = RecordedRequest(self.command, self.path, dict(self.headers.items()), body,
                                 classify(self.command, self.path, body))
        self.server_model._record(record)
        return record

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_HEAD(self) -> None:
        self._keep(None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._keep(None)
        self._json(404, _error_body(404, f"GET {self.path} is not served by the fake"))

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = self._keep(body)
        try:
            if record.kind == "other":
                self._json(404, _error_body(404, f"POST {self.path} is not served by the fake"))
            elif record.kind == "side":
                self._answer(body, {"text": self.server_model.side_text,
                                    "usage": {"input_tokens": 1, "output_tokens": 1}})
            else:
                record.turn = self.server_model._next_turn()
                self._answer(body, record.turn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a killed CLI): nothing to answer

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, "Overloaded" if status == 529 else None)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, body: dict[str, Any], turn: dict[str, Any]) -> None:
        model = self.server_model
        if not model._sleep(float(turn.get("delay") or 0)):
            return
        if "hold" in turn and not model._held(str(turn["hold"])):
            return
        if "error" in turn:
            status = int(turn["error"])
            self._json(status, _error_body(status, turn.get("message")),
                       {"x-should-retry": "false"})
            return
        message_id = model._message_id()
        blocks = _content_blocks(turn, message_id)
        stop_reason = turn.get("stop_reason") or (
            "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn")
        usage = {**DEFAULT_USAGE, **(turn.get("usage") or {})}
        message = {"id": message_id, "type": "message", "role": "assistant",
                   "model": body.get("model") or "claude-fake", "content": blocks,
                   "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            self._json(200, message)
            return
        cut = bool(turn.get("break"))
        if cut:  # the retry gets the same turn, whole
            model._push_front({k: v for k, v in turn.items() if k not in ("break", "delay")})
        self._stream(message, float(turn.get("slow") or 0), cut)

    def _stream(self, message: dict[str, Any], slow: float, cut: bool) -> None:
        model = self.server_model
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", "req_fake")
        self.send_header("Connection", "close")
        self.end_headers()

        def send(name: str, data: dict[str, Any], pause: bool = False) -> bool:
            """Write one SSE event; False when the server is stopping."""
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
            return model._sleep(slow) if pause and slow else not model._stop.is_set()

        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        if not send("message_start", {"type": "message_start", "message": start}):
            return
        parts = 8 if slow else 1
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opening: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"], parts)]
            else:
                opening = {"type": "tool_use", "id": block["id"], "name": block["name"],
                           "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": c}
                          for c in _chunks(json.dumps(block["input"]), parts)]
            if not send("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": opening}):
                return
            for delta in deltas:
                if not send("content_block_delta", {"type": "content_block_delta",
                                                    "index": index, "delta": delta}, pause=True):
                    return
                if cut:  # reset the connection mid-message (RST, no FIN)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
            if not send("content_block_stop", {"type": "content_block_stop", "index": index}):
                return
        send("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": message["stop_reason"],
                                         "stop_sequence": None},
                               "usage": dict(usage)})
        send("message_stop", {"type": "message_stop"})
