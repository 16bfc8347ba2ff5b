"""The bridge publishes exactly the agents and skills the real CLI loads, as the CLI shows them.

For each corpus under ``tests/fixtures/agent_corpus/`` the real CLI runs once with a config dir
(``CLAUDE_CONFIG_DIR``) holding that corpus; the first request it sends the scripted Messages API
lists every agent it loaded with its description and tools, and every skill with its
description. The bridge's registry over the same folder must give the same lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agents_registry import Roots, load_registry
from tests.fakes.messages_api import scripted_model
from tests.real_cli.listing import (
    expected_agents,
    expected_skills,
    listed_agents,
    listed_skills,
)

pytestmark = pytest.mark.real_cli

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "agent_corpus"


def first_request_text(claude_bin: Path, config_dir: Path, home: Path) -> str:
    with scripted_model() as server:
        env = {"PATH": os.environ.get("PATH", ""), **server.cli_env(str(home)),
               "CLAUDE_CONFIG_DIR": str(config_dir)}
        done = subprocess.run([str(claude_bin), "-p"], input="Say done", capture_output=True,
                              text=True, env=env, cwd=home, timeout=120)
        assert done.returncode == 0, done.stderr
        return server.turn_requests[0].message_text


@pytest.mark.parametrize("corpus", ["voltagent", "tricky"])
def test_the_bridge_publishes_what_the_cli_shows_the_model(
        claude_bin: Path, cli_version: str, tmp_path: Path, corpus: str) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(CORPUS / corpus, config_dir)
    registry = load_registry(Roots(user_dir=config_dir, project_dir=None))
    skill_dirs = config_dir / "skills"
    skill_names = {p.name for p in skill_dirs.iterdir()} if skill_dirs.is_dir() else set()

    text = first_request_text(claude_bin, config_dir, tmp_path)

    assert listed_agents(text) == expected_agents(registry)
    assert listed_skills(text, skill_names) == expected_skills(registry, cli_version)
    assert len(registry.agents) >= (100 if corpus == "voltagent" else 50)
