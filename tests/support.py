"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any


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



def user_message(text: str) -> dict[str, Any]:
    """A stream-json user message, as the bridge writes the prompt (``command.control_stdin``)."""
    return {"type": "user", "message": {"role": "user", "content": text},
            "parent_tool_use_id": None, "session_id": "default"}


INITIALIZE = {"type": "control_request", "request_id": "init-1",
              "request": {"subtype": "initialize", "hooks": None}}


def event_kinds(events: list[dict[str, Any]]) -> list[str]:
    """``type`` of each event, ``type/subtype`` for the other events that have a subtype."""
    return [f"{e['type']}/{e['subtype']}" if "subtype" in e and e["type"] != "result"
            else e["type"] for e in events]


class LiveChild:
    """A `claude -p --input-format stream-json` child (real or fake) kept between turns:
    frames go to its stdin, its events are read up to the one awaited, each read bounded by
    ``timeout_s``. The caller owns the process (kill it in a ``finally``)."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
        assert proc.stdin and proc.stdout
        self.proc, self.stdin, self.stdout = proc, proc.stdin, proc.stdout
        self.timeout_s = timeout_s
        self.buffer = b""

    def send(self, *frames: dict[str, Any]) -> None:
        self.stdin.write(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        self.stdin.flush()

    def until(self, kind: str) -> list[dict[str, Any]]:
        """The events up to and including the next one of ``kind`` (``type``, or
        ``type/subtype`` as ``event_kinds`` writes it)."""
        got: list[dict[str, Any]] = []
        while not got or kind not in (got[-1]["type"], event_kinds(got[-1:])[0]):
            while b"\n" not in self.buffer:
                self.buffer += read_until(self.stdout, b"\n", self.timeout_s)
            line, self.buffer = self.buffer.split(b"\n", 1)
            got.append(json.loads(line))
        return got

    def turn(self, prompt: str) -> list[dict[str, Any]]:
        """Send ``prompt`` as a user message; the events up to its ``result``."""
        self.send(user_message(prompt))
        return self.until("result")

    def close(self) -> int:
        """Close stdin (the session ends); the exit code. Nothing may follow the last event
        read."""
        self.stdin.close()
        code = self.proc.wait(timeout=self.timeout_s)
        rest = self.buffer + self.stdout.read()
        assert rest == b"", f"output after the last event read: {rest[:2000]!r}"
        return code
