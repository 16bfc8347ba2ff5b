"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import selectors
import shutil
import time
from pathlib import Path
from typing import IO


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def agent_tools(tools) -> list[str]:
    """The names of the per-definition tools, without the bridge's own (jobs, router)."""
    return [t.name for t in tools if t.name.startswith(("agent_", "skill_"))]


def read_until(stream: IO[bytes], needle: bytes, timeout_s: float = 60.0) -> bytes:
    """Read a child's pipe until ``needle`` has appeared; returns what was read. Fails when
    the pipe closes or ``timeout_s`` passes first (a bound, not a synchronisation)."""
    deadline = time.monotonic() + timeout_s
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while needle not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no {needle!r} within {timeout_s}s; read: {seen[-2000:]!r}")
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the pipe closed before {needle!r}; read: {seen[-2000:]!r}")
            seen += chunk
    return seen


def survivors(pids: list[int], within_s: float) -> list[int]:
    """The pids still alive once they all ended or ``within_s`` passed (zombies count as
    gone: where PID 1 does not reap, an orphan stays a zombie). Nothing announces the end
    of a process that is not our child, so this polls /proc."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def path_without(tool: str, tmp_path: Path) -> str:
    """A PATH of symlinks to everything on PATH but ``tool`` (the sandbox cannot run)."""
    bin_dir = tmp_path / f"no-{tool}"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name != tool and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(directory, name))
    assert shutil.which(tool, path=str(bin_dir)) is None
    return str(bin_dir)

