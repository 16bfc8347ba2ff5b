import json

import pytest

from claude_mcp_bridge.errors import ConfigError
from claude_mcp_bridge.forwarding import call_flags, chain_for, forwarded_mcp, is_bridge_entry


def write(path, servers):
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def test_explicit_files_are_forwarded_as_absolute_paths(tmp_path):
    config = write(tmp_path / "a.json", {"calendar": {"command": "cal"}})
    forwarded = forwarded_mcp([config], tmp_path / "nowhere", strict=False)
    assert forwarded.configs == (str(config),)
    assert forwarded.strict is False


def test_a_child_gets_the_chain_of_mcp_json_without_the_bridge_and_in_strict_mode(tmp_path):
    project = tmp_path / "home" / "project"
    (project / "src").mkdir(parents=True)
    write(tmp_path / ".mcp.json", {"calendar": {"command": "far-cal"}, "notes": {"command": "n"}})
    write(tmp_path / "home" / ".mcp.json", {
        "agents": {"command": "uvx", "args": ["claude-mcp-bridge", "serve"]}})
    write(project / ".mcp.json", {
        "calendar": {"command": "cal"},
        "agents2": {"command": "python", "args": ["-m", "claude_mcp_bridge", "serve"]}})
    flags = call_flags(("/explicit.json",), False, project / "src", project)
    assert flags[:2] == ["--mcp-config", "/explicit.json"]
    assert json.loads(flags[2]) == {"mcpServers": {"calendar": {"command": "cal"},
                                                   "notes": {"command": "n"}}}
    assert flags[3:] == ["--strict-mcp-config"]
    assert sorted(r.split()[0] for r in chain_for(project).removed) == ["agents", "agents2"]


def test_without_the_bridge_in_the_chain_the_cli_loads_the_files_itself(tmp_path):
    write(tmp_path / ".mcp.json", {"calendar": {"command": "cal"}})
    assert call_flags((), False, tmp_path, tmp_path) == []
    assert forwarded_mcp([], tmp_path, strict=False).strict is False


def test_strict_by_request_forwards_the_explicit_files_and_the_project_file_only(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write(tmp_path / ".mcp.json", {"far": {"command": "far"}})
    write(project / ".mcp.json", {"agents": {"command": "claude-mcp-bridge"},
                                  "x": {"command": "x"}})
    flags = call_flags(("/a.json",), True, project, project)
    assert flags[:2] == ["--mcp-config", "/a.json"]
    assert json.loads(flags[2]) == {"mcpServers": {"x": {"command": "x"}}}
    assert flags[3:] == ["--strict-mcp-config"]


def test_a_broken_mcp_json_in_the_chain_is_skipped(tmp_path):
    (tmp_path / ".mcp.json").write_text("{nope")
    assert chain_for(tmp_path).servers == {}


@pytest.mark.parametrize(("content", "reason"), [
    (None, "not found"), ("{nope", "not valid JSON"), ('{"servers": {}}', "mcpServers")])
def test_a_bad_explicit_file_stops_with_its_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=reason) as caught:
        forwarded_mcp([path], tmp_path, strict=False)
    assert str(path) in str(caught.value)


def test_bridge_entries_are_recognised_by_any_launcher():
    assert is_bridge_entry({"command": "/opt/bin/claude-mcp-bridge"})
    assert not is_bridge_entry({"command": "node", "args": ["calendar.js"]})
    assert not is_bridge_entry("not a mapping")


def test_allowed_servers_cut_every_forwarded_source_down_and_force_strict(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write(project / ".mcp.json", {"chain_ok": {"command": "a"}, "chain_no": {"command": "b"}})
    explicit = tmp_path / "explicit.json"
    write(explicit, {"file_ok": {"command": "c"}, "file_no": {"command": "d"}})
    inline = json.dumps({"mcpServers": {"inline_ok": {"command": "e"}}})
    flags = call_flags((str(explicit), inline), False, project, project,
                       allowed=frozenset({"chain_ok", "file_ok", "inline_ok"}))
    assert flags[0] == "--mcp-config" and flags[2:] == ["--strict-mcp-config"]
    assert json.loads(flags[1]) == {"mcpServers": {"chain_ok": {"command": "a"},
                                                   "file_ok": {"command": "c"},
                                                   "inline_ok": {"command": "e"}}}


def test_allowed_servers_that_match_nothing_leave_the_child_with_no_servers(tmp_path):
    write(tmp_path / ".mcp.json", {"x": {"command": "x"}})
    assert call_flags((), False, tmp_path, tmp_path, allowed=frozenset()) == [
        "--strict-mcp-config"]
