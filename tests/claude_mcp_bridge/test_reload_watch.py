"""The hot-reload watcher starts from the files as the catalog's load saw them
(``Registry.files``): the same states as its own polls, and a change made between the load
and the watcher's start is reloaded, not taken for the state the tools were built from. A
file changed moments ago is also known by its bytes, so a rewrite of the same size within
one tick of the file system's clock is seen too."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from agents_registry import Roots, load_registry, parse_cache, registry
from claude_mcp_bridge import reload
from claude_mcp_bridge.reload import from_load, same, signature, watch

AGENT = "---\nname: {name}\ndescription: Does {name} things.\n---\nBody of {name}.\n"
AN_HOUR_AGO_NS = (time.time() - 3600) * 1e9


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


@pytest.fixture
def stat_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No file counts as racy: states are their stat alone."""
    monkeypatch.setattr(reload, "RACY_S", 0.0)


@pytest.fixture
def racy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file written by the test counts as racy, however slow the machine."""
    monkeypatch.setattr(reload, "RACY_S", 3600.0)


def _files(roots: Roots) -> list[Path]:
    return [Path(path) for path in signature(roots)]


def _age(paths: list[Path]) -> None:
    for path in paths:
        os.utime(path, ns=(int(AN_HOUR_AGO_NS), int(AN_HOUR_AGO_NS)))


@pytest.mark.parametrize("cached", [False, True])
def test_the_load_records_each_file_as_a_poll_sees_it(roots, tmp_path, monkeypatch, stat_only,
                                                       cached):
    monkeypatch.setattr(parse_cache, "SETTLE_S", 0.0)
    cache = tmp_path / "data" / "definitions.cache" if cached else None
    first = load_registry(roots, cache=cache)
    again = load_registry(roots, cache=cache)  # from the cache, when there is one
    assert len(first.agents) + len(first.skills) == 4
    assert first.files == again.files
    assert from_load(first.files) == signature(roots)


def test_a_file_that_cannot_be_seen_before_its_read_is_left_out(roots, monkeypatch, stat_only):
    """Its state is unknown, so the first poll sees it as new: a reload, never a miss."""
    unseen = roots.project_dir / ".claude" / "agents" / "alpha.md"
    identity = registry.file_identity
    monkeypatch.setattr(registry, "file_identity",
                        lambda path: None if path == str(unseen) else identity(path))
    loaded = load_registry(roots)
    assert "alpha" in loaded.agents
    polled = signature(roots)
    del polled[str(unseen)]
    assert from_load(loaded.files) == polled


def test_a_same_size_rewrite_in_the_same_clock_tick_is_a_change(roots, racy):
    before = signature(roots)
    path = _files(roots)[0]
    info = os.stat(path)
    path.write_bytes(path.read_bytes().replace(b"Does", b"Did!"))  # the same size
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # and the same time
    after = signature(roots)
    assert after[str(path)][:3] == before[str(path)][:3]  # its stat cannot tell
    assert not same(before, after)


def test_once_a_file_is_older_its_stat_alone_is_compared(roots, monkeypatch, racy):
    racy = signature(roots)  # just written: each known by its bytes too
    assert all(state[3] for state in racy.values())
    monkeypatch.setattr(reload, "RACY_S", 0.0)
    settled = signature(roots)
    assert all(state[3] is None for state in settled.values())
    assert same(racy, settled) and same(settled, racy)  # no reload when a file ages


def test_a_file_the_load_saw_racy_is_reloaded_once(roots, racy):
    """The load did not hash it: the first poll that does reloads the catalog, then polls
    agree."""
    loaded = from_load(load_registry(roots).files)
    assert not same(loaded, signature(roots))
    assert same(signature(roots), signature(roots))


async def _reloaded(roots: Roots, change: Callable[[], None],
                    first: frozenset[tuple[str, int, int, int]] | None = None) -> None:
    """Start a watcher (from ``first``, or from its own first look), make ``change``, and
    return once the watcher reloads."""
    reloaded = anyio.Event()

    async def on_change() -> None:
        reloaded.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: watch(
                roots, on_change, poll_s=0.01, debounce_s=0.01, first=first,
                task_status=task_status))
            change()
            await reloaded.wait()
            tg.cancel_scope.cancel()


def _rewrite(path: Path, shift_ns: int) -> Callable[[], None]:
    """Rewrite ``path`` with other bytes of the same size, its time moved by ``shift_ns``."""
    def change() -> None:
        info = os.stat(path)
        path.write_bytes(path.read_bytes().replace(b"Does", b"Did!"))
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + shift_ns))
    return change


@pytest.mark.anyio
async def test_a_change_between_the_load_and_the_watch_is_reloaded(roots):
    _age(_files(roots))  # so that only the change can set off a reload
    loaded = load_registry(roots)
    _rewrite(roots.project_dir / ".claude" / "agents" / "alpha.md", 1_000_000_000)()
    await _reloaded(roots, lambda: None, first=loaded.files)


@pytest.mark.anyio
async def test_the_watch_sees_a_same_size_rewrite_in_the_same_clock_tick(roots, racy):
    await _reloaded(roots, _rewrite(roots.project_dir / ".claude" / "agents" / "beta.md", 0))


def test_the_config_file_is_watched_the_same_way(tmp_path, racy):
    config = tmp_path / "config.toml"
    config.write_text('[clients.ci]\ntoken_sha256 = "' + "a" * 64 + '"\n')
    before = reload.file_signature(config)
    info = os.stat(config)
    config.write_text('[clients.ci]\ntoken_sha256 = "' + "b" * 64 + '"\n')  # a revoked token
    os.utime(config, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert not same(before, reload.file_signature(config))
    assert reload.file_signature(tmp_path / "absent.toml") == {}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_where_the_config_file_is_does_not_hang_the_poll(tmp_path, racy):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)  # nobody writes to it: a blocking read would wait forever
    [state] = reload.file_signature(fifo).values()
    assert state[3] == reload.UNREAD
