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

POLL_S = 0.05
"""After the watchdog has read all the bridge wrote, it waits this long before it reads again
(POSIX). A reader blocked on the pipe is woken by every write, and that wake-up cost the bridge
about 0.5 ms of every call (two writes, each handing the CPU to the watchdog); now news that
comes meanwhile waits in the pipe. Idle, it waits in ``read``: no wake-ups, and the pipe's end
is seen at once."""
CHUNK = 65536


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
    if platform.KIND != "posix":  # Windows, and portable mode, which stands for it
        yield from (line.decode() for line in stdin)
        return
    fd, held = stdin.fileno(), b""
    while chunk := os.read(fd, CHUNK):
        *lines, held = (held + chunk).split(b"\n")
        yield from (line.decode() for line in lines)
        if len(chunk) < CHUNK:  # read all there was: let more gather (see POLL_S)
            time.sleep(POLL_S)
        # a full chunk: more is waiting, and a writer may be blocked on a full pipe


if __name__ == "__main__":
    psutil.Process()  # fail early if psutil cannot read processes here
    sys.exit(main(sys.argv))
