"""Processes the bridge starts and must end: spawning a group leader, ending its group,
and telling whether a process (by pid and start time) is still the one we knew.

Both the runner (ending a call's child) and ledger recovery (is the bridge that owned a
``running`` row still alive?) use this module; nothing else signals or probes processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import anyio
from anyio.abc import Process

logger = logging.getLogger(__name__)

_PROC = Path("/proc")


async def start_group_leader(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> Process:
    """Start ``argv`` with pipes as the leader of a new process group (raises ``OSError``)."""
    return await anyio.open_process(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )


async def end_process_group(process: Process, grace_s: float) -> bool:
    """End every process in the child's group: SIGTERM, wait ``grace_s``, SIGKILL.

    Also sweeps a group whose leader already exited: MCP servers started by the
    CLI can outlive it. Returns True when a signal had to be sent. Every wait is
    bounded.
    """
    pgid = process.pid  # start_new_session=True makes the child its group's leader
    if process.returncode is not None and not group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    if not await _group_gone_within(process, pgid, grace_s):
        logger.warning("process group %s ignored SIGTERM for %.1fs; sending SIGKILL", pgid, grace_s)
        _signal_group(pgid, signal.SIGKILL)
        await _group_gone_within(process, pgid, grace_s)
    return True


async def _group_gone_within(process: Process, pgid: int, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        await process.wait()
        while group_alive(pgid):  # noqa: ASYNC110 - nothing signals a group's end; poll /proc
            await anyio.sleep(0.02)
        return True
    return False


def group_alive(pgid: int) -> bool:
    """True while a process of the group runs; zombies do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_live_member(pgid) if _PROC.is_dir() else True


def _has_live_member(pgid: int) -> bool:
    # An unreaped zombie still answers killpg(pgid, 0); where PID 1 does not reap
    # (containers), that would stall every cleanup for the whole grace period.
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@cache
def owner(pid: int) -> str:
    """``host:pid:start time`` of a process; the start time tells a reused pid apart."""
    return f"{socket.gethostname()}:{pid}:{start_time(pid) or ''}"


def owner_alive(owner_id: str) -> bool:
    """False only when ``owner_id`` (from ``owner``) ran on this host and has certainly
    ended."""
    parts = owner_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # not an owner we wrote: leave it alone
    host, pid_text, started = parts
    if host != socket.gethostname():
        return True
    pid = int(pid_text)
    if (_PROC / "self" / "stat").exists():
        current = start_time(pid)
        return current is not None and (not started or current == started)
    return pid_exists(pid)


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when the process
    is gone, a zombie, or there is no /proc."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    if fields[0] == "Z":
        return None
    return fields[19]


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
