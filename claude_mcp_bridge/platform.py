"""Where the bridge meets the operating system: every POSIX/Windows difference is here.

- a call's child starts in a new session (``posix``: Linux, macOS); in a new process group,
  then in a kill-on-close Job Object (``windows``, ``winjob.py``); as a plain child
  (``portable``). Its tree is its descendants plus its group, the job, or nothing more.
- shutdown signals: SIGTERM, SIGINT, SIGHUP through anyio's receiver (``posix``); SIGINT
  (Ctrl-C), SIGBREAK (Ctrl-Break, console close) and SIGTERM through ``signal.signal``
  handlers (``windows``, ``portable``).
- stdin: non-blocking reads without a thread (``posix``); a daemon reader thread (the
  others), because Windows pipes cannot be read without blocking.
- ``claude``: the POSIX install places, or on Windows ``claude.exe`` (native installer)
  before npm's ``claude.cmd``, skipping WindowsApps aliases.
- the home folder (``HOME``, ``USERPROFILE`` or ``Path.home()``, never ``pwd``) and the
  descriptor limit (``resource`` on POSIX; Windows sockets have none).

``portable`` is Windows without the Windows API: it runs, on any system, the code paths
Windows takes (no process groups, a reader thread, signal handlers), so the test suite
proves them on Linux. Identity, liveness and ending processes go through psutil on every
system (``processes.py``); only starting and containing a tree differ, and live here.

The choice is read once, at import, from ``CLAUDE_MCP_BRIDGE_PLATFORM`` (``portable``;
anything else means "this system"). It is read here, not in ``cli.py``, because the
watchdog and ledger recovery need it too and run before (or without) any settings.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import Process
from anyio.lowlevel import EventLoopToken
from anyio.streams.memory import MemoryObjectSendStream

from . import pidfd_process, winjob

logger = logging.getLogger(__name__)

Kind = Literal["posix", "windows", "portable"]
PLATFORM_VAR = "CLAUDE_MCP_BRIDGE_PLATFORM"

_CREATE_NEW_PROCESS_GROUP = 0x00000200  # subprocess defines it on Windows only
_CHUNK = 64 * 1024


def detect(requested: str, system: str = sys.platform) -> Kind:
    """The implementation to use: ``portable`` when asked for, else the running system's."""
    if requested.strip().lower() == "portable":
        return "portable"
    return "windows" if system == "win32" else "posix"


KIND: Kind = detect(os.environ.get(PLATFORM_VAR, ""))


# -- starting and containing a call's tree ---------------------------------------------

async def start_tree_root(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Process:
    """Start ``argv`` with pipes as the root of a tree ``end_contained`` and the tree walk
    can end: a new session (POSIX) or a new process group in a Job Object (Windows).
    Raises ``OSError`` when it cannot start."""
    process = await pidfd_process.open_process(argv, cwd=cwd, env=env, **_tree_root_options())
    if KIND == "windows":
        _contain(process.pid)
    return process


def _tree_root_options() -> dict[str, Any]:
    if KIND == "posix":
        return {"start_new_session": True}
    if KIND == "windows":
        # Own console group: a Ctrl-C meant for the bridge is not also delivered to the call.
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP}
    return {}


def detached_options() -> dict[str, Any]:
    """``subprocess.Popen`` options for a helper (the watchdog) that must not receive the
    signals a terminal or a client sends to the bridge's group."""
    if KIND == "posix":
        return {"start_new_session": True}
    if KIND == "windows":
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP}
    return {}


_jobs: dict[int, winjob.Job] = {}
"""Windows: the Job Object of each running call's root, by pid (not reused while the
child is unreaped). If the bridge dies, Windows closes the handles and the jobs end."""


def _contain(pid: int) -> None:
    try:
        _jobs[pid] = winjob.contain(pid)
    except OSError as exc:
        logger.warning("child %s is not in a Job Object (%s): its tree is ended by walking "
                       "it, and after a crash of the bridge by the watchdog", pid, exc)


def end_contained(pid: int) -> None:
    """End what is left of the tree rooted at ``pid`` by its container (Windows: the Job
    Object kills every process still in it); nothing to do elsewhere."""
    job = _jobs.pop(pid, None)
    if job is not None:
        try:
            job.end()
        except OSError as exc:
            logger.warning("ending the Job Object of child %s failed: %s", pid, exc)


def process_group(pid: int) -> int | None:
    """The POSIX process group of ``pid``; None where groups are not part of the tree
    (Windows, portable) or the process is gone."""
    if KIND != "posix":
        return None
    if sys.platform == "win32":
        return None
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def started_since_boot(pid: int) -> float | None:
    """Seconds from boot to the start of ``pid`` (Linux: ``/proc/PID/stat`` field 22, in
    clock ticks); None elsewhere or when it cannot be read."""
    row = _stat_row(str(pid))
    return None if row is None else row[2]


ProcRow = tuple[int, int, float]
"""A process in ``/proc``: its parent, its process group, its start (seconds since boot)."""


def proc_table() -> dict[int, ProcRow] | None:
    """Every process, from one read of each ``/proc/PID/stat`` (Linux; None elsewhere, or
    when ``/proc`` cannot be listed): psutil reads them all twice for a tree (children,
    then group members), then each again for its start."""
    if sys.platform != "linux" or KIND != "posix":  # portable mode walks as Windows does
        return None
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    rows = ((int(name), _stat_row(name)) for name in names if name.isdigit())
    return {pid: row for pid, row in rows if row is not None}


def _stat_row(pid: str) -> ProcRow | None:
    if sys.platform != "linux":
        return None
    try:  # os.read, not open(): 64 processes in 0.57 ms instead of 1.4
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            stat_line = os.read(fd, 4096)
        finally:
            os.close(fd)
        # the command name, in parentheses, may hold spaces: count fields after it
        fields = stat_line.rpartition(b")")[2].split()
        return int(fields[1]), int(fields[2]), int(fields[19]) / _clock_ticks()
    except (OSError, IndexError, ValueError):
        return None  # gone, or not readable


@cache
def _clock_ticks() -> int:
    if sys.platform == "win32":
        return 100  # not asked: /proc is Linux's
    return os.sysconf("SC_CLK_TCK")


def walks_process_groups() -> bool:
    """True when a tree includes its root's process group (it outlives its leader)."""
    return KIND == "posix"


def group_empty(pgid: int) -> bool:
    """True when no process is left in the POSIX group ``pgid``: its leader (a session
    leader cannot leave it) is gone too, so a walk of the tree could find nothing new."""
    if KIND != "posix" or sys.platform == "win32":
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


# -- shutdown signals --------------------------------------------------------------------

_THREAD_ENDS = contextlib.suppress(BaseException)
"""In the helper threads: whatever stops a hand-over to the loop (the stream closed, the
loop finished, or it cancelled the call at shutdown) ends the thread quietly. Only the
main thread is ever sent KeyboardInterrupt."""

_SHUTDOWN_SIGNALS: dict[Kind, tuple[str, ...]] = {
    "posix": ("SIGTERM", "SIGINT", "SIGHUP"),
    # Python delivers Ctrl-C as SIGINT, and Ctrl-Break and closing the console as SIGBREAK.
    "windows": ("SIGINT", "SIGBREAK", "SIGTERM"),
    "portable": ("SIGINT", "SIGBREAK", "SIGTERM"),
}


def shutdown_signal_numbers(kind: Kind | None = None) -> list[int]:
    """The signals that stop the bridge on ``kind`` (default: this one), those that exist."""
    names = _SHUTDOWN_SIGNALS[kind or KIND]
    return [int(getattr(signal, name)) for name in names if hasattr(signal, name)]


def shutdown_signals() -> AbstractContextManager[AsyncIterator[int]]:
    """Receive the shutdown signals as an async iterator of signal numbers while open.
    POSIX: anyio's receiver. Elsewhere: ``signal.signal`` handlers, which Windows offers
    and ``open_signal_receiver`` does not."""
    if KIND == "posix":
        return anyio.open_signal_receiver(*map(signal.Signals, shutdown_signal_numbers()))
    return _handled_signals(shutdown_signal_numbers())


@contextmanager
def _handled_signals(numbers: Sequence[int]) -> Iterator[AsyncIterator[int]]:
    # A handler runs between two bytecodes of the main thread, possibly inside the event
    # loop itself, so it only starts a thread that hands the signal to the loop.
    token = anyio.lowlevel.current_token()
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=math.inf)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=_hand_over, args=(send, signum, token), daemon=True,
                         name="shutdown-signal").start()

    previous = {number: signal.signal(number, on_signal) for number in numbers}
    try:
        with send, receive:
            yield receive
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def _hand_over(send: MemoryObjectSendStream[int], signum: int, token: EventLoopToken) -> None:
    with _THREAD_ENDS:
        anyio.from_thread.run_sync(send.send_nowait, signum, token=token)


def ignore_shutdown_signals() -> None:
    """Ignore every shutdown signal of this system (the watchdog outlives the bridge)."""
    names = {name for names in _SHUTDOWN_SIGNALS.values() for name in names}
    for name in sorted(names):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


# -- stdin -------------------------------------------------------------------------------

@contextmanager
def stdin_lines(fd: int) -> Iterator[AsyncIterator[str] | None]:
    """Lines of ``fd`` that a cancellation stops at once, or None for a regular file (which
    never blocks, so the MCP SDK's own reader is fine). POSIX reads the descriptor without
    blocking; Windows has no non-blocking pipes, so a daemon thread reads it, and a read
    still blocked when the server stops is abandoned with the thread."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        yield None
    elif KIND == "posix":
        with _nonblocking(fd):
            yield _lines(_nonblocking_chunks(fd))
    else:
        send, receive = anyio.create_memory_object_stream[bytes](16)
        threading.Thread(target=_pump, args=(fd, send, anyio.lowlevel.current_token()),
                         daemon=True, name="stdin-reader").start()
        with receive:
            yield _lines(receive)


@contextmanager
def _nonblocking(fd: int) -> Iterator[None]:
    if sys.platform == "win32":
        raise OSError("Windows pipes cannot be read without blocking")
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        yield
    finally:
        os.set_blocking(fd, was_blocking)  # the file description may be a shared terminal


async def _nonblocking_chunks(fd: int) -> AsyncIterator[bytes]:
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            continue
        yield chunk
        if not chunk:
            return


def _pump(fd: int, send: MemoryObjectSendStream[bytes], token: EventLoopToken) -> None:
    """The reader thread: blocking reads of ``fd`` handed to the loop, b"" at EOF."""
    with _THREAD_ENDS:
        chunk = b"-"
        while chunk:
            try:
                chunk = os.read(fd, _CHUNK)
            except OSError:
                chunk = b""
            anyio.from_thread.run(send.send, chunk, token=token)
    try:  # closing wakes the reader, which only the loop's own thread may do
        anyio.from_thread.run_sync(send.close, token=token)
    except BaseException:
        send.close()  # the loop is gone: nobody waits on the stream any more


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    buffer = bytearray()
    async for chunk in chunks:
        if not chunk:
            break
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            yield line.decode("utf-8", errors="replace")
    if buffer:
        yield buffer.decode("utf-8", errors="replace")


# -- descriptors -------------------------------------------------------------------------

def raise_descriptor_limit(target: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``target`` (at most the hard limit); return the
    limit in force. Windows has no such limit on sockets (they are handles): ``target``."""
    if sys.platform == "win32":
        return target
    import resource  # POSIX only: imported here so that importing this module needs none
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the descriptor limit from %d to %d: %s",
                           soft, wanted, exc)
    return target if soft == resource.RLIM_INFINITY else soft


# -- homes and where claude is installed ---------------------------------------------------

def home(environ: Mapping[str, str], kind: Kind | None = None) -> Path:
    """The user's home: ``HOME`` (``USERPROFILE`` on Windows) when set, else
    ``Path.home()``; never the password database, which Windows does not have."""
    variable = "USERPROFILE" if (kind or KIND) == "windows" else "HOME"
    configured = environ.get(variable, "")
    return Path(configured) if configured else Path.home()


@dataclass(frozen=True)
class Place:
    """A usual install place of ``claude``: under a folder named by ``base`` (``~`` for the
    home, else an environment variable; "" for an absolute path)."""

    base: str
    parts: tuple[str, ...]

    def shown(self) -> str:
        if self.base == "~":
            return "/".join(("~", *self.parts))
        if self.base:
            return "\\".join((f"%{self.base}%", *self.parts))
        return "/".join(self.parts)

    def resolve(self, environ: Mapping[str, str], kind: Kind | None = None) -> Path | None:
        if self.base == "~":
            return home(environ, kind).joinpath(*self.parts)
        if self.base:
            folder = environ.get(self.base, "")
            return Path(folder).joinpath(*self.parts) if folder else None
        return Path(*self.parts)


_POSIX_PLACES = (
    Place("~", (".claude", "local", "claude")),
    Place("~", (".local", "bin", "claude")),  # the native installer
    Place("~", (".npm-global", "bin", "claude")),
    Place("~", (".bun", "bin", "claude")),
    Place("", ("/usr", "local", "bin", "claude")),
    Place("", ("/opt", "homebrew", "bin", "claude")),  # Homebrew on Apple silicon
)
_WINDOWS_PLACES = (
    Place("USERPROFILE", (".local", "bin", "claude.exe")),  # the native installer
    Place("APPDATA", ("npm", "claude.cmd")),  # npm install -g
)


def claude_names(kind: Kind | None = None) -> tuple[str, ...]:
    """Names to look for on PATH, best first: on Windows the native ``claude.exe`` before
    npm's ``claude.cmd``, whose arguments pass through ``cmd.exe``."""
    return ("claude.exe", "claude.cmd") if (kind or KIND) == "windows" else ("claude",)


def claude_places(kind: Kind | None = None) -> tuple[Place, ...]:
    """Where installers put ``claude``, searched after PATH (clients start servers with a
    thin PATH)."""
    return _WINDOWS_PLACES if (kind or KIND) == "windows" else _POSIX_PLACES


def is_app_alias(path: Path | str) -> bool:
    """True for a Windows app execution alias (``...\\Microsoft\\WindowsApps\\...``): a stub
    that starts a Store app (for ``python.exe``, the Store's installer), not a program."""
    return "windowsapps" in str(path).replace("/", "\\").lower().split("\\")
