"""A child with pipes whose exit the event loop itself sees, through a pidfd (Linux 5.3).

asyncio before Python 3.12 watches every child with a thread of its own blocked in
``waitpid``, and starting that thread waits until the new thread has run: on a busy
machine that is milliseconds on the path of every call (``bench/PROFILE.md``). A pidfd
becomes readable when its process exits, so the loop reaps the child with one
non-blocking ``waitpid`` and no thread. The pipes are the loop's own pipe transports, as
asyncio's subprocesses use.

``open_process`` falls back to anyio's where this cannot work: another system, another
async backend than asyncio, or a kernel or sandbox that refuses ``pidfd_open``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

PIPE = subprocess.PIPE


@functools.cache
def available() -> bool:
    """Whether this system and kernel give pidfds (asked once)."""
    try:
        os.close(_pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def _pidfd_open(pid: int) -> int:
    if sys.platform == "linux":
        return os.pidfd_open(pid)
    raise OSError(errno.ENOSYS, "pidfds are Linux's")


async def open_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], **options: Any
) -> Process:
    """Start ``argv`` with its three standard streams piped (raises ``OSError``)."""
    if not available() or not _on_asyncio():
        return await anyio.open_process(list(argv), stdin=PIPE, stdout=PIPE, stderr=PIPE,
                                        cwd=cwd, env=dict(env), **options)
    popen = _popen(argv, cwd, env, options)
    try:
        return await PidfdProcess.watch(popen)
    except BaseException:
        with anyio.CancelScope(shield=True):
            popen.kill()
            await anyio.to_thread.run_sync(popen.wait)
        raise


def _popen(argv: Sequence[str], cwd: Path, env: Mapping[str, str],
           options: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start the child from the loop's thread, as asyncio's own subprocesses do: vfork
    returns once the child has exec'd, so the loop waits no longer than any spawn does."""
    return subprocess.Popen(list(argv), stdin=PIPE, stdout=PIPE, stderr=PIPE, cwd=cwd,
                            env=dict(env), bufsize=0, **options)


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio, say
        return False
    return True


class PidfdProcess(Process):
    """anyio's ``Process`` over a ``subprocess.Popen``, its pipes and its pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int, stdin: _Input,
                 stdout: _Output, stderr: _Output) -> None:
        self._popen, self._pidfd = popen, pidfd
        self._stdin, self._stdout, self._stderr = stdin, stdout, stderr
        self._exited = anyio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(pidfd, self._reap)

    @classmethod
    async def watch(cls, popen: subprocess.Popen[bytes]) -> PidfdProcess:
        """Hand ``popen``'s pipes to the loop and watch its exit; on failure the pipes are
        closed (the caller ends the child)."""
        pipes = (popen.stdin, popen.stdout, popen.stderr)
        streams: list[_Input | _Output] = []
        try:
            pidfd = _pidfd_open(popen.pid)
            try:
                streams.append(await _Input.connect(pipes[0]))  # each kept as it connects:
                streams.append(await _Output.connect(pipes[1]))  # a cancel in between must
                streams.append(await _Output.connect(pipes[2]))  # close it with its transport
            except BaseException:
                os.close(pidfd)
                raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                for stream in streams:
                    await stream.aclose()
            for pipe in pipes[len(streams):]:
                if pipe is not None:
                    pipe.close()
            raise
        stdin, stdout, stderr = streams
        assert isinstance(stdin, _Input) and isinstance(stdout, _Output)
        assert isinstance(stderr, _Output)
        return cls(popen, pidfd, stdin, stdout, stderr)

    def _reap(self) -> None:
        if self._popen.poll() is None:  # readable means exited; never block the loop
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._popen.returncode is not None
        return self._popen.returncode

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for stream in (self._stdin, self._stdout, self._stderr):
                await stream.aclose()
        try:
            await self.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                self.kill()
                await self.wait()
            raise

    def terminate(self) -> None:
        self._popen.terminate()

    def kill(self) -> None:
        self._popen.kill()

    def send_signal(self, signal: int) -> None:
        self._popen.send_signal(signal)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @property
    def stdin(self) -> ByteSendStream:
        return self._stdin

    @property
    def stdout(self) -> ByteReceiveStream:
        return self._stdout

    @property
    def stderr(self) -> ByteReceiveStream:
        return self._stderr


class _Output(ByteReceiveStream):
    """A child's stdout or stderr, read by the loop's pipe transport."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self._reader, self._transport = reader, transport

    @classmethod
    async def connect(cls, pipe: Any) -> _Output:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
        )
        return cls(reader, transport)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        data = await self._reader.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        self._transport.close()
        self._reader.set_exception(anyio.ClosedResourceError())
        await anyio.lowlevel.checkpoint()


class _Input(ByteSendStream):
    """A child's stdin, written by the loop's pipe transport with flow control."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._closed = False

    @classmethod
    async def connect(cls, pipe: Any) -> _Input:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), pipe
        )
        return cls(asyncio.StreamWriter(transport, protocol, None, loop))

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._writer.write(item)
            await self._writer.drain()
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._writer.close()
        await anyio.lowlevel.checkpoint()
