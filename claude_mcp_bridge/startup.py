"""Flags, environment and the config file -> one ``Settings``, built once per command.

Nothing else reads the environment: the settings carry what the bridge needs of it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .settings import Settings

logger = logging.getLogger("claude_mcp_bridge")


def build_settings(
    args: argparse.Namespace, environ: Mapping[str, str], *, defaults: bool = False
) -> Settings:
    """Settings from flags, environment and the config file (``defaults``: ignore the file)."""
    from agents_registry import Roots, user_config_dir

    from .config import config_path, load_config
    from .forwarding import forwarded_mcp
    from .settings import Settings, find_claude, read_depth

    config_file = None if defaults else config_path(args.config, environ, default_config_file())
    config = load_config(config_file)
    if args.timeout is not None:
        limits = config.limits.model_copy(update={"timeout_s": args.timeout})
        config = config.model_copy(update={"limits": limits})
    project_dir = Path(args.project_dir).expanduser().resolve()
    if not project_dir.is_dir():
        raise ConfigError(f"--project-dir {args.project_dir!r} is not a directory")
    extra = [*args.extra_root, *config.discovery.extra_roots]
    roots = Roots(
        user_dir=user_config_dir(environ),
        project_dir=project_dir,
        extra_dirs=tuple(Path(d).expanduser().resolve() for d in extra),
    )
    mcp = forwarded_mcp([*(Path(p) for p in args.mcp_config), *config.mcp.configs],
                        project_dir, args.strict_mcp_config or config.mcp.strict)
    if mcp.removed:
        logger.info(
            "an .mcp.json above %s registers this bridge (%s): children get its other "
            "servers forwarded and run with --strict-mcp-config", project_dir,
            ", ".join(mcp.removed))
    return Settings(
        roots=roots,
        claude=find_claude(environ),
        config=config,
        config_file=config_file,
        ledger_path=config.ledger.path or _data_dir(environ) / "ledger.sqlite3",
        definitions_cache=_data_dir(environ) / "definitions.cache",
        mcp_configs=mcp.configs,
        strict_mcp_config=mcp.strict,
        depth=read_depth(environ),
        base_env=MappingProxyType(dict(environ)),
    )


def default_config_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("claude-mcp-bridge")) / "config.toml"


def _data_dir(environ: Mapping[str, str]) -> Path:
    import platformdirs

    from .settings import DATA_DIR_VAR

    override = environ.get(DATA_DIR_VAR, "").strip()
    return Path(override).expanduser() if override else Path(
        platformdirs.user_data_dir("claude-mcp-bridge"))
