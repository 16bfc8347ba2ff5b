"""Processes the bridge starts and must end, and processes it must recognise later.

- ``start_group_leader``: a child as the root of a tree the bridge can end (a new
  session on POSIX, a Job Object on Windows; see ``platform.py``).
- ``CallTree``: that child and every descendant it is seen to have, including those that
  left its group (``setsid``); ``end`` stops them all (terminate, bounded grace, kill:
  SIGTERM and SIGKILL on POSIX, TerminateProcess and the Job Object on Windows).
  The tree is refreshed while the call runs, so a descendant whose parent exited is still
  known by pid and creation time.
- ``Watchdog``: a small separate process (``python -m claude_mcp_bridge.watchdog``) that
  holds a pipe from the bridge; when the pipe closes because the bridge died (``kill -9``,
  the OOM killer), it ends every tree still registered, and every process that carries
  this bridge's mark (``MARK_VAR`` in its environment, inherited from the call's child):
  a CLI exits when its stdin closes with the bridge, and a descendant it left behind
  before the tree was last looked at is found that way, ``setsid`` or not.
- Identity: a process is named by pid *and* creation time, so a reused pid is never
  signalled and ledger recovery can tell a dead bridge from a live one.

Identity, liveness and signals go through psutil, which serves Linux, macOS and Windows
alike; what differs between systems (starting, containing, process groups) is asked of
``platform.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO

import anyio
import psutil
from anyio.abc import Process

from . import platform

logger = logging.getLogger(__name__)

WATCHDOG_GRACE_S = 3.0
"""How long the watchdog waits between terminating and killing after the bridge died."""
MARK_VAR = "CLAUDE_MCP_BRIDGE_MARKS"
"""Space-separated marks of the bridges a process descends from (a nested bridge adds
its own); each bridge's watchdog ends the processes with its mark."""
MARK = secrets.token_hex(8)
"""This bridge's mark."""


def marked_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this bridge's mark added, for a child and everything it starts."""
    marks = env.get(MARK_VAR, "").split()
    return {**env, MARK_VAR: " ".join([*marks, MARK])}


def marked(mark: str) -> list[Identity]:
    """The processes that carry ``mark`` in their environment (readable ones: this user's)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if mark in process.environ().get(MARK_VAR, "").split():
                found.append(Identity(process.pid, started(process)))
    return found


@dataclass(frozen=True)
class Identity:
    """A process as pid and start time: a reused pid has another start time. The start
    time is ``started(process)``, on a clock no adjustment of the system time moves."""

    pid: int
    created: float

    def __str__(self) -> str:
        return f"{self.pid}:{self.created:.2f}"

    @classmethod
    def of(cls, pid: int) -> Identity | None:
        since_boot = platform.started_since_boot(pid)  # one read of /proc, on Linux
        if since_boot is not None:
            return cls(pid, since_boot)
        try:
            return cls(pid, started(psutil.Process(pid)))
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            return None

    def process(self) -> psutil.Process | None:
        """The live process this identity names, or None (gone, reused, or a zombie)."""
        try:
            process = psutil.Process(self.pid)
            if abs(started(process) - self.created) > 0.01:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            return None


def started(process: psutil.Process) -> float:
    """When ``process`` started, on a clock no setting of the system time moves: on Linux
    the time since boot (psutil's ``create_time`` adds a boot time the kernel derives from
    the wall clock, so a clock being synchronised moves it and one process looks like two;
    psutil's own pid-reuse check avoids it the same way), elsewhere the creation time the
    kernel recorded."""
    since_boot = platform.started_since_boot(process.pid)
    return process.create_time() if since_boot is None else since_boot


async def start_group_leader(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> Process:
    """Start ``argv`` with pipes as the root of a tree the bridge can end: the leader of a
    new process group on POSIX, in a Job Object on Windows, with this bridge's mark in its
    environment (raises ``OSError``)."""
    return await platform.start_tree_root(argv, cwd=cwd, env=marked_env(env))


class CallTree:
    """One call's child and its descendants, known by identity, to end them all. The
    leader is registered with the watchdog at once; descendants as they are seen."""

    def __init__(self, leader_pid: int) -> None:
        self.leader_pid = leader_pid
        self._watchdog = guard()
        self.known: dict[int, Identity] = {}
        leader = Identity.of(leader_pid)
        if leader is not None:
            self._know(leader)

    @property
    def leader(self) -> Identity | None:
        return self.known.get(self.leader_pid)

    def refresh(self) -> None:
        """Add the leader's descendants and its group's members to the known set."""
        for identity in _tree(self.leader_pid):
            if identity.pid not in self.known:
                self._know(identity)

    def _know(self, identity: Identity) -> None:
        self.known[identity.pid] = identity
        if self._watchdog is not None:
            self._watchdog.watch(identity)

    def alive(self) -> list[psutil.Process]:
        return [p for p in (i.process() for i in self.known.values()) if p is not None]

    async def end(self, grace_s: float) -> bool:
        """Terminate everything known and alive, wait up to ``grace_s``, then kill what is
        left, then end the tree's container (Windows: its Job Object). Returns True when a
        process had to be stopped. Every wait is bounded."""
        if not platform.group_empty(self.leader_pid):  # a finished call skips the scan
            await anyio.to_thread.run_sync(self.refresh)
        living = self.alive()
        if living:
            _terminate(living)
            if not await _gone_within(self, grace_s):
                logger.warning("process tree of %s still runs %.1fs after terminate; killing it",
                               self.leader_pid, grace_s)
                _kill(self.alive())
                await _gone_within(self, grace_s)
        platform.end_contained(self.leader_pid)
        if self._watchdog is not None:
            self._watchdog.forget(self.known.values())
        return bool(living)


async def end_process_group(process: Process, grace_s: float,
                            tree: CallTree | None = None) -> bool:
    """End the child's whole tree (see ``CallTree.end``) and reap the child itself."""
    signalled = await (tree or CallTree(process.pid)).end(grace_s)
    with anyio.move_on_after(grace_s):
        await process.wait()
    return signalled


def end_trees_now(roots: Iterable[Identity], grace_s: float) -> int:
    """Synchronously end the trees of ``roots`` (recovery after a crash, the watchdog):
    SIGTERM all at once, one grace period, SIGKILL the rest. Roots that are gone or
    whose pid was reused are skipped; returns how many roots were still alive."""
    living: dict[int, psutil.Process] = {}
    alive = 0
    for root in roots:
        if root.process() is None:
            continue
        alive += 1
        for identity in _tree(root.pid):
            process = identity.process()
            if process is not None:
                living[process.pid] = process
    _terminate(living.values())
    _, still = psutil.wait_procs(list(living.values()), timeout=grace_s)
    _kill(still)
    psutil.wait_procs(still, timeout=grace_s)
    return alive


def _tree(pid: int) -> list[Identity]:
    """The process, its descendants, and the members of its process group where a tree
    has one (POSIX; the group outlives its leader, so it is searched even when the leader
    is gone)."""
    table = platform.proc_table()
    if table is not None:
        return _tree_in(table, pid)
    members: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    if platform.walks_process_groups():
        members += _group_members(pid, {p.pid for p in members})
    found = []
    for process in members:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found.append(Identity(process.pid, started(process)))
    return found


def _tree_in(table: Mapping[int, platform.ProcRow], pid: int) -> list[Identity]:
    """``_tree`` from ``platform.proc_table`` (0.8 ms less of every call). As in psutil's
    ``children(recursive=True)``, a child that started before its parent is a reused pid."""
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: dict[int, Identity] = {}
    pending = [pid] if pid in table else []
    while pending:
        parent = pending.pop()
        if parent in found:  # pids reused while /proc was read can make a loop
            continue
        found[parent] = Identity(parent, table[parent][2])
        pending += [child for child in children.get(parent, ())
                    if child not in found and table[child][2] >= table[parent][2]]
    if platform.walks_process_groups():
        for member, (_, group, since_boot) in table.items():
            if group == pid and member not in found:
                found[member] = Identity(member, since_boot)
    return list(found.values())


def _group_members(pgid: int, seen: set[int]) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        if process.pid in seen:
            continue
        if platform.process_group(process.pid) == pgid:
            members.append(process)
    return members


def _terminate(processes: Iterable[psutil.Process]) -> None:
    """SIGTERM on POSIX; on Windows TerminateProcess (there is no gentler request)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            process.terminate()


def _kill(processes: Iterable[psutil.Process]) -> None:
    """SIGKILL on POSIX; on Windows TerminateProcess."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            process.kill()


async def _gone_within(tree: CallTree, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        while tree.alive():  # noqa: ASYNC110 - nothing signals a foreign process's end
            await anyio.sleep(0.02)
        return True
    return False


_guard: list[Watchdog | None] = []


def guard() -> Watchdog | None:
    """This process's watchdog, started on first use (None where it cannot start)."""
    if not _guard:
        _guard.append(Watchdog.start(WATCHDOG_GRACE_S))
    return _guard[0]


class Watchdog:
    """The bridge's side of the watchdog process: register trees, forget ended ones.

    A write that fails (the watchdog died) is logged once; calls go on, and ledger
    recovery at the next start still ends what a crash leaves behind.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._broken = False

    @classmethod
    def start(cls, grace_s: float) -> Watchdog | None:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "claude_mcp_bridge.watchdog", str(os.getpid()),
                 str(grace_s), MARK],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, **platform.detached_options())
        except OSError as exc:
            logger.warning("no watchdog (%s): children outlive a crash of the bridge until "
                           "the next start recovers them", exc)
            return None
        return cls(process)

    def watch(self, identity: Identity) -> None:
        self._say(f"+ {identity.pid} {identity.created!r}\n")

    def forget(self, identities: Iterable[Identity]) -> None:
        self._say("".join(f"- {i.pid} {i.created!r}\n" for i in identities))

    def close(self) -> None:
        """Stop the watchdog: nothing is registered any more, so it ends nothing."""
        stdin: IO[bytes] | None = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)

    def _say(self, lines: str) -> None:
        stdin = self._process.stdin
        if self._broken or stdin is None or not lines:
            return
        try:
            stdin.write(lines.encode())
            stdin.flush()
        except OSError as exc:
            self._broken = True
            logger.warning("the watchdog is gone (%s); a crash of the bridge will leave "
                           "children until the next start recovers them", exc)


@cache
def owner(pid: int) -> str:
    """``host:pid:creation time`` of a process, as the ledger stores a call's owner."""
    identity = Identity.of(pid)
    return f"{socket.gethostname()}:{pid}:{f'{identity.created:.2f}' if identity else ''}"


def owner_host(owner_id: str) -> str:
    """The host an ``owner`` id names."""
    return owner_id.rsplit(":", 2)[0]


def owner_alive(owner_id: str) -> bool:
    """False only when ``owner_id`` (from ``owner``) ran on this host and has certainly
    ended (gone, or its pid now names another process)."""
    parts = owner_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # not an owner we wrote: leave it alone
    host, pid_text, created = parts
    if host != socket.gethostname():
        return True
    try:
        identity = Identity(int(pid_text), float(created))
    except ValueError:
        return Identity.of(int(pid_text)) is not None  # written without a creation time
    return identity.process() is not None
