"""Shared fixtures: a strict fake `claude` and a workspace of definition files."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from agents_registry import Roots
from claude_mcp_bridge.config import Config
from claude_mcp_bridge.settings import ClaudeExecutable, Settings
from tests.support import pid_alive

REPO = Path(__file__).resolve().parent.parent
FAKE_CLAUDE = REPO / "tests" / "fakes" / "fake_claude.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeClaude:
    """A `claude` launcher for the strict fake, with its script and its records."""

    path: Path
    record_dir: Path
    script_path: Path

    def script(self, steps: list[Any] | dict[str, Any]) -> None:
        self.script_path.write_text(json.dumps(steps))

    @property
    def env(self) -> dict[str, str]:
        return {
            "FAKE_CLAUDE_SCRIPT": str(self.script_path),
            "FAKE_CLAUDE_RECORD_DIR": str(self.record_dir),
        }

    def records(self) -> list[dict[str, Any]]:
        """Every run's record, in the order they were written: by the monotonic clock, as
        file times follow the wall clock, which CI machines have set while tests run."""
        records = [json.loads(p.read_text()) for p in self.record_dir.glob("*.json")]
        return sorted(records, key=lambda record: record["monotonic"])

    def last(self) -> dict[str, Any]:
        records = self.records()
        assert records, "the fake claude was never run"
        return records[-1]

    def spawned_pids(self) -> list[int]:
        return [int(line) for f in self.record_dir.glob("*.children")
                for line in f.read_text().split()]


@pytest.fixture
def fake_claude(tmp_path: Path) -> Iterator[FakeClaude]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "claude"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLAUDE}" "$@"\n')
    launcher.chmod(0o755)
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    fake = FakeClaude(launcher, record_dir, tmp_path / "script.json")
    fake.script({"default": [{"init": {}}, {"text": "Fake answer"}, {"result": {}}]})
    yield fake
    for pid in fake.spawned_pids():  # never leave a grandchild behind, even on failure
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Workspace:
    """A HOME with ~/.claude and a project with .claude, holding definition files."""

    home: Path
    project: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def user_claude(self) -> Path:
        return self.home / ".claude"

    def agent(self, name: str, front: str = "", body: str = "You help.", *,
              scope: str = "project", description: str | None = None) -> Path:
        root = self._root(scope) / "agents"
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{name}.md"
        desc = description if description is not None else f"The {name} agent."
        path.write_text(f"---\nname: {name}\ndescription: {desc}\n{front}---\n{body}\n")
        return path

    def skill(self, name: str, front: str = "", body: str = "Do the thing.", *,
              scope: str = "project") -> Path:
        folder = self._root(scope) / "skills" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "SKILL.md"
        path.write_text(f"---\nname: {name}\ndescription: The {name} skill.\n{front}---\n{body}\n")
        return path

    def _root(self, scope: str) -> Path:
        return self.project / ".claude" if scope == "project" else self.user_claude

    def settings(self, fake: FakeClaude | None, config: str | dict[str, Any] | None = None,
                 **options: Any) -> Settings:
        """Settings for an in-process bridge; ``config`` is TOML text or a dict of sections."""
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), **self.extra_env}
        if fake is not None:
            env.update(fake.env)
        claude = ClaudeExecutable(fake.path if fake else None, "test fixture")
        if isinstance(config, str):
            import tomllib
            config = tomllib.loads(config)
        data: dict[str, Any] = dict(config or {})
        limits = data.setdefault("limits", {})
        limits.setdefault("kill_grace_s", 2.0)
        limits.setdefault("result_grace_s", options.pop("result_grace_s", 1.0))
        return Settings(
            roots=Roots(user_dir=self.user_claude, project_dir=self.project),
            claude=claude,
            config=Config.model_validate(data),
            ledger_path=self.home / "ledger.sqlite3",
            base_env=MappingProxyType(env),
            **options,
        )

    def cli_env(self, fake: FakeClaude | None) -> dict[str, str]:
        """Environment for running `claude-mcp-bridge` as a subprocess."""
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), **self.extra_env}
        if fake is not None:
            env.update(fake.env)
            env["CLAUDE_MCP_BRIDGE_CLAUDE_BIN"] = str(fake.path)
        return env


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    home = tmp_path / "home"
    project = tmp_path / "project"
    home.mkdir()
    project.mkdir()
    return Workspace(home, project)
