"""The watchdog reads the bridge's news in batches (a reader blocked on the pipe is woken by
every write): lines split across writes come out whole, it waits ``POLL_S`` only once it has
read all there was, and the pipe's end ends the lines."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from claude_mcp_bridge import platform, watchdog

pytestmark = pytest.mark.skipif(platform.KIND != "posix", reason="Windows reads as it comes")


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # a test closed it: the pipe's end
            os.close(fd)


def test_lines_split_across_writes_come_out_whole_until_the_pipe_closes(pipe, monkeypatch):
    read_end, write_end = pipe
    chunks = [b"0\n- 10 1.", b"50\n+ 11 2.0\n"]
    os.write(write_end, b"+ 10 1.5")

    def between_reads(seconds: float) -> None:
        # each wait is where the bridge writes next; after the last, it closes the pipe
        if chunks:
            os.write(write_end, chunks.pop(0))
        else:
            os.close(write_end)

    monkeypatch.setattr(watchdog.time, "sleep", between_reads)
    with os.fdopen(read_end, "rb", closefd=False) as stdin:
        assert list(watchdog._lines(stdin)) == ["+ 10 1.50", "- 10 1.50", "+ 11 2.0"]


def test_a_full_read_is_followed_by_another_without_waiting(pipe, monkeypatch):
    """A burst bigger than a read (the bridge forgetting thousands of processes at once)
    is drained at once: a writer blocked on a full pipe must not wait for the poll."""
    read_end, write_end = pipe
    waits: list[float] = []
    monkeypatch.setattr(watchdog, "CHUNK", 8)
    monkeypatch.setattr(watchdog.time, "sleep", waits.append)
    os.write(write_end, b"+ 1 1.0\n+ 2 2.0\n+ 3 3.")  # two full reads of 8 bytes, then 6
    with os.fdopen(read_end, "rb", closefd=False) as stdin:
        lines = watchdog._lines(stdin)
        assert [next(lines), next(lines)] == ["+ 1 1.0", "+ 2 2.0"]
        assert waits == []  # both came from full reads
        os.write(write_end, b"00\n")  # 9 bytes left: a full read, then a short one
        os.close(write_end)
        assert list(lines) == ["+ 3 3.00"]
    assert waits == [watchdog.POLL_S]  # once, after the short read
