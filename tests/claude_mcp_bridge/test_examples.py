"""The shipped example config loads, and the README documents every config key."""

from pathlib import Path

from pydantic import BaseModel

from claude_mcp_bridge.config import ClientConfig, Config, ToolConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(section, key) for every leaf setting of the config."""
    found = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found += keys(kind, f"{prefix}.{name}" if prefix else name)
        elif prefix:
            found.append((prefix, name))
    return found


def test_the_example_config_is_valid_and_sets_every_section():
    config = load_config(REPO / "examples" / "config.toml")
    text = (REPO / "examples" / "config.toml").read_text()
    for section in {section for section, _ in keys(Config)}:
        assert f"[{section}]" in text, section
    assert config.agents["code-reviewer"].budget.per_call_usd == 0.5


def test_the_readme_documents_every_config_key():
    readme = (REPO / "README.md").read_text()
    missing = [f"[{section}] {key}" for section, key in keys(Config)
               if f"[{section}] {key}" not in readme and f"`{key}`" not in readme]
    assert missing == []
    for key in ToolConfig.model_fields:
        assert f"`{key}`" in readme, key
    for key in [*ClientConfig.model_fields, *keys(ClientConfig)]:
        name = key if isinstance(key, str) else key[1]
        assert f"`{name}`" in readme, key
