"""The bridge against the real `claude` CLI, offline, with the scripted Messages API.

Every test here runs once per tested CLI version (``TESTED_CLI_VERSIONS``): the pinned one,
``$CLAUDE_MCP_BRIDGE_REAL_CLAUDE`` else ``.cache/claude-cli/node_modules/.bin/claude``, and the
latest, ``$CLAUDE_MCP_BRIDGE_REAL_CLAUDE_LATEST`` else ``.cache/claude-cli-latest/...`` (both
installed by ``.ci/run``); a version that is absent skips with the reason. The bridge runs the
CLI through a shim that records each argv (one file per process, named by its pid, which ``exec``
keeps), so a test sees exactly what the bridge built and which processes it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fakes.messages_api import scripted_model
from tests.real_cli.support import (
    TESTED_CLI_VERSIONS,
    RealCli,
    install_hint,
    real_claude_path,
)
from tests.support import pid_alive

if TYPE_CHECKING:
    from tests.conftest import Workspace


@pytest.fixture(scope="session", params=TESTED_CLI_VERSIONS)
def cli_version(request: pytest.FixtureRequest) -> str:
    """The version of the real CLI this test runs against."""
    return str(request.param)


@pytest.fixture(scope="session")
def claude_bin(cli_version: str) -> Path:
    path = real_claude_path(cli_version)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"the real claude CLI {cli_version} is not installed at {path}: "
                    f"{install_hint(cli_version)}")
    return path


@pytest.fixture
def real_cli(claude_bin: Path, workspace: Workspace, tmp_path: Path) -> Iterator[RealCli]:
    argv_dir = tmp_path / "argv"
    argv_dir.mkdir()
    shim = tmp_path / "shim" / "claude"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nprintf \'%s\\0\' "$@" > "{argv_dir}/$$.argv"\n'
                    f'exec "{claude_bin}" "$@"\n')
    shim.chmod(0o755)
    (workspace.home / ".claude").mkdir(exist_ok=True)
    with scripted_model() as server:
        real = RealCli(shim, argv_dir, server, workspace.home)
        workspace.extra_env.update(real.env())
        yield real
    for pid in real.pids():  # a failed test must not leave a CLI behind
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


