"""The TOML config file: validated once, errors name the file, the key and the reason."""

from pathlib import Path

import pytest

from claude_mcp_bridge.config import CONFIG_VAR, Config, config_path, load_config
from claude_mcp_bridge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path
    return caught.value


def test_no_file_means_safe_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert (config.limits.max_concurrency, config.limits.max_queue) == (4, 16)
    assert config.limits.max_depth == 3
    assert config.budget.per_call_usd is None and config.budget.daily_usd is None
    assert config.permissions.mode is None
    assert config.permissions.allow_bypass_permissions is False
    assert config.ledger.store_prompts is False
    assert config.agents == {} and config.skills == {}


def test_a_full_file_is_read_into_every_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[budget]
per_call_usd = 0.5
daily_usd = 5
monthly_usd = 50

[limits]
max_concurrency = 2
max_queue = 3
timeout_s = 60
max_turns = 10

[permissions]
mode = "acceptEdits"
allowed_tools = ["Read", "Bash(git *)"]
disallowed_tools = ["WebFetch"]
allowed_cwd_roots = ["/srv/repos"]
allow_model_override = false

[ledger]
store_prompts = true
"""))
    assert (config.budget.per_call_usd, config.budget.daily_usd,
            config.budget.monthly_usd) == (0.5, 5.0, 50.0)
    assert (config.limits.max_concurrency, config.limits.max_queue) == (2, 3)
    assert (config.limits.timeout_s, config.limits.max_turns) == (60.0, 10)
    assert config.permissions.mode == "acceptEdits"
    assert config.permissions.allowed_tools == ["Read", "Bash(git *)"]
    assert config.permissions.disallowed_tools == ["WebFetch"]
    assert config.permissions.allowed_cwd_roots == [Path("/srv/repos")]
    assert config.permissions.allow_model_override is False
    assert config.ledger.store_prompts is True


def test_an_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[limits]\nmax_concurency = 2\n")
    assert error.key == "limits.max_concurency"
    assert str(error).startswith(f"{tmp_path / 'config.toml'}: limits.max_concurency: ")
    assert "Extra inputs are not permitted" in str(error)


def test_an_unknown_section_is_refused(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[budgets]\ndaily_usd = 5\n")
    assert error.key == "budgets"


def test_an_unknown_key_in_a_tool_table_names_the_tool(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[agents.reviewer.limits]\ntimeout = 5\n")
    assert error.key == "agents.reviewer.limits.timeout"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[limits]\nmax_concurrency = "four"\n', "limits.max_concurrency",
         "Input should be a valid integer"),
        ("[limits]\nmax_concurrency = 0\n", "limits.max_concurrency",
         "Input should be greater than or equal to 1"),
        ("[budget]\ndaily_usd = -1\n", "budget.daily_usd", "Input should be greater than 0"),
        ('[permissions]\nmode = "yolo"\n', "permissions.mode", "Input should be 'acceptEdits'"),
        ('[permissions]\nallowed_tools = "Read"\n', "permissions.allowed_tools",
         "Input should be a valid list"),
        ("[skills.changelog]\nenabled = 3\n", "skills.changelog.enabled",
         "Input should be a valid boolean"),
    ],
)
def test_a_wrong_type_names_the_file_the_key_and_the_reason(tmp_path: Path, text: str, key: str,
                                                           reason: str) -> None:
    error = config_error(tmp_path, text)
    assert error.key == key
    assert f"config.toml: {key}: {reason}" in str(error)


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[limits]\nmax_queue = -1\nmax_turns = 0\n")
    assert error.key == "limits.max_queue"
    assert "(and 1 more)" in str(error)


def test_bad_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[limits]\nmax_queue = \n")
    assert "not valid TOML" in str(error)
    assert "line 2" in str(error)


def test_a_missing_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="config file not found") as caught:
        load_config(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("table", "key"),
    [("permissions", "permissions.mode"),
     ("agents.reviewer.permissions", "agents.reviewer.permissions.mode"),
     ("skills.changelog.permissions", "skills.changelog.permissions.mode")],
)
def test_bypass_permissions_needs_explicit_consent(tmp_path: Path, table: str, key: str) -> None:
    error = config_error(tmp_path, f'[{table}]\nmode = "bypassPermissions"\n')
    assert error.key == key
    assert str(error) == (f"{tmp_path / 'config.toml'}: {key}: permission mode bypassPermissions "
                          "needs [permissions] allow_bypass_permissions = true")


@pytest.mark.parametrize(("text", "key", "listed"), [
    ('[permissions]\nmode = "auto"\nallowed_modes = ["plan"]\n', "permissions.mode",
     "permissions.allowed_modes"),
    ('[agents.reviewer.permissions]\nmode = "auto"\nallowed_modes = ["plan"]\n',
     "agents.reviewer.permissions.mode", "agents.reviewer.permissions.allowed_modes"),
])
def test_a_configured_mode_must_be_in_the_allowed_modes(
        tmp_path: Path, text: str, key: str, listed: str) -> None:
    error = config_error(tmp_path, text)
    assert str(error) == (f"{tmp_path / 'config.toml'}: {key}: permission mode auto is not in "
                          f"{listed}")


def test_bypass_permissions_is_accepted_with_consent(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[permissions]
allow_bypass_permissions = true
[agents.reviewer.permissions]
mode = "bypassPermissions"
"""))
    assert config.tool("agent", "reviewer").permissions.mode == "bypassPermissions"


def test_per_tool_overrides_apply_to_that_tool_only(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[limits]
timeout_s = 600
[agents.reviewer]
tags = ["review"]
[agents.reviewer.budget]
daily_usd = 1.5
[agents.reviewer.limits]
timeout_s = 30
max_concurrency = 1
[agents.reviewer.permissions]
allowed_tools = ["Read"]
[skills.reviewer]
enabled = false
"""))
    agent = config.tool("agent", "reviewer")
    assert agent.enabled and agent.tags == ["review"]
    assert agent.budget.daily_usd == 1.5
    assert (agent.limits.timeout_s, agent.limits.max_concurrency) == (30.0, 1)
    assert agent.permissions.allowed_tools == ["Read"]
    assert config.tool("skill", "reviewer").enabled is False  # kinds do not share tables
    other = config.tool("agent", "writer")
    assert other.enabled and other.limits.timeout_s is None and other.budget.daily_usd is None
    assert config.limits.timeout_s == 600.0


def test_the_flag_wins_over_the_env_var_and_the_default_file(tmp_path: Path) -> None:
    default = write(tmp_path, "")
    environ = {CONFIG_VAR: str(tmp_path / "env.toml")}
    assert config_path(str(tmp_path / "flag.toml"), environ, default) == tmp_path / "flag.toml"


def test_the_env_var_wins_over_the_default_file(tmp_path: Path) -> None:
    default = write(tmp_path, "")
    environ = {CONFIG_VAR: str(tmp_path / "env.toml")}
    assert config_path(None, environ, default) == tmp_path / "env.toml"


def test_the_default_file_is_used_only_when_it_exists(tmp_path: Path) -> None:
    default = tmp_path / "config.toml"
    assert config_path(None, {}, default) is None
    assert config_path(None, {CONFIG_VAR: ""}, default) is None
    default.write_text("")
    assert config_path(None, {}, default) == default


def test_a_config_path_may_start_with_a_tilde(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path("~/c.toml", {}, tmp_path / "x") == tmp_path / "c.toml"
    assert config_path(None, {CONFIG_VAR: "~/e.toml"}, tmp_path / "x") == tmp_path / "e.toml"
