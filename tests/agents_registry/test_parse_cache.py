"""Parsed definitions kept between loads (``parse_cache.py``): the same registry as a fresh
read, read again whenever a file may have changed, and never trusted when in doubt."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents_registry import Roots, load_registry, parse_cache, registry

ROOTS = ("home/.claude", "project")


def _roots(tmp_path: Path) -> Roots:
    return Roots(user_dir=tmp_path / ROOTS[0], project_dir=tmp_path / ROOTS[1])


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files parsed (read from disk), in order."""
    seen: list[str] = []
    parse = registry.parse_file

    def counted(path: Path, *args: object, **kwargs: object) -> object:
        seen.append(path.name)
        return parse(path, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(registry, "parse_file", counted)
    return seen


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once (instead of 2 s after their last change)."""
    monkeypatch.setattr(parse_cache, "SETTLE_S", 0.0)


def _agents(tmp_path: Path, write_agent, count: int = 3) -> list[Path]:
    return [write_agent(f"project/.claude/agents/a{i}.md", f"a{i}") for i in range(count)]


def test_an_unchanged_file_is_not_read_again_and_the_registry_is_the_same(
        tmp_path, write_agent, reads, settled):
    _agents(tmp_path, write_agent)
    cache = tmp_path / "data" / "definitions.cache"
    fresh = load_registry(_roots(tmp_path))
    first = load_registry(_roots(tmp_path), cache=cache)
    reads.clear()
    again = load_registry(_roots(tmp_path), cache=cache)
    assert reads == []
    assert again == first == fresh
    assert (cache.stat().st_mode & 0o777) == 0o600  # its owner's only


def test_a_changed_file_is_read_again(tmp_path, write_agent, reads, settled):
    paths = _agents(tmp_path, write_agent)
    cache = tmp_path / "definitions.cache"
    load_registry(_roots(tmp_path), cache=cache)
    write_agent("project/.claude/agents/a1.md", "a1", description="Now something else.")
    reads.clear()
    loaded = load_registry(_roots(tmp_path), cache=cache)
    assert reads == [paths[1].name]
    assert loaded.agents["a1"].description == "Now something else."


def test_a_file_changed_just_now_is_not_kept(tmp_path, write_agent, reads):
    _agents(tmp_path, write_agent, count=1)  # same-size rewrites in one clock tick look alike
    cache = tmp_path / "definitions.cache"
    load_registry(_roots(tmp_path), cache=cache)
    reads.clear()
    load_registry(_roots(tmp_path), cache=cache)
    assert reads == ["a0.md"]


def test_a_rejected_file_is_read_every_time(tmp_path, write, reads, settled):
    write("project/.claude/agents/broken.md", "no front matter here\n")
    cache = tmp_path / "definitions.cache"
    for _ in range(2):
        reads.clear()
        loaded = load_registry(_roots(tmp_path), cache=cache)
        assert reads == ["broken.md"] and loaded.diagnostics[0].severity == "error"


@pytest.mark.parametrize("content", [b"", b"not a pickle", b"\x80\x04K\x01."])
def test_a_damaged_or_foreign_cache_is_rebuilt(tmp_path, write_agent, reads, settled,
                                                content):
    _agents(tmp_path, write_agent)
    cache = tmp_path / "definitions.cache"
    cache.write_bytes(content)
    assert load_registry(_roots(tmp_path), cache=cache) == load_registry(_roots(tmp_path))
    reads.clear()
    load_registry(_roots(tmp_path), cache=cache)
    assert reads == []  # rebuilt by the load that found it damaged


def test_a_cache_that_cannot_be_written_costs_only_speed(tmp_path, write_agent, settled):
    _agents(tmp_path, write_agent)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the cache's folder would be
    loaded = load_registry(_roots(tmp_path), cache=blocked / "definitions.cache")
    assert sorted(loaded.agents) == ["a0", "a1", "a2"]


def test_a_cache_others_could_have_written_is_never_read(tmp_path, write_agent, reads, settled):
    _agents(tmp_path, write_agent)
    cache = tmp_path / "definitions.cache"
    load_registry(_roots(tmp_path), cache=cache)
    cache.chmod(0o664)  # a pickle runs code when loaded
    reads.clear()
    assert sorted(load_registry(_roots(tmp_path), cache=cache).agents) == ["a0", "a1", "a2"]
    assert len(reads) == 3
    assert (cache.stat().st_mode & 0o777) == 0o600  # rewritten, private again


def test_saved_paths_come_back_as_the_paths_looked_up_or_as_new_ones(
        tmp_path, write_agent, settled):
    """Paths are saved as text (rebuilding them part by part was most of a load's time)."""
    paths = _agents(tmp_path, write_agent)
    cache = tmp_path / "definitions.cache"
    load_registry(_roots(tmp_path), cache=cache)
    looked_up = Path(str(paths[0].absolute()))
    given = parse_cache.ParseCache.load(cache, paths=[looked_up])._old
    alone = parse_cache.ParseCache.load(cache)._old
    assert len(given) == len(alone) == 3
    by_name = {entry[1].name: entry[1].path for entry in given.values()}
    assert by_name["a0"] is looked_up
    assert {entry[1].path for entry in alone.values()} == {p.absolute() for p in paths}
    assert all(type(entry[1].path) is type(looked_up) for entry in alone.values())
