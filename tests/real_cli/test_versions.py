"""The tested CLI versions are named once in the package; CI installs the same ones."""

from __future__ import annotations

from claude_mcp_bridge.doctor import TESTED_CLI_VERSIONS
from tests.real_cli.support import REPO


def test_ci_installs_the_versions_the_package_says_are_tested():
    pinned = (REPO / ".ci" / "claude-cli-version").read_text().strip()
    latest = (REPO / ".ci" / "claude-cli-latest-version").read_text().strip()

    assert (pinned, latest) == TESTED_CLI_VERSIONS
