"""A committed version of the package, for measuring before and after in one run.

``--baseline REV`` extracts ``claude_mcp_bridge`` and ``agents_registry`` as they were at
``REV`` (``git archive``) into ``.cache/baseline/<commit>/``; a bridge started with
``PYTHONPATH`` pointing there imports that copy instead of the working tree (the editable
install's finder comes after ``PYTHONPATH``). The interpreter and its packages are the same,
so what differs is only the bridge's own code.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

from .workspace import REPO

PACKAGES = ("claude_mcp_bridge", "agents_registry")


def baseline_tree(rev: str) -> Path:
    """The package as of ``rev``, extracted once per commit; its folder for ``PYTHONPATH``."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    target = REPO / ".cache" / "baseline" / commit
    if not (target / PACKAGES[0]).is_dir():
        archive = subprocess.run(["git", "archive", "--format=tar", commit, *PACKAGES],
                                 cwd=REPO, capture_output=True, check=True).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target


def baseline_env(env: Mapping[str, str], tree: Path) -> dict[str, str]:
    """``env`` for a bridge that runs the baseline copy."""
    return {**env, "PYTHONPATH": str(tree)}
