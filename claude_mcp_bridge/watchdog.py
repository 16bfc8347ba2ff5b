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

import sys

import psutil

from . import platform
from .processes import Identity, end_trees_now, marked


def main(argv: list[str]) -> int:
    grace_s = float(argv[2]) if len(argv) > 2 else 5.0
    # A terminal's Ctrl-C or a client closing the bridge's group must not end the guard.
    platform.ignore_shutdown_signals()
    watched: dict[Identity, None] = {}
    for line in sys.stdin:
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


if __name__ == "__main__":
    psutil.Process()  # fail early if psutil cannot read processes here
    sys.exit(main(sys.argv))
