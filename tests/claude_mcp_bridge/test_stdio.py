"""The real server process over stdio: the SDK's client, raw frames, signals, disconnects."""

import json
import signal
import subprocess
import sys

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support import agent_tools, pid_alive

pytestmark = pytest.mark.anyio


def server_params(workspace, fake, *extra):
    env = workspace.cli_env(fake)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "claude_mcp_bridge", "serve", "--project-dir", str(workspace.project), *extra],
        env=env)


@pytest.fixture(params=["auto", "legacy"])
def mode(request):
    return request.param


async def test_a_stdio_client_lists_and_calls_with_progress(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"text": "All fine."}, {"result": {"total_cost_usd": 0.01}}])
    messages = []

    async def on_progress(done, total, message):
        messages.append(message)

    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude), mode=mode) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool("agent_reviewer", {"prompt": "check"},
                                            progress_callback=on_progress)
    assert agent_tools(tools) == ["agent_reviewer"]
    assert result.content[0].text == "All fine."
    assert "starting agent reviewer" in messages
    record = fake_claude.last()
    assert "CLAUDECODE" not in record["env"]
    assert record["env"]["CLAUDE_MCP_BRIDGE_DEPTH"] == "1"


async def test_a_cancelled_stdio_call_kills_the_child(workspace, fake_claude, mode):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude), mode=mode) as client:
            with anyio.move_on_after(20) as waited:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: client.call_tool("agent_reviewer", {"prompt": "go"},
                                                           progress_callback=on_progress))
                    await busy.wait()
                    tg.cancel_scope.cancel()
            assert not waited.cancelled_caught
            await wait_all_dead(fake_claude)
            assert (await client.list_tools()).tools


async def test_a_crashing_child_is_an_error_result_and_the_server_lives_on(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script({"crash": [{"crash": "SIGKILL"}],
                        "default": [{"init": {}}, {"text": "ok"}, {"result": {}}]})
    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude)) as client:
            crashed = await client.call_tool("agent_reviewer", {"prompt": "crash"})
            fine = await client.call_tool("agent_reviewer", {"prompt": "normal"})
    assert crashed.is_error and "killed by SIGKILL" in crashed.content[0].text
    assert not fine.is_error


async def test_a_timeout_over_stdio_ends_the_call(workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"hang": True}])
    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude, "--timeout", "1")) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert result.is_error and "timed out" in result.content[0].text
    await wait_all_dead(fake_claude)


async def wait_all_dead(fake):
    with anyio.fail_after(10):
        while True:
            pids = [r["pid"] for r in fake.records()] + fake.spawned_pids()
            if pids and not any(pid_alive(p) for p in pids):
                return
            await anyio.sleep(0.05)


# -- raw frames: what is on stdout, and what happens when the client goes away ------------

def start_raw(workspace, fake):
    env = {**workspace.cli_env(fake), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "claude_mcp_bridge", "serve", "--project-dir",
         str(workspace.project)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def send(proc, message):
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def handshake(proc):
    send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "raw", "version": "0"}}})
    reply = json.loads(proc.stdout.readline())
    send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return reply


def call_frame(request_id, prompt):
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "agent_reviewer", "arguments": {"prompt": prompt},
                       "_meta": {"progressToken": "p1"}}}


def read_until_progress(proc, text):
    frames = []
    while True:
        line = proc.stdout.readline()
        assert line, "server closed stdout"
        frames.append(json.loads(line))
        params = frames[-1].get("params", {})
        if text in str(params.get("message", "")):
            return frames


def test_stdout_carries_only_json_rpc_frames(workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.agent("broken", description="")  # a rejected file is logged, never printed
    fake_claude.script([{"init": {}}, {"text": "ok"}, {"result": {}}])
    proc = start_raw(workspace, fake_claude)
    try:
        assert handshake(proc)["result"]["serverInfo"]["name"] == "claude-mcp-bridge"
        send(proc, call_frame(2, "go"))
        frames = []
        while not any(f.get("id") == 2 for f in frames):
            frames.append(json.loads(proc.stdout.readline()))
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    stderr = proc.stderr.read().decode()
    assert all(f["jsonrpc"] == "2.0" for f in frames)
    assert rest.strip() == b""
    assert "broken.md" in stderr and "tools" in stderr
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize("how", ["stdin_eof", "sigterm", "sigint"])
def test_the_server_going_away_mid_call_kills_the_child(workspace, fake_claude, how):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    proc = start_raw(workspace, fake_claude)
    try:
        handshake(proc)
        send(proc, call_frame(2, "go"))
        read_until_progress(proc, "wrote")
        if how == "stdin_eof":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    pids = [r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids()
    assert len(pids) == 2
    assert [p for p in pids if pid_alive(p)] == []


async def test_hot_reload_works_over_stdio_too(workspace, fake_claude, mode):
    import mcp_types as types

    workspace.agent("reviewer")
    config = workspace.home / "config.toml"
    config.write_text("[reload]\npoll_s = 0.1\ndebounce_s = 0.1\n")
    changed = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude, "--config", str(config)),
                          mode=mode, message_handler=on_message) as client:
            assert agent_tools((await client.list_tools()).tools) == ["agent_reviewer"]
            if mode == "legacy":
                workspace.agent("writer")
                await changed.wait()
            else:
                async with client.listen(tools_list_changed=True) as subscription:
                    workspace.agent("writer")
                    async for _ in subscription:
                        break
            tools = agent_tools((await client.list_tools()).tools)
    assert tools == ["agent_reviewer", "agent_writer"]


def test_serving_stdio_imports_nothing_of_the_bridge_before_the_handshake():
    # Claude Code 2.1.332 starts its first turn without servers still connecting (issue 15):
    # what answers initialize must be the SDK and the server shell, nothing heavier.
    code = ("import sys; import claude_mcp_bridge.cli as cli; cli._parser(); "
            "import claude_mcp_bridge.server, claude_mcp_bridge.transports.stdio; "
            "print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"agents_registry", "claude_mcp_bridge.bridge", "claude_mcp_bridge.config",
             "claude_mcp_bridge.catalog", "claude_mcp_bridge.ledger", "claude_mcp_bridge.jobs",
             "claude_mcp_bridge.agent_tests.mcp_tool", "claude_mcp_bridge.transports.http",
             "jsonschema", "psutil", "yaml", "Stemmer", "sqlite3"}
    assert heavy & loaded == set()


def test_a_bad_config_over_stdio_ends_the_server_with_the_reason(workspace, fake_claude):
    config = workspace.home / "bad.toml"
    config.write_text("[limits]\nmax_concurrency = 'many'\n")
    env = {**workspace.cli_env(fake_claude), "CLAUDE_MCP_BRIDGE_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_mcp_bridge", "serve", "--project-dir",
         str(workspace.project)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert handshake(proc)["result"]["serverInfo"]["name"] == "claude-mcp-bridge"
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 2
    assert out == b""
    assert "bad.toml" in err.decode() and "max_concurrency" in err.decode()


def test_a_listing_larger_than_the_pipe_arrives_whole(workspace, fake_claude):
    # frames are written on the event loop to a non-blocking stdout: a full pipe waits
    for i in range(150):
        workspace.agent(f"agent{i:03}")
    proc = start_raw(workspace, fake_claude)
    try:
        handshake(proc)
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        line = proc.stdout.readline()
        proc.stdin.close()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert len(line) > 256 * 1024
    assert len(agent_tools_named(json.loads(line)["result"]["tools"])) == 150


def agent_tools_named(tools: list[dict]) -> list[str]:
    return [t["name"] for t in tools if t["name"].startswith("agent_")]


STRAY = """
import anyio, os, sys
import mcp_types as types
from mcp.server import Server
from claude_mcp_bridge.transports.stdio import serve_stdio

async def call(ctx, params):
    os.write(1, b"stray bytes on fd 1\\n")
    print("a stray print", flush=True)
    return types.CallToolResult(content=[types.TextContent(type="text", text="done")])

async def tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="t", input_schema={"type": "object"})])

anyio.run(serve_stdio, Server("stray", on_call_tool=call, on_list_tools=tools))
"""


def test_a_stray_write_to_stdout_goes_to_stderr_not_into_the_frames():
    proc = subprocess.Popen([sys.executable, "-c", STRAY], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        handshake(proc)
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "t", "arguments": {}}})
        answer = json.loads(proc.stdout.readline())
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(timeout=10)
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert answer["result"]["content"][0]["text"] == "done"
    assert rest == b""
    assert "stray bytes on fd 1" in stderr and "a stray print" in stderr
