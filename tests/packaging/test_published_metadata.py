"""What we publish (server.json for the MCP Registry, the Claude Desktop bundle) agrees with the
package: valid against the registry's pinned schema, and one version everywhere."""

import hashlib
import importlib.util
import json
from pathlib import Path

import jsonschema

from claude_mcp_bridge import __version__

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / ".ci" / "server.schema.json"
# The schema as published at the URL in its $id; see .ci/PINNED.md. Changing the file is
# changing the pin: update both.
SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_pinned_schema_is_the_published_2025_12_11_file():
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert load(SCHEMA)["$id"].endswith("/2025-12-11/server.schema.json")


def test_server_json_is_valid_against_the_pinned_registry_schema():
    schema = load(SCHEMA)
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(load(REPO / "server.json"))]
    assert errors == []
    assert load(REPO / "server.json")["$schema"] == schema["$id"]


def test_package_server_json_and_bundle_manifest_carry_one_version():
    server = load(REPO / "server.json")
    manifest = load(REPO / "bundle" / "manifest.json")
    assert server["version"] == __version__
    assert [p["version"] for p in server["packages"]] == [__version__]
    assert manifest["version"] == __version__


def test_server_json_describes_every_environment_variable_the_bundle_sets():
    [package] = load(REPO / "server.json")["packages"]
    described = {variable["name"] for variable in package["environmentVariables"]}
    manifest_env = load(REPO / "bundle" / "manifest.json")["server"]["mcp_config"]["env"]
    assert set(manifest_env) <= described


def test_the_bundle_launcher_drops_optional_fields_the_user_left_empty():
    spec = importlib.util.spec_from_file_location("bundle_main", REPO / "bundle/server/main.py")
    assert spec and spec.loader
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    environ = {"ANTHROPIC_API_KEY": "", "CLAUDE_MCP_BRIDGE_CONFIG": "${user_config.config_file}",
               "CLAUDE_MCP_BRIDGE_CLAUDE_BIN": "/opt/claude", "PATH": ""}
    launcher.drop_unset(environ)
    assert environ == {"CLAUDE_MCP_BRIDGE_CLAUDE_BIN": "/opt/claude", "PATH": ""}


def test_the_readme_names_the_registry_entry_for_pypi_ownership():
    # The registry accepts a PyPI package for a name only if its description (our README)
    # says "mcp-name: <name>".
    name = load(REPO / "server.json")["name"]
    assert f"mcp-name: {name}" in (REPO / "README.md").read_text(encoding="utf-8")
