"""The watchdog process: ends the bridge's children when the bridge dies.

Started by ``processes.Watchdog.start`` in a session of its own, it reads lines from
the bridge on stdin: ``+ PID CREATED`` registers a process, ``- PID CREATED`` forgets
it. When stdin closes and the bridge is gone (``kill -9``, the OOM killer, a crash),
it ends every registered process still alive with its creation time unchanged, and
every process carrying the bridge's MARK in its environment, with their descendants
and groups: terminate, a grace period, kill.

    python -m claude_mcp_bridge.watchdog BRIDGE_PID GRACE_S [MARK]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

import psutil

from . import platform
from .processes import Identity, end_trees_now, marked

POLL_S = 0.2
"""How often the watchdog looks for the bridge's news (POSIX). It does not wait on the pipe:
a reader blocked there is woken by every write, and that wake-up cost the bridge 0.5 ms a
call (two writes, each handing the CPU to the watchdog)."""


def main(argv: list[str]) -> int:
    grace_s = float(argv[2]) if len(argv) > 2 else 5.0
    # A terminal's Ctrl-C or a client closing the bridge's group must not end the guard.
    platform.ignore_shutdown_signals()
    watched: dict[Identity, None] = {}
    for line in _lines(sys.stdin.buffer):
        parts = line.split()
        if len(parts) != 3 or parts[0] not in "+-":
            continue
        identity = Identity(int(parts[1]), float(parts[2]))
        if parts[0] == "+":
            watched[identity] = None
        else:
            watched.pop(identity, None)
    roots = list(watched)
    if len(argv) > 3:  # the CLI exits as its stdin closes: what it left carries the mark
        roots += marked(argv[3])
    end_trees_now(roots, grace_s)
    return 0


def _lines(stdin: BinaryIO) -> Iterator[str]:
    """The lines the bridge writes, until it closes the pipe (or dies)."""
    if sys.platform == "win32":  # no non-blocking pipes before Python 3.12
        yield from (line.decode() for line in stdin)
        return
    fd = stdin.fileno()
    os.set_blocking(fd, False)
    held = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(POLL_S)
            continue
        if not chunk:
            return
        *lines, held = (held + chunk).split(b"\n")
        yield from (line.decode() for line in lines)


if __name__ == "__main__":
    psutil.Process()  # fail early if psutil cannot read processes here
    sys.exit(main(sys.argv))
