"""A call's process tree from one pass over /proc (``platform.proc_table``): the same tree
psutil finds, a reused pid never taken for a descendant, and a loop of reused pids ends."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap

import pytest

from claude_mcp_bridge import platform, processes
from claude_mcp_bridge.processes import Identity

linux = pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")

# A leader in a new session; a child that stays in its group, with a grandchild; and a
# child that leaves the group (setsid). Each prints its pid, then all wait for stdin.
TREE = textwrap.dedent("""
    import os, subprocess, sys
    if len(sys.argv) == 1:
        kids = [subprocess.Popen([sys.executable, __file__, "stay"], stdin=sys.stdin),
                subprocess.Popen([sys.executable, __file__, "leave"], stdin=sys.stdin,
                                 start_new_session=True)]
    elif sys.argv[1] == "stay":
        kids = [subprocess.Popen([sys.executable, __file__, "leaf"], stdin=sys.stdin)]
    else:
        kids = []
    os.write(1, b"%d\\n" % os.getpid())  # one write: four processes share the pipe
    sys.stdin.read()
    for kid in kids:
        kid.wait()
""")


@linux
def test_the_tree_from_proc_is_the_one_psutil_finds(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "KIND", "posix")
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    leader = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        pids = _pids(leader, 4)  # waits for all four
        fast = set(processes._tree(leader.pid))
        monkeypatch.setattr(platform, "proc_table", lambda: None)
        slow = set(processes._tree(leader.pid))
    finally:
        assert leader.stdin is not None
        leader.stdin.close()
        leader.wait(timeout=30)
        assert leader.stdout is not None
        leader.stdout.close()
    assert {identity.pid for identity in fast} == pids
    assert fast == slow


@pytest.fixture
def groups(monkeypatch):
    """Trees include their process group, as on POSIX (not in portable mode)."""
    monkeypatch.setattr(platform, "walks_process_groups", lambda: True)


def test_a_child_older_than_its_parent_is_a_reused_pid(groups):
    table = {10: (1, 10, 5.0), 11: (10, 10, 6.0), 12: (11, 12, 4.0), 13: (1, 10, 7.0)}
    # 12 names 11 as its parent but started before it; 13 is only in the group
    assert set(processes._tree_in(table, 10)) == {
        Identity(10, 5.0), Identity(11, 6.0), Identity(13, 7.0)}


def test_a_loop_of_reused_pids_ends():
    table = {20: (21, 30, 5.0), 21: (20, 30, 5.0)}  # read while pids were being reused
    assert {identity.pid for identity in processes._tree_in(table, 20)} == {20, 21}


def test_the_group_is_searched_when_its_leader_is_gone(groups):
    table = {31: (1, 30, 5.0), 32: (31, 30, 6.0)}
    assert {identity.pid for identity in processes._tree_in(table, 30)} == {31, 32}


def _pids(process: subprocess.Popen[bytes], count: int) -> set[int]:
    """The pids the tree's ``count`` processes print, failing (not hanging) if they do not."""
    assert process.stdout is not None
    fd, printed = process.stdout.fileno(), b""
    while printed.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, f"the tree did not start: {printed!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"the tree ended early: {printed!r}"
        printed += chunk
    return {int(pid) for pid in printed.split()}
