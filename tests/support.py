"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def agent_tools(tools) -> list[str]:
    """The names of the per-definition tools, without the bridge's own (jobs, router)."""
    return [t.name for t in tools if t.name.startswith(("agent_", "skill_"))]
