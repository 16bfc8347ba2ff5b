"""One version, written once in ``claude_mcp_bridge/__init__.py``, is the one every door shows."""

import pytest

from claude_mcp_bridge import __version__
from claude_mcp_bridge.cli import main


def test_version_flag_prints_the_package_version_and_exits_zero(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"claude-mcp-bridge {__version__}\n"
