"""Can the CLI's sandbox run here? One probe, cached for the process.

On Linux the CLI sandboxes commands with bubblewrap (``bwrap``) and routes their network
through ``socat``; on macOS it uses Seatbelt, which is built in. A call that asks for the
sandbox where it cannot run is refused with ``problem()``'s reason, never run bare.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys

INSTALL_HINT = ("install them: `apt-get install bubblewrap socat` (Debian, Ubuntu), "
                "`dnf install bubblewrap socat` (Fedora), `pacman -S bubblewrap socat` (Arch)")


@functools.lru_cache(maxsize=1)
def problem() -> str | None:
    """Why the sandbox cannot run on this machine, or None when it can."""
    if sys.platform == "darwin":
        return None
    if not sys.platform.startswith("linux"):
        return f"the CLI's sandbox does not run on {sys.platform}"
    missing = [tool for tool in ("bwrap", "socat") if shutil.which(tool) is None]
    if missing:
        return (f"the sandbox needs {' and '.join(missing)} (packages bubblewrap, socat), "
                f"not found on PATH; {INSTALL_HINT}")
    return _bwrap_runs()


def _bwrap_runs() -> str | None:
    argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be started: {exc}"
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return (f"bwrap is installed but cannot create a sandbox here ({why[0]}); "
                "unprivileged user namespaces may be off (sysctl kernel.unprivileged_userns_clone"
                " or a container without them)")
    return None
