"""Windows Job Objects: a child and every process it starts end together.

A job created with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` ends all its processes when
its last handle closes, so the bridge holding the handle is the guarantee: whether the
bridge ends the call (``Job.end``) or dies (Windows closes its handles), the tree goes.
Processes started by a process in the job are in the job too (Windows 8 and later also
when the bridge itself runs inside a job, as under some clients).

Only ``platform.py`` uses this module, and only on Windows; nothing here runs on Linux
except the structure layout and the order of calls (``tests/claude_mcp_bridge/
test_platform.py`` drives ``contain`` with a recording stand-in for kernel32).
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from typing import Any, Protocol, cast

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
"""The ``JOBOBJECTINFOCLASS`` of ``_ExtendedLimits``."""
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001
_EXIT_CODE = 1


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class _ExtendedLimits(ctypes.Structure):
    """``JOBOBJECT_EXTENDED_LIMIT_INFORMATION`` (144 bytes on 64-bit Windows)."""

    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class Kernel32(Protocol):
    """The five kernel32 functions used, as ``ctypes`` calls them (handles are ints)."""

    def CreateJobObjectW(self, attributes: None, name: None) -> int | None: ...
    def SetInformationJobObject(
        self, job: int, info_class: int, info: Any, size: int) -> int: ...
    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int | None: ...
    def AssignProcessToJobObject(self, job: int, process: int) -> int: ...
    def TerminateJobObject(self, job: int, exit_code: int) -> int: ...
    def CloseHandle(self, handle: int) -> int: ...


@dataclass
class Job:
    """A job holding one call's tree; ``end`` kills what is left in it and closes it."""

    handle: int
    kernel32: Kernel32
    closed: bool = False

    def end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.kernel32.TerminateJobObject(self.handle, _EXIT_CODE)
        self.kernel32.CloseHandle(self.handle)


def contain(pid: int, kernel32: Kernel32 | None = None) -> Job:
    """Put the running process ``pid`` (a child of ours, so its pid is not reused yet) in a
    new kill-on-close job. Raises ``OSError`` with Windows' reason when a step fails."""
    k32 = kernel32 or _kernel32()
    job = k32.CreateJobObjectW(None, None)
    if not job:
        raise _error("CreateJobObjectW")
    try:
        limits = _ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        if not k32.SetInformationJobObject(job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
                                           ctypes.byref(limits), ctypes.sizeof(limits)):
            raise _error("SetInformationJobObject")
        process = k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not process:
            raise _error("OpenProcess")
        try:
            if not k32.AssignProcessToJobObject(job, process):
                raise _error("AssignProcessToJobObject")
        finally:
            k32.CloseHandle(process)
    except BaseException:
        k32.CloseHandle(job)
        raise
    return Job(job, k32)


def _error(function: str) -> OSError:
    code = 0
    if sys.platform == "win32":
        code = ctypes.get_last_error()
    return OSError(code, f"{function} failed (Windows error {code})")


def _kernel32() -> Kernel32:
    if sys.platform != "win32":
        raise OSError("Job Objects exist only on Windows")
    dll = ctypes.WinDLL("kernel32", use_last_error=True)
    handle, dword, boolean = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    prototypes: dict[str, tuple[Any, list[Any]]] = {
        "CreateJobObjectW": (handle, [ctypes.c_void_p, ctypes.c_wchar_p]),
        "SetInformationJobObject": (boolean, [handle, ctypes.c_int, ctypes.c_void_p, dword]),
        "OpenProcess": (handle, [dword, boolean, dword]),
        "AssignProcessToJobObject": (boolean, [handle, handle]),
        "TerminateJobObject": (boolean, [handle, ctypes.c_uint]),
        "CloseHandle": (boolean, [handle]),
    }
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(dll, name)
        function.restype, function.argtypes = restype, argtypes
    return cast(Kernel32, dll)
