import json

import pytest

from claude_mcp_bridge.errors import ConfigError
from claude_mcp_bridge.mcp_config import forwarded_mcp, is_bridge_entry


def write(path, servers):
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def test_explicit_files_are_forwarded_as_absolute_paths(tmp_path):
    config = write(tmp_path / "a.json", {"calendar": {"command": "cal"}})
    forwarded = forwarded_mcp([config], tmp_path / "nowhere", strict=False)
    assert forwarded.configs == (str(config),)
    assert forwarded.strict is False


def test_a_project_mcp_json_is_forwarded_without_the_bridge_itself(tmp_path):
    write(tmp_path / ".mcp.json", {
        "calendar": {"command": "cal"},
        "agents": {"command": "uvx", "args": ["claude-mcp-bridge", "serve"]},
        "agents2": {"command": "python", "args": ["-m", "claude_mcp_bridge", "serve"]},
    })
    forwarded = forwarded_mcp([], tmp_path, strict=False)
    [inline] = forwarded.configs
    assert json.loads(inline) == {"mcpServers": {"calendar": {"command": "cal"}}}
    assert forwarded.removed == ("agents", "agents2")
    assert forwarded.strict is True, "the child must not load the unfiltered project file"


def test_a_project_mcp_json_without_the_bridge_keeps_strict_off(tmp_path):
    write(tmp_path / ".mcp.json", {"calendar": {"command": "cal"}})
    assert forwarded_mcp([], tmp_path, strict=False).strict is False


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
