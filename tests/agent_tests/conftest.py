"""Helpers for agent tests: write test files, run suites in process, run the `test` command."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from claude_mcp_bridge.agent_tests import cli as agent_tests
from claude_mcp_bridge.agent_tests.cases import select_case_files
from claude_mcp_bridge.agent_tests.runner import RunOptions, SuiteResult, run_suite
from claude_mcp_bridge.bridge import open_bridge
from claude_mcp_bridge.settings import Settings


def write_tests(project: Path, name: str, text: str) -> Path:
    """Write ``.claude/agent-tests/<name>.yaml`` (dedented) in ``project``."""
    folder = project / ".claude" / "agent-tests"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@dataclass
class Said:
    """A progress callback that keeps every message (and can act on one)."""

    messages: list[str] = field(default_factory=list)
    on: Callable[[str], None] | None = None

    async def __call__(self, message: str) -> None:
        self.messages.append(message)
        if self.on is not None:
            self.on(message)

    async def say(self, message: str) -> None:  # the shape of server.Progress
        await self(message)


async def run_tests(settings: Settings, *selectors: str, said: Said | None = None,
                    **options: Any) -> SuiteResult:
    """Select test files like the CLI does and run them through a real bridge."""
    selection = select_case_files(list(selectors), settings.roots)
    assert not selection.diagnostics, selection.diagnostics
    with open_bridge(settings) as bridge:
        return await run_suite(bridge, bridge.catalog, selection.files, RunOptions(**options),
                               said or Said())


@dataclass
class Ran:
    code: int
    out: str
    err: str


RunCli = Callable[..., Ran]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """``claude-mcp-bridge test ARGS`` in process, wired the way cli.py wires it."""

    def run(settings: Settings, *argv: str) -> Ran:
        parser = argparse.ArgumentParser(prog="claude-mcp-bridge")
        agent_tests.add_parser(parser.add_subparsers(dest="command"),
                               argparse.ArgumentParser(add_help=False))
        capsys.readouterr()
        code = agent_tests.run(parser.parse_args(["test", *argv]), settings)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run

