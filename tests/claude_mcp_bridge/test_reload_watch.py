"""The hot-reload watcher starts from the files as the catalog's load saw them
(``Registry.files``): the same form as its own polls, and a change made between the load
and the watcher's start is reloaded, not taken for the state the tools were built from."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from agents_registry import Roots, load_registry, parse_cache, registry
from claude_mcp_bridge.reload import signature, watch

AGENT = "---\nname: {name}\ndescription: Does {name} things.\n---\nBody of {name}.\n"


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    agents = tmp_path / "project" / ".claude" / "agents"
    agents.mkdir(parents=True)
    for name in ("alpha", "beta"):
        (agents / f"{name}.md").write_text(AGENT.format(name=name))
    elsewhere = tmp_path / "shared.md"
    elsewhere.write_text(AGENT.format(name="gamma"))
    (agents / "gamma.md").symlink_to(elsewhere)
    skill = tmp_path / "home" / ".claude" / "skills" / "delta"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(AGENT.format(name="delta"))
    return Roots(user_dir=tmp_path / "home" / ".claude", project_dir=tmp_path / "project")


@pytest.mark.parametrize("cached", [False, True])
def test_the_load_records_each_file_as_a_poll_sees_it(roots, tmp_path, monkeypatch, cached):
    monkeypatch.setattr(parse_cache, "SETTLE_S", 0.0)
    cache = tmp_path / "data" / "definitions.cache" if cached else None
    first = load_registry(roots, cache=cache)
    again = load_registry(roots, cache=cache)  # from the cache, when there is one
    assert len(first.agents) + len(first.skills) == 4
    assert first.files == again.files == signature(roots)


def test_a_file_that_cannot_be_seen_before_its_read_is_left_out(roots, monkeypatch):
    """Its state is unknown, so the first poll sees it as new: a reload, never a miss."""
    unseen = roots.project_dir / ".claude" / "agents" / "alpha.md"
    identity = registry.file_identity
    monkeypatch.setattr(registry, "file_identity",
                        lambda path: None if path == str(unseen) else identity(path))
    loaded = load_registry(roots)
    assert "alpha" in loaded.agents
    assert loaded.files == {state for state in signature(roots) if state[0] != str(unseen)}


@pytest.mark.anyio
async def test_a_change_between_the_load_and_the_watch_is_reloaded(roots):
    registry = load_registry(roots)
    changed = roots.project_dir / ".claude" / "agents" / "alpha.md"
    changed.write_text(AGENT.format(name="alpho"))  # the same size: only the time tells
    info = os.stat(changed)
    os.utime(changed, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    reloaded = anyio.Event()

    async def on_change() -> None:
        reloaded.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: watch(
                roots, on_change, poll_s=0.01, debounce_s=0.01, first=registry.files,
                task_status=task_status))
            await reloaded.wait()
            tg.cancel_scope.cancel()
