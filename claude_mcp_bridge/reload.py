"""Hot reload: definition files change -> catalog rebuilt -> clients told ``list_changed``.

The watcher polls the definition roots (stat only: path, mtime, size, inode) every
``poll_s``; a change is acted on once the files have been quiet for ``debounce_s``,
so an editor's save (write, rename, touch) gives one rebuild. Polling needs no
extra dependency and behaves the same on every file system (network mounts and
editors that replace files included); with 2,500 files a poll costs a few ms.

A file changed less than ``RACY_S`` before a poll is also known by a digest of its bytes:
a rewrite of the same size within one tick of the file system's clock leaves its stat as
it was (git calls such index entries "racy"). Once the file is older, its stat alone is
compared again: a digest one of two polls lacks matches any.

A call already running keeps the ``ToolEntry`` (and so the definition) it started
with: the catalog is swapped, never mutated.

The config file is watched the same way (``watch_file``); the server re-reads it and
swaps in its clients, so a token revoked in the file stops working without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from agents_registry import FileState, Roots, candidate_files, read_bytes

logger = logging.getLogger(__name__)

RACY_S = 2.0
"""The parse cache's ``SETTLE_S``, for the same reason."""
UNREAD = ""
"""The digest of a racy file the catalog's load saw but did not hash: it equals no digest, so
the first poll that hashes the file reloads the catalog once."""

State = tuple[int, int, int, str | None]
"""A file as a poll saw it: mtime (ns), size, inode, and while it is racy a digest."""
Snapshot = dict[str, State]
"""Every file looked at, by path."""


def signature(roots: Roots) -> Snapshot:
    """What the definition files look like on disk now (one stat per file, and a read of
    each racy one)."""
    now = time.time_ns()
    states = ((str(c.path), _state(c.path, now)) for c in candidate_files(roots))
    return {path: state for path, state in states if state is not None}


def from_load(files: Iterable[FileState]) -> Snapshot:
    """``Registry.files``, the states the catalog's load saw, as a snapshot."""
    racy_since = time.time_ns() - int(RACY_S * 1e9)
    return {path: (mtime, size, inode, UNREAD if mtime > racy_since else None)
            for path, mtime, size, inode in files}


def same(before: Snapshot, after: Snapshot) -> bool:
    """No file came, went or changed between two snapshots."""
    return before.keys() == after.keys() and all(
        _same_state(state, after[path]) for path, state in before.items())


def _same_state(before: State, after: State) -> bool:
    return before[:3] == after[:3] and (
        before[3] is None or after[3] is None or before[3] == after[3])


def _state(path: Path, now_ns: int) -> State | None:
    try:
        info = os.stat(path)
    except OSError:
        return None  # vanished between listing and stat: the next poll sees it gone
    racy = now_ns - info.st_mtime_ns < RACY_S * 1e9
    return info.st_mtime_ns, info.st_size, info.st_ino, _digest(path) if racy else None


def _digest(path: Path) -> str:
    raw = read_bytes(path)  # a FIFO or an unreadable file: no digest to compare
    return hashlib.sha256(raw).hexdigest() if isinstance(raw, bytes) else UNREAD


async def watch(
    roots: Roots, on_change: Callable[[], Awaitable[None]], *, poll_s: float, debounce_s: float,
    first: Iterable[FileState] | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_change`` after each settled change of the files under ``roots``; forever.
    Started (``task_status``) once it has taken its first look, or at once from ``first``:
    the files as the catalog's load saw them before reading them (``Registry.files``), so a
    change made since is seen on the first poll, and no second walk of 2,500 files holds up
    start-up (34 ms)."""
    await _watch(lambda: signature(roots), on_change, poll_s=poll_s, debounce_s=debounce_s,
                 first=None if first is None else from_load(first), task_status=task_status)


def file_signature(path: Path) -> Snapshot:
    """What one file looks like on disk now (empty: it does not exist)."""
    state = _state(path, time.time_ns())
    return {} if state is None else {str(path): state}


async def watch_file(
    path: Path, on_change: Callable[[], Awaitable[None]], *, poll_s: float, debounce_s: float,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_change`` after each settled change of the file at ``path``; forever."""
    await _watch(lambda: file_signature(path), on_change, poll_s=poll_s,
                 debounce_s=debounce_s, task_status=task_status)


async def _watch(look: Callable[[], Snapshot], on_change: Callable[[], Awaitable[None]], *,
                 poll_s: float, debounce_s: float, first: Snapshot | None = None,
                 task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    current = first if first is not None else await anyio.to_thread.run_sync(look)
    task_status.started()
    while True:
        await anyio.sleep(poll_s)
        seen = await anyio.to_thread.run_sync(look)
        if same(current, seen):
            continue
        while True:  # debounce: wait until a poll sees no further change
            await anyio.sleep(debounce_s)
            settled = await anyio.to_thread.run_sync(look)
            if same(seen, settled):
                break
            seen = settled
        current = seen
        try:
            await on_change()
        except Exception:  # a reload must never take the server down
            logger.exception("reloading after a change failed; what was loaded stays")


def watched_dirs(roots: Roots) -> list[Path]:
    """The folders whose changes are picked up, for the start-up log."""
    return [root for root, _ in roots.scoped()]
