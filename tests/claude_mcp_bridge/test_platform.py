"""platform.py: the code paths of systems we cannot run here, run where they can.

No Windows or macOS machine runs this suite. What it proves on Linux:
- every module of both packages imports with the POSIX-only modules, functions, signals
  and ``/proc`` hidden (as on Windows);
- the ``portable`` implementation (what Windows does, minus the Windows API) ends a
  call's tree without process groups, reads stdin with a thread and stops on signals
  through handlers, end to end through a real server over stdio;
- the Job Object code calls kernel32 in the right order with the right structure, against
  a recording stand-in; the real calls run only on Windows.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest
from mcp import Client

from claude_mcp_bridge import platform, winjob
from claude_mcp_bridge.doctor import platform_checks
from claude_mcp_bridge.processes import CallTree
from claude_mcp_bridge.settings import find_claude
from claude_mcp_bridge.signals import cancel_on_signal
from tests.claude_mcp_bridge.test_http import start as start_http
from tests.claude_mcp_bridge.test_http import wait_dead
from tests.claude_mcp_bridge.test_stdio import (
    call_frame,
    handshake,
    read_until_progress,
    send,
    server_params,
    start_raw,
    wait_all_dead,
)
from tests.support import pid_alive, read_until, survivors

REPO = Path(__file__).resolve().parents[2]

# -- importing without POSIX ---------------------------------------------------------------

HIDE_POSIX = textwrap.dedent("""
    import importlib, os, pkgutil, signal, sys
    # Dependencies pick their own per-system code (fcntl, /proc, getuid) at import: load
    # them first; what is hidden below is hidden from this project's modules.
    import anyio, mcp.server.stdio, platformdirs, psutil, uvicorn, uvicorn.server

    OURS = ("claude_mcp_bridge", "agents_registry")
    BLOCKED = {"pwd", "grp", "fcntl", "termios", "resource", "posix"}

    def importer():
        frame = sys._getframe(2)
        while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
            frame = frame.f_back
        return frame.f_globals.get("__name__", "") if frame else ""

    class HidePosix:
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED and importer().startswith(OURS):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    def no_proc(event, args):
        if event in ("open", "os.listdir", "os.scandir") and args and \\
                str(args[0]).startswith("/proc"):
            raise PermissionError(f"{event} {args[0]}: there is no /proc on macOS or Windows")

    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, HidePosix())
    for name in ("killpg", "getpgid", "setsid", "getsid", "getuid", "geteuid", "fork"):
        if hasattr(os, name):
            delattr(os, name)
    for name in ("SIGHUP", "SIGKILL", "SIGQUIT", "SIGUSR1"):
        if hasattr(signal, name):
            delattr(signal, name)
    sys.addaudithook(no_proc)

    loaded = []
    for package in OURS:
        root = importlib.import_module(package)
        loaded.append(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as exc:
                # an optional extra that is not installed (psycopg) is not this test's concern
                if exc.name in BLOCKED or (exc.name or "").startswith(OURS):
                    raise
            loaded.append(info.name)
    print(len(loaded))
""")


def test_every_module_imports_without_pwd_fcntl_process_groups_sighup_or_proc(tmp_path):
    done = subprocess.run([sys.executable, "-c", HIDE_POSIX], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 60  # both packages, every module


def test_no_module_reads_proc_probes_with_signal_zero_or_names_posix_only_calls():
    # At run time, not only at import: these exist on Linux only, or mean something else
    # on Windows (os.kill(pid, 0) sends CTRL_C_EVENT there).
    forbidden = re.compile(r"""["']/proc\b|os\.kill\(|os\.killpg|os\.getpgid|signal\.SIGHUP|"""
                           r"""signal\.SIGKILL|start_new_session=True|import pwd|import fcntl""")
    sources = [*(REPO / "claude_mcp_bridge").rglob("*.py"),
               *(REPO / "agents_registry").rglob("*.py")]
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sources if path.name != "platform.py"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if forbidden.search(line)]
    assert found == []


def test_the_implementation_is_chosen_by_system_unless_portable_is_asked_for():
    assert platform.detect("", "win32") == "windows"
    assert platform.detect("", "darwin") == "posix"
    assert platform.detect("", "linux") == "posix"
    assert platform.detect(" Portable ", "linux") == "portable"
    assert platform.detect("windows", "linux") == "posix"  # no Windows API to call here


# -- where claude is looked for ------------------------------------------------------------

def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    path.chmod(0o755)
    return path


def test_windows_prefers_claude_exe_on_path_and_skips_windowsapps_aliases(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "KIND", "windows")
    alias = executable(tmp_path / "Microsoft" / "WindowsApps" / "claude.exe")
    npm = executable(tmp_path / "npm" / "claude.cmd")
    native = executable(tmp_path / "bin" / "claude.exe")
    path = os.pathsep.join(str(p.parent) for p in (alias, npm, native))
    assert find_claude({"PATH": path}).path == native
    assert find_claude({"PATH": os.pathsep.join(str(p.parent) for p in (alias, npm))}).path == npm


def test_windows_finds_the_native_installer_then_npm_under_the_users_folders(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(platform, "KIND", "windows")
    environ = {"PATH": "", "USERPROFILE": str(tmp_path / "me"), "APPDATA": str(tmp_path / "ad")}
    npm = executable(tmp_path / "ad" / "npm" / "claude.cmd")
    assert find_claude(environ).path == npm
    native = executable(tmp_path / "me" / ".local" / "bin" / "claude.exe")
    found = find_claude(environ)
    assert (found.path, found.searched) == (native, r"%USERPROFILE%\.local\bin\claude.exe")
    missing = find_claude({"PATH": ""})
    assert missing.path is None
    assert r"%APPDATA%\npm\claude.cmd" in missing.searched
    assert "where.exe claude" in missing.missing_message()


def test_posix_looks_under_home_and_the_usual_prefixes(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "KIND", "posix")
    native = executable(tmp_path / ".local" / "bin" / "claude")
    assert find_claude({"PATH": "", "HOME": str(tmp_path)}).path == native
    assert "/opt/homebrew/bin/claude" in find_claude({"PATH": "", "HOME": "/nowhere"}).searched


def test_home_is_userprofile_on_windows_and_home_elsewhere_never_the_password_database():
    assert platform.home({"USERPROFILE": r"C:\Users\me", "HOME": "/h"}, "windows") == \
        Path(r"C:\Users\me")
    assert platform.home({"HOME": "/h"}, "posix") == Path("/h")
    assert platform.home({}, "windows") == Path.home()


# -- doctor: the platform's usual fixes ---------------------------------------------------------

def test_doctor_names_the_platform_and_how_a_calls_tree_ends():
    [posix] = platform_checks("posix", Path("/usr/bin/claude"), "/usr/bin/python3")
    assert posix.status == "ok" and "process group" in posix.detail
    [portable] = platform_checks("portable", Path("/usr/bin/claude"), "/usr/bin/python3")
    assert portable.status == "warn" and "unset it" in portable.detail


def test_doctor_on_windows_says_where_claude_goes_and_warns_of_cmd_shims_and_store_aliases():
    store_python = r"C:\Users\me\AppData\Local\Microsoft\WindowsApps\python.exe"
    _, missing, alias = platform_checks("windows", None, store_python)
    assert missing.status == "fail"
    assert r"%APPDATA%\npm" in missing.detail and "PATH" in missing.detail
    assert r"%USERPROFILE%\.local\bin" in missing.detail and "where.exe" in missing.detail
    assert alias.status == "warn" and "App execution aliases" in alias.detail
    _, shim = platform_checks("windows", Path(r"C:\Users\me\AppData\Roaming\npm\claude.cmd"),
                              r"C:\Python312\python.exe")
    assert shim.status == "warn" and "cmd.exe" in shim.detail
    assert platform_checks("windows", Path(r"C:\Users\me\.local\bin\claude.exe"),
                           r"C:\Python312\python.exe")[1:] == []


# -- the Job Object, against a recording kernel32 --------------------------------------------

class RecordingKernel32:
    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.fail = fail
        self.limit_flags = 0

    def _call(self, name: str, *args: object) -> int:
        self.calls.append((name, args))
        return 0 if name == self.fail else {"CreateJobObjectW": 7, "OpenProcess": 9}.get(name, 1)

    def CreateJobObjectW(self, attributes, name):
        return self._call("CreateJobObjectW")

    def SetInformationJobObject(self, job, info_class, info, size):
        self.limit_flags = info._obj.BasicLimitInformation.LimitFlags
        return self._call("SetInformationJobObject", job, info_class, size)

    def OpenProcess(self, access, inherit, pid):
        return self._call("OpenProcess", access, pid)

    def AssignProcessToJobObject(self, job, process):
        return self._call("AssignProcessToJobObject", job, process)

    def TerminateJobObject(self, job, exit_code):
        return self._call("TerminateJobObject", job)

    def CloseHandle(self, handle):
        return self._call("CloseHandle", handle)


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="64-bit layout")
def test_the_extended_limit_structure_has_windows_x64_layout():
    assert ctypes.sizeof(winjob._ExtendedLimits) == 144
    assert winjob._ExtendedLimits.IoInfo.offset == 64


def test_a_child_is_put_in_a_kill_on_close_job_and_ending_it_terminates_and_closes_once():
    kernel32 = RecordingKernel32()
    job = winjob.contain(1234, kernel32)
    assert kernel32.limit_flags == winjob.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert [name for name, _ in kernel32.calls] == [
        "CreateJobObjectW", "SetInformationJobObject", "OpenProcess",
        "AssignProcessToJobObject", "CloseHandle"]
    assert kernel32.calls[2][1] == (winjob.PROCESS_SET_QUOTA | winjob.PROCESS_TERMINATE, 1234)
    assert kernel32.calls[-1] == ("CloseHandle", (9,))  # the process handle, not the job's
    job.end()
    job.end()
    assert kernel32.calls[-2:] == [("TerminateJobObject", (7,)), ("CloseHandle", (7,))]


def test_a_job_that_cannot_take_the_child_is_closed_and_the_failure_named():
    kernel32 = RecordingKernel32(fail="AssignProcessToJobObject")
    with pytest.raises(OSError, match="AssignProcessToJobObject failed"):
        winjob.contain(1234, kernel32)
    assert kernel32.calls[-2:] == [("CloseHandle", (9,)), ("CloseHandle", (7,))]


def test_job_objects_are_refused_off_windows():
    with pytest.raises(OSError, match="only on Windows"):
        winjob.contain(os.getpid())


# -- the portable implementation, in this process -------------------------------------------

pytestmark = pytest.mark.anyio


@pytest.fixture
def portable(monkeypatch):
    monkeypatch.setattr(platform, "KIND", "portable")


async def test_a_portable_tree_is_its_descendants_and_ends_without_process_groups(portable):
    grandchild = "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', " \
                 "'import time; time.sleep(60)']); print(g.pid, flush=True); time.sleep(60)"
    process = await platform.start_tree_root([sys.executable, "-c", grandchild],
                                             cwd=Path.cwd(), env=os.environ)
    try:
        assert process.stdout is not None
        with anyio.fail_after(10):
            pids = [process.pid, int(await process.stdout.receive())]
        assert os.getpgid(process.pid) == os.getpgid(0)  # no group of its own to kill
        tree = CallTree(process.pid)
        tree.refresh()
        assert sorted(tree.known) == sorted(pids)
        assert await tree.end(grace_s=2)
        await process.wait()
    finally:
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()
    assert survivors(pids, within_s=5) == []


async def test_the_thread_reader_yields_lines_and_a_cancellation_does_not_wait_for_it(portable):
    read_fd, write_fd = os.pipe()
    before = set(threading.enumerate())
    try:
        with platform.stdin_lines(read_fd) as lines:
            assert lines is not None
            os.write(write_fd, b'{"a": 1}\n{"b"')
            with anyio.fail_after(5):
                assert await anext(lines) == '{"a": 1}\n'
            with anyio.move_on_after(0.2) as waited:  # nothing more comes: a blocked read
                await anext(lines)
            assert waited.cancelled_caught
        [reader] = set(threading.enumerate()) - before
        os.write(write_fd, b": 2}\n")
    finally:
        os.close(write_fd)  # ends the reader thread
    # ...once it has handed its last read to this loop: a hand-over that finds the loop
    # closed leaves a never-awaited coroutine, a warning in whichever test runs next.
    await anyio.to_thread.run_sync(reader.join, 30)
    assert not reader.is_alive()
    os.close(read_fd)


async def test_the_thread_reader_ends_at_eof_with_the_unfinished_last_line(portable):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"one\ntwo")
    os.close(write_fd)
    try:
        with platform.stdin_lines(read_fd) as lines, anyio.fail_after(5):
            assert lines is not None
            assert [line async for line in lines] == ["one\n", "two"]
    finally:
        os.close(read_fd)


async def test_signal_handlers_stop_the_bridge_and_are_put_back_afterwards(portable):
    before = signal.getsignal(signal.SIGINT)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(cancel_on_signal, tg.cancel_scope)
            assert signal.getsignal(signal.SIGINT) is not before
            signal.raise_signal(signal.SIGINT)
            await anyio.sleep_forever()  # cancelled by the handler, through the loop
    assert signal.getsignal(signal.SIGINT) is before


# -- the portable implementation, end to end over stdio --------------------------------------

PORTABLE = {platform.PLATFORM_VAR: "portable"}


async def test_a_portable_bridge_runs_the_child_in_its_own_group_and_a_cancel_ends_it(
        workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.extra_env.update(PORTABLE)
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude)) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("agent_reviewer", {"prompt": "go"},
                                                       progress_callback=on_progress))
                await busy.wait()
                tg.cancel_scope.cancel()
            await wait_all_dead(fake_claude)
    record = fake_claude.last()
    assert record["sid"] != record["pid"]  # no new session: the portable path was taken


async def test_a_portable_timeout_ends_the_tree(workspace, fake_claude):
    workspace.agent("reviewer")
    workspace.extra_env.update(PORTABLE)
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"hang": True}])
    with anyio.fail_after(30):
        async with Client(server_params(workspace, fake_claude, "--timeout", "1")) as client:
            result = await client.call_tool("agent_reviewer", {"prompt": "go"})
    assert result.is_error and "timed out" in result.content[0].text
    await wait_all_dead(fake_claude)


@pytest.mark.parametrize("how", ["stdin_eof", "sigterm", "sigint"])
def test_a_portable_server_going_away_mid_call_leaves_no_process(workspace, fake_claude, how):
    workspace.agent("reviewer")
    workspace.extra_env.update(PORTABLE)
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
        assert proc.wait(timeout=15) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    pids = [r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids()
    assert len(pids) == 2
    assert [p for p in pids if pid_alive(p)] == []


async def test_a_portable_http_server_drains_on_sigterm_then_stops_the_call_and_its_tree(
        workspace, fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    running = start_http(workspace, fake_claude, env=PORTABLE,
                         config="[http]\ndrain_timeout_s = 0.5\n[limits]\nkill_grace_s = 1\n")
    busy = anyio.Event()

    async def on_progress(done, total, message):
        if message and message.startswith("wrote"):
            busy.set()

    outcome = []
    try:
        with anyio.fail_after(30):
            async with Client(running.url + "/mcp", mode="legacy") as client, \
                    anyio.create_task_group() as tg:
                async def call() -> None:
                    outcome.append(await client.call_tool(
                        "agent_reviewer", {"prompt": "go"}, progress_callback=on_progress))
                tg.start_soon(call)
                await busy.wait()
                running.proc.send_signal(signal.SIGTERM)
        assert running.stop() == 0
    finally:
        running.close()
    assert outcome[0].is_error and "shutting down" in outcome[0].content[0].text
    assert fake_claude.last()["sid"] != fake_claude.last()["pid"]  # the portable start
    await wait_dead([r["pid"] for r in fake_claude.records()] + fake_claude.spawned_pids())


def test_a_portable_bridge_killed_mid_call_leaves_its_tree_to_the_watchdog(workspace,
                                                                           fake_claude):
    workspace.agent("reviewer")
    fake_claude.script([{"init": {}}, {"spawn": "sleeper"}, {"text": "busy"}, {"hang": True}])
    env = {**workspace.cli_env(fake_claude), **PORTABLE,
           "CLAUDE_MCP_BRIDGE_DATA_DIR": str(workspace.home / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "claude_mcp_bridge", "call", "agent_reviewer", "go"],
        env=env, cwd=workspace.project, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        assert process.stderr is not None
        read_until(process.stderr, b"wrote 1 word", timeout_s=30)
        pids = [fake_claude.last()["pid"], *fake_claude.spawned_pids()]
        process.kill()
        process.wait(timeout=10)
        assert survivors(pids, within_s=15) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        for pid in survivors(pids, within_s=0):  # the test failed: do not leak them
            os.kill(pid, signal.SIGKILL)
    assert fake_claude.last()["sid"] != fake_claude.last()["pid"]  # the portable start
