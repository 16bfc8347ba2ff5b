"""The watchdog reads the bridge's news without waiting on the pipe (a reader blocked there
is woken by every write): lines split across writes come out whole, and the pipe's end
ends them."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from claude_mcp_bridge import watchdog


@pytest.mark.skipif(sys.platform == "win32", reason="Windows reads the pipe as it comes")
def test_lines_split_across_writes_come_out_whole_until_the_pipe_closes(monkeypatch):
    monkeypatch.setattr(watchdog, "POLL_S", 0.001)
    read_end, write_end = os.pipe()
    written = threading.Event()

    def write() -> None:
        for chunk in (b"+ 10 1.5", b"0\n- 10 1.", b"50\n+ 11 2.0\n"):
            os.write(write_end, chunk)
        written.set()
        os.close(write_end)

    with os.fdopen(read_end, "rb") as stdin:
        writer = threading.Thread(target=write)
        writer.start()
        lines = list(watchdog._lines(stdin))
        writer.join()
    assert written.is_set()
    assert lines == ["+ 10 1.50", "- 10 1.50", "+ 11 2.0"]
