"""A throw-away HOME, project and data dir for one benchmark, and the ``claude`` it runs.

Nothing here touches the user's own ``~/.claude``: HOME points into the workspace, so the
bridge publishes only what a benchmark wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TRIVIAL_CLAUDE = BENCH_DIR / "trivial_claude.py"

AGENT = "bench"
"""The agent every call benchmark calls, published as ``agent_bench``."""
TOOL = f"agent_{AGENT}"


@dataclass
class Workspace:
    root: Path
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def agents_dir(self) -> Path:
        return self.project / ".claude" / "agents"

    @property
    def skills_dir(self) -> Path:
        return self.project / ".claude" / "skills"

    def agent(self, name: str, description: str, body: str, front: str = "") -> Path:
        path = self.agents_dir / f"{name}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\nname: {name}\ndescription: {description}\n{front}---\n{body}\n")
        return path

    def skill(self, name: str, description: str, body: str, front: str = "") -> Path:
        path = self.skills_dir / name / "SKILL.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\nname: {name}\ndescription: {description}\n{front}---\n{body}\n")
        return path

    def config(self, toml: str, name: str = "config.toml") -> Path:
        path = self.root / name
        path.write_text(toml)
        return path

    def trivial_claude(self) -> Path:
        """An executable ``claude`` that is ``trivial_claude.py`` under this Python, no shell."""
        launcher = self.root / "bin" / "claude"
        launcher.parent.mkdir(exist_ok=True)
        launcher.write_text(f"#!{sys.executable} -IS\n" + TRIVIAL_CLAUDE.read_text())
        launcher.chmod(0o755)
        return launcher

    def recording_shim(self, target: Path, record: Path) -> Path:
        """A ``claude`` that writes its argv, env and cwd to ``record``, then execs ``target``."""
        shim = self.root / "bin" / "recording-claude"
        shim.parent.mkdir(exist_ok=True)
        shim.write_text(
            f"#!{sys.executable} -IS\n"
            "import json, os, sys\n"
            f"with open({str(record)!r}, 'w') as f:\n"
            "    json.dump({'argv': sys.argv[1:], 'env': dict(os.environ),\n"
            "               'cwd': os.getcwd()}, f)\n"
            f"os.execv({str(target)!r}, [{str(target)!r}, *sys.argv[1:]])\n")
        shim.chmod(0o755)
        return shim

    def bridge_env(self, claude: Path, **extra: str) -> dict[str, str]:
        """The environment a bridge process runs with (its children inherit it)."""
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "CLAUDE_MCP_BRIDGE_CLAUDE_BIN": str(claude),
            "CLAUDE_MCP_BRIDGE_DATA_DIR": str(self.data),
            **self.env_extra,
            **extra,
        }


@contextmanager
def workspace(prefix: str) -> Iterator[Workspace]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        ws = Workspace(root)
        for folder in (ws.home / ".claude", ws.project, ws.data):
            folder.mkdir(parents=True)
        ws.agent(AGENT, "Answers benchmark prompts.", "You answer in one word.")
        yield ws
    finally:
        shutil.rmtree(root, ignore_errors=True)


def toml_config(sections: Mapping[str, Mapping[str, object]]) -> str:
    """TOML text for a few flat sections (values JSON-encoded, which TOML reads alike)."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def generate_definitions(ws: Workspace, agents: int, skills: int) -> None:
    """Many realistic definitions: front matter with tools and a model, a few paragraphs of body.

    Agents are spread over 20 sub-folders, as a team's shared collection would be.
    """
    body = "\n\n".join(
        f"## Step {step}\nRead the relevant files first, then explain what you found in plain "
        "words, citing file and line. Keep the answer short; never change a file unless asked."
        for step in range(1, 6))
    for index in range(agents):
        path = ws.agents_dir / f"team-{index % 20:02d}" / f"agent-{index:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"---\nname: agent-{index:04d}\n"
            f"description: Reviews area {index} of the code base and reports risky changes, "
            "with file and line for each finding.\n"
            "tools: Read, Grep, Glob\nmodel: sonnet\n---\n"
            f"You are the reviewer for area {index}.\n\n{body}\n")
    for index in range(skills):
        ws.skill(f"skill-{index:04d}",
                 f"Formats release notes of component {index} from the git log.",
                 f"# Release notes {index}\n\n{body}",
                 front="allowed-tools: Read, Bash(git log:*)\n")
