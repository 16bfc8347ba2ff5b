"""`claude-mcp-bridge doctor`: one line per check, with what to do when one fails."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agents_registry import load_registry

from . import platform, sandbox
from .errors import LedgerError
from .hygiene import description_warnings
from .ledger import Ledger
from .ledger_schema import LEDGER_ERRORS
from .settings import CLAUDE_BIN_VAR, Settings

# Every flag the bridge puts on a command line (--max-turns works but is not in --help).
USED_FLAGS = (
    "--print", "--output-format", "--verbose", "--agents", "--agent", "--model",
    "--max-budget-usd", "--allowedTools", "--disallowedTools", "--mcp-config",
    "--strict-mcp-config", "--permission-mode", "--append-system-prompt", "--add-dir", "--resume",
    "--tools", "--json-schema",
)
Status = Literal["ok", "warn", "fail"]
TESTED_CLI_VERSIONS = ("2.1.197", "2.1.332")
"""The Claude Code releases the test suite runs against: the pinned one, then the latest.
``.ci/claude-cli-version`` and ``.ci/claude-cli-latest-version`` install these (a test checks
that they agree)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def __str__(self) -> str:
        return f"[{self.status:^4}] {self.name}: {self.detail}"


def run_checks(settings: Settings) -> list[Check]:
    checks = [*_claude_checks(settings), _definitions_check(settings), _ledger_check(settings)]
    checks.append(_config_check(settings))
    checks += platform_checks(platform.KIND, settings.claude.path, sys.executable)
    checks.append(_sandbox_check(settings))
    if settings.depth >= settings.config.limits.max_depth:
        checks.append(Check("depth", "warn", f"this bridge runs at depth {settings.depth}, at or "
                                             "beyond max_depth: it will refuse every call"))
    return checks


def _claude_checks(settings: Settings) -> list[Check]:
    path = settings.claude.path
    if path is None:
        return [Check("claude", "fail", settings.claude.missing_message())]
    found = Check("claude", "ok", f"{path} (from {settings.claude.searched})")
    version = _run([str(path), "--version"])
    if version is None or version.returncode != 0:
        return [found, Check("claude version", "fail",
                             f"`{path} --version` failed; reinstall Claude Code or set "
                             f"{CLAUDE_BIN_VAR} to a working binary")]
    help_text = _run([str(path), "--help"])
    return [found, _version_check(version.stdout.strip()),
            _flags_check(help_text.stdout if help_text else "", settings)]


def _version_check(reported: str) -> Check:
    tested = ", ".join(TESTED_CLI_VERSIONS)
    if reported.split(" ")[0] in TESTED_CLI_VERSIONS:
        return Check("claude version", "ok", f"{reported} (a tested version)")
    return Check("claude version", "warn",
                 f"{reported} is not a version this bridge was tested with ({tested}); it "
                 "usually works, and `claude-mcp-bridge doctor` checks the flags below")


def _flags_check(help_text: str, settings: Settings) -> Check:
    missing = [flag for flag in USED_FLAGS if not re.search(rf"{re.escape(flag)}\b", help_text)]
    if missing:
        return Check("claude flags", "fail", f"this claude lacks {', '.join(missing)}; "
                                             "update Claude Code (`claude update`)")
    mode = settings.config.permissions.mode
    if mode and f'"{mode}"' not in help_text:
        return Check("claude flags", "fail",
                     f"permission mode {mode!r} is not offered by this claude "
                     "(see `claude --help`); change [permissions] mode")
    return Check("claude flags", "ok", f"all {len(USED_FLAGS)} flags the bridge uses are accepted")


def _definitions_check(settings: Settings) -> Check:
    registry = load_registry(settings.roots)
    rejected = [d for d in registry.diagnostics if d.severity == "error"]
    unclear = description_warnings(registry.definitions())
    summary = f"{len(registry.agents)} agents, {len(registry.skills)} skills"
    if not rejected and not unclear:
        return Check("definitions", "ok", summary)
    problems = [f"{len(rejected)} rejected: " + "; ".join(str(d) for d in rejected)] \
        if rejected else []
    if unclear:
        problems.append(f"{len(unclear)} description warnings: "
                        + "; ".join(str(w) for w in unclear))
    return Check("definitions", "warn", f"{summary}; " + "; ".join(problems))


def _ledger_check(settings: Settings) -> Check:
    try:
        ledger = Ledger.open(settings.ledger_target, lease_s=settings.config.ledger.lease_s)
    except LedgerError as exc:  # it names the file, the cause and what to do
        return Check("ledger", "fail", str(exc))
    except Exception as exc:  # any failure to open is the answer this check gives
        return Check("ledger", "fail", f"{settings.ledger_path}: {exc}; check the path and its "
                                       "permissions, or set CLAUDE_MCP_BRIDGE_DATA_DIR")
    try:
        if ledger.problem:
            return Check("ledger", "fail", ledger.problem)
        verdict = ledger.integrity()
    except LEDGER_ERRORS as exc:  # a database that went away since it was opened
        return Check("ledger", "fail", str(ledger.explain(exc)))
    finally:
        ledger.close()
    if verdict != "ok":
        return Check("ledger", "fail", f"{settings.ledger_path} is damaged (integrity: "
                                       f"{verdict[:300]}); move it aside or recover it with "
                                       f"sqlite3 {settings.ledger_path} .recover")
    return Check("ledger", "ok", f"{ledger.where} (integrity: ok)")


def _sandbox_check(settings: Settings) -> Check:
    """The CLI's sandbox: a fail only when the config asks for it and it cannot run here."""
    config = settings.config
    wanted = [f"[{table}.{name}.permissions] sandbox"
              for table, tools in (("agents", config.agents), ("skills", config.skills))
              for name, tool in tools.items() if tool.permissions.sandbox]
    if config.permissions.sandbox.enabled:
        wanted.insert(0, "[permissions.sandbox] enabled")
    unable = sandbox.problem()
    if not wanted:
        return Check("sandbox", "ok", "off" + (f" (and could not run here: {unable})"
                                                if unable else " (bwrap can run here)"))
    if unable is not None:
        return Check("sandbox", "fail", f"asked for by {', '.join(wanted)}, and it cannot run "
                                        f"here: {unable}; those calls are refused")
    return Check("sandbox", "ok", f"on ({', '.join(wanted)}); bwrap can run here")


def _config_check(settings: Settings) -> Check:
    limits = settings.config.limits
    budget = settings.config.budget
    caps = ", ".join(f"{k} ${v:g}" for k, v in budget.model_dump().items() if v is not None)
    source = settings.config_file or "no config file, defaults"
    return Check("config", "ok",
                 f"{source}: valid; max_concurrency {limits.max_concurrency}, "
                 f"max_queue {limits.max_queue}, timeout {limits.timeout_s:g}s, "
                 f"budget: {caps or 'no caps'}")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


_TREES = {
    "posix": "each call in its own process group; its tree ends with it, and with the "
             "bridge through the watchdog",
    "windows": "each call in a Job Object that ends its tree with the call and when the "
               "bridge exits, and a watchdog",
    "portable": "CLAUDE_MCP_BRIDGE_PLATFORM=portable: the Windows code paths without Job "
                "Objects or process groups, meant for tests; unset it",
}
NATIVE_INSTALL = ("install the native build (PowerShell: `irm https://claude.ai/install.ps1 | "
                  "iex`, which puts claude.exe in %USERPROFILE%\\.local\\bin)")


def platform_checks(kind: platform.Kind, claude: Path | None, python: str) -> list[Check]:
    """What this system needs that others do not, with its usual fixes."""
    checks = [Check("platform", "warn" if kind == "portable" else "ok",
                    f"{kind} ({sys.platform}): {_TREES[kind]}")]
    if kind != "windows":
        return checks
    if claude is None:
        checks.append(Check("claude on Windows", "fail",
                            f"{NATIVE_INSTALL}, or add npm's folder %APPDATA%\\npm (claude.cmd) "
                            "to PATH in Settings > System > About > Advanced system settings > "
                            f"Environment Variables, or set {CLAUDE_BIN_VAR} to the full path "
                            "(`where.exe claude` shows it); restart Claude Desktop afterwards"))
    elif claude.suffix.lower() in (".cmd", ".bat"):
        checks.append(Check("claude on Windows", "warn",
                            f"{claude} is npm's batch shim: its arguments pass through cmd.exe, "
                            "which mangles quotes, % and ^ in prompts and agent definitions; "
                            f"{NATIVE_INSTALL} and point {CLAUDE_BIN_VAR} at claude.exe"))
    if platform.is_app_alias(python):
        checks.append(Check("python on Windows", "warn",
                            f"{python} is a Microsoft Store app alias (WindowsApps), which a "
                            "client may not be able to start: install Python from python.org "
                            "or use `uvx claude-mcp-bridge`, and turn the alias off in Settings "
                            "> Apps > Advanced app settings > App execution aliases"))
    return checks
