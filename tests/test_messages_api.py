"""The scripted Messages API (tests/fakes/messages_api.py), and the real CLI against it.

The plain tests speak HTTP to the server. The `real_cli` tests run the real `claude` (path from
CLAUDE_MCP_BRIDGE_REAL_CLAUDE, else <repo>/.cache/claude-cli/node_modules/.bin/claude) and keep
proving the facts our parser and runner rely on; the captured outputs live in
tests/fixtures/real_cli/ (re-captured with tests/fixtures/real_cli/capture.py).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.messages_api import ScriptedModel, classify, scripted_model

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "real_cli"

MAIN_BODY: dict[str, Any] = {
    "model": "claude-test", "max_tokens": 1000, "stream": True,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=test;"},
               {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude "
                                        "Agent SDK."}],
    "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
}


# -- a tiny HTTP client ----------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for chunk in self.raw.decode().split("\n\n"):
            if not chunk.strip():
                continue
            lines = dict(line.split(": ", 1) for line in chunk.splitlines())
            found.append((lines["event"], json.loads(lines["data"])))
        return found


def request(server: ScriptedModel, method: str = "POST", path: str = "/v1/messages?beta=true",
            body: Any = None, timeout: float = 10) -> Reply:
    with closing(http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)) as conn:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        with closing(conn.getresponse()) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read())


def post(server: ScriptedModel, **overrides: Any) -> Reply:
    return request(server, body={**MAIN_BODY, **overrides})


def assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Build the final message from stream events, as an SDK would."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = {**data["message"], "content": []}
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
    return message


# -- the server ------------------------------------------------------------------------------
def test_head_probe_is_answered_and_recorded() -> None:
    with scripted_model() as server:
        reply = request(server, "HEAD", "/")
        assert reply.status == 200
        assert [r.kind for r in server.requests] == ["probe"]
        assert server.turn_requests == []


def test_a_text_turn_streams_the_full_messages_event_sequence() -> None:
    with scripted_model([{"text": "Hello there", "usage": {"input_tokens": 7,
                                                          "output_tokens": 3}}]) as server:
        reply = post(server)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    events = reply.events()
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["model"] == "claude-test"
    assert start["usage"]["input_tokens"] == 7
    message = assemble(events)
    assert message["content"] == [{"type": "text", "text": "Hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 3


def test_a_tool_use_turn_streams_input_json_and_stops_for_the_tool() -> None:
    call = {"name": "mcp__calendar__find_slots", "input": {"day": "Tuesday", "minutes": 30}}
    with scripted_model([{"text": "Checking.", "tool_use": call}]) as server:
        message = assemble(post(server).events())
    text, tool = message["content"]
    assert text == {"type": "text", "text": "Checking."}
    assert tool["type"] == "tool_use" and tool["name"] == call["name"]
    assert tool["input"] == call["input"]
    assert tool["id"].startswith("toolu_")
    assert message["stop_reason"] == "tool_use"


def test_several_tool_calls_and_explicit_ids() -> None:
    calls = [{"name": "Read", "input": {"file_path": "/a"}, "id": "toolu_one"},
             {"name": "Grep", "input": {"pattern": "x"}}]
    with scripted_model([{"tool_use": calls}]) as server:
        message = assemble(post(server).events())
    assert [b["name"] for b in message["content"]] == ["Read", "Grep"]
    assert message["content"][0]["id"] == "toolu_one"
    assert message["content"][1]["id"] != "toolu_one"


@pytest.mark.parametrize(("status", "kind"), [(401, "authentication_error"),
                                              (429, "rate_limit_error"), (500, "api_error"),
                                              (529, "overloaded_error")])
def test_error_turns_answer_the_anthropic_error_shape(status: int, kind: str) -> None:
    with scripted_model([{"error": status}, {"text": "after"}]) as server:
        reply = post(server)
        assert reply.status == status
        assert reply.headers["x-should-retry"] == "false"
        body = reply.json()
        assert body["type"] == "error" and body["error"]["type"] == kind
        assert body["error"]["message"]
        assert assemble(post(server).events())["content"][0]["text"] == "after"


def test_non_streaming_requests_get_one_json_message() -> None:
    with scripted_model([{"text": "whole", "tool_use": {"name": "Read", "input": {"a": 1}}}]
                        ) as server:
        reply = post(server, stream=False)
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert [b["type"] for b in message["content"]] == ["text", "tool_use"]
    assert message["content"][1]["input"] == {"a": 1}
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] > 0


def test_turns_are_consumed_in_order_then_done() -> None:
    with scripted_model([{"text": "one"}, {"text": "two"}]) as server:
        texts = [assemble(post(server).events())["content"][0]["text"] for _ in range(4)]
        assert texts == ["one", "two", "done", "done"]
        assert server.remaining == []
        assert [r.turn for r in server.turn_requests][:2] == [{"text": "one"}, {"text": "two"}]


def test_turns_can_be_added_while_running() -> None:
    with scripted_model() as server:
        server.add({"text": "late"})
        assert assemble(post(server).events())["content"][0]["text"] == "late"


def test_side_requests_do_not_consume_a_turn() -> None:
    with scripted_model([{"text": "main answer"}], side_text="Title") as server:
        probe = post(server, max_tokens=1, tools=[])
        title = post(server, tools=[], system=[{"type": "text", "text": "Generate a title"}])
        main = post(server)
        assert assemble(probe.events())["content"][0]["text"] == "Title"
        assert assemble(title.events())["content"][0]["text"] == "Title"
        assert assemble(main.events())["content"][0]["text"] == "main answer"
        assert [r.kind for r in server.requests] == ["side", "side", "main"]
        assert len(server.side_requests) == 2 and len(server.turn_requests) == 1


def test_classify_keeps_tool_less_main_turns_as_main() -> None:
    assert classify("POST", "/v1/messages?beta=true", {**MAIN_BODY, "tools": []}) == "main"
    assert classify("POST", "/v1/messages", {"model": "m", "max_tokens": 1}) == "side"
    assert classify("POST", "/v1/other", MAIN_BODY) == "other"
    assert classify("HEAD", "/", None) == "probe"


def test_unknown_paths_get_a_404_error_and_are_recorded() -> None:
    with scripted_model([{"text": "kept"}]) as server:
        reply = request(server, body=MAIN_BODY, path="/v1/messages/count_tokens")
        assert reply.status == 404 and reply.json()["type"] == "error"
        assert request(server, "GET", "/v1/models").status == 404
        assert [r.kind for r in server.requests] == ["other", "other"]
        assert server.remaining == [{"text": "kept"}]


def test_delay_waits_before_answering_and_a_bare_modifier_applies_to_the_next_turn() -> None:
    with scripted_model([{"delay": 0.4}, {"text": "late"}, {"text": "prompt", "delay": 0.3}]
                        ) as server:
        started = time.monotonic()
        assert assemble(post(server).events())["content"][0]["text"] == "late"
        assert time.monotonic() - started >= 0.35
        started = time.monotonic()
        assert assemble(post(server).events())["content"][0]["text"] == "prompt"
        assert time.monotonic() - started >= 0.25


def test_a_held_turn_is_answered_only_once_released() -> None:
    with scripted_model([{"text": "held", "hold": "go"}]) as server:
        reply: dict[str, Reply] = {}
        client = threading.Thread(target=lambda: reply.update(answer=post(server)))
        client.start()
        assert server.wait_for_turns(1, timeout=5)
        client.join(0.3)  # a bound: the answer must not come while held
        assert client.is_alive() and not reply
        server.release("go")
        client.join(5)
        assert assemble(reply["answer"].events())["content"][0]["text"] == "held"


def test_stopping_the_server_ends_a_held_turn() -> None:
    before = set(threading.enumerate())
    server = ScriptedModel([{"text": "never", "hold": "never released"}]).start()

    def ask() -> None:
        with suppress(ConnectionError, http.client.HTTPException):  # no answer comes
            post(server)

    client = threading.Thread(target=ask)
    client.start()
    assert server.wait_for_turns(1, timeout=5)
    server.stop()
    client.join(5)
    assert not client.is_alive()
    assert set(threading.enumerate()) - before == set()


def test_slow_spreads_the_stream_over_time_in_several_deltas() -> None:
    text = " ".join(f"w{i}" for i in range(16))
    with scripted_model([{"text": text, "slow": 0.05}]) as server:
        started = time.monotonic()
        events = post(server).events()
        elapsed = time.monotonic() - started
    deltas = [d for name, d in events if name == "content_block_delta"]
    assert len(deltas) >= 4
    assert elapsed >= 0.05 * (len(deltas) - 1)
    assert assemble(events)["content"][0]["text"] == text


def test_break_cuts_the_stream_and_the_retry_gets_the_same_turn() -> None:
    with scripted_model([{"text": "the answer", "break": True}, {"text": "next"}]) as server:
        try:
            cut = post(server).raw
        except (ConnectionError, http.client.HTTPException):
            cut = b""
        assert b"message_stop" not in cut
        assert post(server, stream=False).json()["content"][0]["text"] == "the answer"
        assert assemble(post(server).events())["content"][0]["text"] == "next"


def test_requests_are_recorded_with_their_parts() -> None:
    body = {**MAIN_BODY, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": [{"type": "text", "text": "file body"}]}]}]}
    with scripted_model() as server:
        request(server, body=body)
        seen = server.last
    assert seen.model == "claude-test" and seen.stream
    assert "You are a Claude agent" in seen.system_text
    assert len(seen.system_blocks) == 2
    assert seen.tool_names == ["Read"]
    assert seen.tool_results == [body["messages"][2]["content"][0]]
    assert "file body" in seen.message_text and "hi" in seen.message_text
    assert seen.blocks("tool_use")[0]["id"] == "t1"
    assert seen.headers["Content-Type"] == "application/json"


def test_wait_for_turns() -> None:
    with scripted_model() as server:
        assert not server.wait_for_turns(1, timeout=0.1)
        threading.Timer(0.1, lambda: post(server)).start()
        assert server.wait_for_turns(1, timeout=5)


def test_stop_ends_a_slow_stream_promptly_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    # An hour between chunks: only stop() waking the handler can end the stream in time.
    server = ScriptedModel([{"text": "a b c d e f g h", "slow": 3600}]).start()
    streaming = threading.Event()
    result: dict[str, Any] = {}

    def client() -> None:
        raw = b""
        try:
            with closing(http.client.HTTPConnection("127.0.0.1", server.port,
                                                    timeout=120)) as conn:
                conn.request("POST", "/v1/messages?beta=true",
                             body=json.dumps(MAIN_BODY).encode(),
                             headers={"Content-Type": "application/json"})
                with closing(conn.getresponse()) as response:
                    while line := response.readline():
                        raw += line
                        if line.startswith(b"event: content_block_delta"):
                            streaming.set()  # the handler now sleeps before the next one
        except (ConnectionError, http.client.HTTPException) as exc:
            result["error"] = exc
        result["raw"] = raw

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    # Stopping before the first pause would end the stream without waking anything.
    assert streaming.wait(30), "the stream never began"
    stopper = threading.Thread(target=server.stop, daemon=True)  # joins the handler
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "stop() did not wake the handler sleeping in 'slow'"
    thread.join(30)
    assert not thread.is_alive()
    assert b"message_stop" not in result.get("raw", b"")
    assert set(threading.enumerate()) - before == set()


def test_cli_env_points_the_cli_at_the_server(tmp_path: Path) -> None:
    with scripted_model() as server:
        env = server.cli_env(str(tmp_path), EXTRA="1")
    assert env["ANTHROPIC_BASE_URL"] == server.base_url
    assert env["CLAUDE_CONFIG_DIR"] == f"{tmp_path}/.claude"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "0" and env["EXTRA"] == "1"


# -- the captured fixtures stay consistent ---------------------------------------------------
def test_captured_fixtures_are_complete_real_captures() -> None:
    metas = sorted(FIXTURES.glob("*.meta.json"))
    assert len(metas) >= 20
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        name = meta_path.name.removesuffix(".meta.json")
        outputs = [p for p in FIXTURES.glob(f"{name}.*") if p != meta_path]
        assert len(outputs) == 1, name
        assert isinstance(meta["exit_code"], int) and "stderr" in meta and meta["argv"]
        if outputs[0].suffix == ".jsonl":
            events = [json.loads(line) for line in outputs[0].read_text().splitlines()]
            for event in events:
                if event.get("subtype") == "init":
                    assert event["claude_code_version"] in meta["cli_version"]


# -- the real CLI ----------------------------------------------------------------------------
def real_claude() -> Path:
    configured = os.environ.get("CLAUDE_MCP_BRIDGE_REAL_CLAUDE")
    path = Path(configured) if configured else (
        REPO / ".cache" / "claude-cli" / "node_modules" / ".bin" / "claude")
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.skip(f"the real claude CLI is not installed at {path} (set "
                    "CLAUDE_MCP_BRIDGE_REAL_CLAUDE or `npm install --prefix .cache/claude-cli "
                    "@anthropic-ai/claude-code@2.1.197`)")
    return path


@dataclass
class Run:
    exit_code: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        results = [e for e in self.events if e.get("type") == "result"]
        assert len(results) == 1, f"expected one result event, got {self.events}"
        return results[0]

    @property
    def init(self) -> dict[str, Any]:
        return next(e for e in self.events if e.get("subtype") == "init")


@contextmanager
def _reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_claude(server: ScriptedModel, home: Path, *args: str, prompt: str = "Say hi") -> Run:
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    argv = [str(real_claude()), "-p", "--output-format", "stream-json", "--verbose", *args]
    env = {"PATH": os.environ.get("PATH", ""), **server.cli_env(str(home))}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=home, start_new_session=True)
    with _reaped(proc):
        stdout, stderr = proc.communicate(prompt.encode(), timeout=90)
    events = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    return Run(proc.returncode, events, stderr.decode())


AGENTS = json.dumps({"reviewer": {"description": "Reviews code",
                                  "prompt": "You are a strict reviewer. SENTINEL-BODY",
                                  "tools": ["Read", "Grep"], "model": "haiku"}})


@pytest.mark.real_cli
def test_real_cli_plain_text_run(tmp_path: Path) -> None:
    with scripted_model([{"text": "Hello from the scripted model."}]) as server:
        run = run_claude(server, tmp_path, prompt="Say hi")
        requests = list(server.requests)
    assert run.exit_code == 0, run.stderr
    assert [e["type"] for e in run.events] == ["system", "assistant", "result"]
    assert run.init["subtype"] == "init" and run.init["session_id"]
    assert run.events[1]["message"]["content"] == [
        {"type": "text", "text": "Hello from the scripted model."}]
    result = run.result
    assert result["subtype"] == "success" and result["is_error"] is False
    assert result["result"] == "Hello from the scripted model."
    assert result["total_cost_usd"] > 0 and result["num_turns"] == 1
    assert result["session_id"] == run.init["session_id"]
    kinds = [r.kind for r in requests]
    assert kinds.count("main") == 1 and "side" not in kinds
    main = next(r for r in requests if r.kind == "main")
    assert main.stream and "Say hi" in main.message_text and "Read" in main.tool_names


@pytest.mark.real_cli
def test_real_cli_inline_agent_sets_system_prompt_tools_and_model(tmp_path: Path) -> None:
    with scripted_model([{"text": "Reviewed."}, {"text": "Reviewed again."}]) as server:
        run = run_claude(server, tmp_path / "a", "--agents", AGENTS, "--agent", "reviewer")
        as_agent = server.last
        run_sonnet = run_claude(server, tmp_path / "b", "--agents", AGENTS, "--agent",
                                "reviewer", "--model", "sonnet")
        with_model = server.last
    assert run.exit_code == 0 and run.result["result"] == "Reviewed."
    assert "SENTINEL-BODY" in as_agent.system_text
    # the agent's body replaces Claude Code's default system prompt
    assert "You are an interactive agent" not in as_agent.system_text
    assert as_agent.tool_names == ["Read", "Grep"]
    assert run.init["tools"] == ["Read", "Grep"]
    assert "haiku" in (as_agent.model or "")
    # --model beats the agent's model; the agent's prompt and tools stay
    assert run_sonnet.exit_code == 0
    assert "sonnet" in (with_model.model or "")
    assert "SENTINEL-BODY" in with_model.system_text
    assert with_model.tool_names == ["Read", "Grep"]


@pytest.mark.real_cli
@pytest.mark.parametrize(("status", "text"), [(401, "Invalid API key"), (529, "529")])
def test_real_cli_api_errors_end_with_is_error_and_exit_1(tmp_path: Path, status: int,
                                                          text: str) -> None:
    with scripted_model([{"error": status}]) as server:
        run = run_claude(server, tmp_path)
        turns = len(server.turn_requests)
    assert run.exit_code == 1
    result = run.result
    assert result["is_error"] is True
    assert result["subtype"] == "success"  # sic: read is_error, not subtype
    assert result["api_error_status"] == status
    assert text in result["result"]
    assert turns == 1  # no retry with CLAUDE_CODE_MAX_RETRIES=0 and x-should-retry: false
