"""Helpers for running the bridge against the real `claude` CLI and the scripted Messages API."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio
from mcp import Client

from claude_mcp_bridge.doctor import TESTED_CLI_VERSIONS
from claude_mcp_bridge.server import create_server, open_bridge
from claude_mcp_bridge.settings import ClaudeExecutable, Settings
from tests.fakes.messages_api import ScriptedModel
from tests.support import pid_alive

if TYPE_CHECKING:
    from tests.conftest import Workspace

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "scheduling"
DEMO_MCP_SERVER = REPO / "tests" / "fixtures" / "real_cli" / "demo_mcp_server.py"
PINNED_VERSION, LATEST_VERSION = TESTED_CLI_VERSIONS
# Where .ci/run installs each version, and the variable that points at another install.
INSTALLS = {PINNED_VERSION: ("claude-cli", "CLAUDE_MCP_BRIDGE_REAL_CLAUDE"),
            LATEST_VERSION: ("claude-cli-latest", "CLAUDE_MCP_BRIDGE_REAL_CLAUDE_LATEST")}


def real_claude_path(version: str = PINNED_VERSION) -> Path:
    folder, variable = INSTALLS[version]
    configured = os.environ.get(variable)
    if configured:
        return Path(configured)
    return REPO / ".cache" / folder / "node_modules" / ".bin" / "claude"


def install_hint(version: str) -> str:
    folder, variable = INSTALLS[version]
    return (f"run .ci/run (npm install --prefix .cache/{folder} "
            f"@anthropic-ai/claude-code@{version}) or set {variable}")


@dataclass
class RealCli:
    """The real CLI behind a recording shim, pointed at one scripted model."""

    shim: Path
    argv_dir: Path
    server: ScriptedModel
    home: Path
    progress: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a bridge or CLI under test: PYTHONPATH so every bridge process
        imports this checkout, the scripted model's variables, and ``extra``.

        MCP servers marked ``alwaysLoad`` are awaited before the first model turn for at most
        ``MCP_CONNECT_TIMEOUT_MS`` (5 s by default): a loaded machine can take longer to start
        a Python server, and a test must not depend on that.
        """
        return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
                "MCP_CONNECT_TIMEOUT_MS": "60000", **self.server.cli_env(str(self.home)),
                **extra}

    def argvs(self) -> list[list[str]]:
        files = sorted(self.argv_dir.glob("*.argv"), key=lambda p: p.stat().st_mtime_ns)
        return [p.read_bytes().decode().split("\0")[:-1] for p in files]

    def last_argv(self) -> list[str]:
        argvs = self.argvs()
        assert argvs, "the bridge never started claude"
        return argvs[-1]

    def pids(self) -> list[int]:
        return [int(p.stem) for p in self.argv_dir.glob("*.argv")]

    async def on_progress(self, progress: float, total: float | None, message: str | None
                          ) -> None:
        if message:
            self.progress.append(message)


def bridge_settings(workspace: Workspace, real: RealCli,
                    config: str | dict[str, Any] | None = None, **options: Any) -> Settings:
    """In-process bridge settings whose children run the real CLI (through the shim)."""
    settings = workspace.settings(None, config, **options)
    return replace(settings, claude=ClaudeExecutable(real.shim, "real CLI shim"))


@asynccontextmanager
async def bridge_client(settings: Settings, mode: str = "auto") -> AsyncIterator[Client]:
    with open_bridge(settings) as bridge:
        async with Client(create_server(bridge), mode=mode) as client:
            yield client


async def call(settings: Settings, real: RealCli, tool: str, /, **arguments: Any) -> Any:
    """One tool call through an in-process bridge; returns the CallToolResult."""
    with anyio.fail_after(60):
        async with bridge_client(settings) as client:
            return await client.call_tool(tool, arguments, progress_callback=real.on_progress)


async def wait_until_dead(pids: list[int], within_s: float = 15) -> list[int]:
    """The pids still alive after ``within_s`` seconds (an empty list when all ended)."""
    with anyio.move_on_after(within_s):
        while any(pid_alive(p) for p in pids):  # noqa: ASYNC110 - nothing signals another's exit
            await anyio.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def example_module(name: str) -> ModuleType:
    """A module of the scheduling example (a folder of scripts that import each other)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    return importlib.import_module(name)
