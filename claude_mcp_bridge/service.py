"""``service install|status|uninstall``: ``serve --transport http`` under the platform's
supervisor, so the bridge starts at login and comes back after a crash.

    Linux   a systemd user unit    ~/.config/systemd/user/claude-mcp-bridge.service
    macOS   a launchd agent        ~/Library/LaunchAgents/io.github.claude-mcp-bridge.plist

Both restart the bridge only when it fails (a clean exit after SIGTERM, which drains,
stays stopped), at most every few seconds, and keep its logs where the platform keeps
logs: journald (``journalctl --user -u claude-mcp-bridge``), or
``~/Library/Logs/claude-mcp-bridge/bridge.log``. systemd's start-up waits for ``/ready``
(``ExecStartPost`` runs ``service wait-ready``, bounded), so ``systemctl --user start``
returns once the bridge answers; launchd has no such hook, so ``install --start`` waits
itself. Nothing here runs ``systemctl`` or ``launchctl`` unless asked to start, stop or
report.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .settings import Settings

Platform = Literal["linux", "darwin"]
UNIT = "claude-mcp-bridge.service"
LABEL = "io.github.claude-mcp-bridge"
RESTART_S = 5
"""Wait before a restart after a crash; a bridge failing 5 times in 2 minutes stays down."""
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 45
"""Above the default ``drain_timeout_s`` (30 s) and the children's kill grace."""


@dataclass(frozen=True)
class Service:
    """What the supervisor runs, and where its files go."""

    platform: Platform
    home: Path
    serve: tuple[str, ...]
    """The whole ``serve --transport http`` command line."""
    wait_ready: tuple[str, ...]
    """The command that returns once ``/ready`` answers (or fails after a bound)."""
    env: Mapping[str, str]

    @property
    def path(self) -> Path:
        if self.platform == "linux":
            return self.home / ".config" / "systemd" / "user" / UNIT
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def log_file(self) -> Path:
        return self.home / "Library" / "Logs" / "claude-mcp-bridge" / "bridge.log"


def current_platform() -> Platform | None:
    return "linux" if sys.platform.startswith("linux") else (
        "darwin" if sys.platform == "darwin" else None)


def systemd_unit(service: Service) -> str:
    env = "".join(f"Environment={_systemd_quote(f'{k}={v}')}\n"
                  for k, v in sorted(service.env.items()))
    return f"""[Unit]
Description=claude-mcp-bridge: Claude Code agents and skills as MCP tools over HTTP
After=network.target
StartLimitIntervalSec=120
StartLimitBurst=5

[Service]
Type=exec
ExecStart={_systemd_command(service.serve)}
ExecStartPost={_systemd_command(service.wait_ready)}
{env}# CLAUDE_MCP_BRIDGE_TOKEN=... belongs in service.env (mode 600), never in this unit.
EnvironmentFile=-%h/.config/claude-mcp-bridge/service.env
Restart=on-failure
RestartSec={RESTART_S}
TimeoutStartSec={READY_TIMEOUT_S + 15}
TimeoutStopSec={STOP_TIMEOUT_S}
# SIGTERM to the bridge only: it drains and ends its agents' process trees itself.
KillMode=mixed

[Install]
WantedBy=default.target
"""


def _systemd_command(argv: Sequence[str]) -> str:
    return " ".join(_systemd_quote(arg) for arg in argv)


def _systemd_quote(arg: str) -> str:
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in ' \t"\'\\;'):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launchd_plist(service: Service) -> bytes:
    return plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": list(service.serve),
        "EnvironmentVariables": dict(service.env),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not a clean stop
        "ThrottleInterval": RESTART_S * 2,
        "ExitTimeOut": STOP_TIMEOUT_S,
        "ProcessType": "Background",
        "StandardOutPath": str(service.log_file),
        "StandardErrorPath": str(service.log_file),
    })


def install(service: Service, *, start: bool) -> list[str]:
    """Write the unit or agent; start it when asked. Returns what to tell the user."""
    service.path.parent.mkdir(parents=True, exist_ok=True)
    if service.platform == "linux":
        service.path.write_text(systemd_unit(service), encoding="utf-8")
        commands = [["systemctl", "--user", "daemon-reload"],
                    ["systemctl", "--user", "enable", "--now", UNIT]]
    else:
        service.log_file.parent.mkdir(parents=True, exist_ok=True)
        service.path.write_bytes(launchd_plist(service))
        commands = [["launchctl", "bootstrap", f"gui/{os.getuid()}", str(service.path)]]
    told = [f"wrote {service.path}"]
    if not start:
        return [*told, "start it with: " + " && ".join(shlex.join(c) for c in commands)]
    for command in commands:
        subprocess.run(command, check=True)
    if service.platform == "darwin" and subprocess.run(service.wait_ready).returncode != 0:
        raise RuntimeError(f"the bridge did not get ready; see {service.log_file}")
    return [*told, "started; it answers /ready"]


def status(service: Service) -> int:
    if not service.path.exists():
        print(f"not installed ({service.path} does not exist)")
        return 3
    if service.platform == "linux":
        command = ["systemctl", "--user", "status", "--no-pager", UNIT]
    else:
        command = ["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"]
    print(f"installed: {service.path}", flush=True)
    return subprocess.run(command).returncode


def uninstall(service: Service) -> list[str]:
    if service.platform == "linux":
        stop = [["systemctl", "--user", "disable", "--now", UNIT]]
        after = [["systemctl", "--user", "daemon-reload"]]
    else:
        stop = [["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"]]
        after = []
    if not service.path.exists():
        return [f"not installed ({service.path} does not exist)"]
    for command in stop:
        subprocess.run(command, check=False)  # it may not be loaded; removing still is right
    service.path.unlink()
    for command in after:
        subprocess.run(command, check=False)
    return [f"stopped and removed {service.path}"]


def wait_ready(url: str, token: str | None, timeout_s: float) -> tuple[bool, str]:
    """Poll ``url``/ready until it answers 200 (or 401: up, but the token to read it is
    not known here), or ``timeout_s`` passes."""
    request = urllib.request.Request(url.rstrip("/") + "/ready")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                return True, f"ready ({answer.status})"
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return True, "up (401: /ready needs a token this probe does not have)"
            last = f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}"
        except (OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.25)
    return False, f"{url}/ready did not answer 200 within {timeout_s:g}s; last: {last}"


# -- the command ----------------------------------------------------------------------------


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    service = sub.add_parser(
        "service", help="run the HTTP server under systemd (Linux) or launchd (macOS)",
        description="Install, inspect or remove a user service that runs `serve --transport "
                    "http`, restarted when it crashes.")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    install_ = actions.add_parser(
        "install", parents=[common], help="write the unit (Linux) or agent (macOS)",
        description="Write the service for `serve --transport http` with these options; "
                    "--start also starts it and waits for /ready.")
    install_.add_argument("--start", action="store_true", help="start it now (and at login)")
    install_.add_argument("--host", help="address to bind (default [http] host)")
    install_.add_argument("--port", type=int, help="port (default [http] port; not 0)")
    for name, text in (("status", "is it installed and running?"),
                       ("uninstall", "stop it and remove its file")):
        actions.add_parser(name, parents=[common], help=text, description=text)
    wait = actions.add_parser(
        "wait-ready", parents=[common], help="wait until a bridge answers /ready",
        description="Exit 0 once URL/ready answers 200 (or 401), 1 after --wait seconds.")
    wait.add_argument("--url", required=True, help="the bridge, e.g. http://127.0.0.1:8765")
    wait.add_argument("--wait", type=float, default=READY_TIMEOUT_S, metavar="SECONDS")
    for parser in actions.choices.values():
        parser.add_argument("--platform", choices=["linux", "darwin"], help=argparse.SUPPRESS)


def run(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    token = environ.get("CLAUDE_MCP_BRIDGE_TOKEN", "").strip() or settings.config.http.token
    if args.action == "wait-ready":
        ok, message = wait_ready(args.url, token, args.wait)
        print(message, file=sys.stderr if not ok else sys.stdout)
        return 0 if ok else 1
    platform = args.platform or current_platform()
    if platform is None:
        print(f"claude-mcp-bridge: no service manager for {sys.platform}; run `serve "
              "--transport http` under your own supervisor", file=sys.stderr)
        return 2
    service = _service(args, settings, environ, platform)
    if isinstance(service, str):
        print(f"claude-mcp-bridge: {service}", file=sys.stderr)
        return 2
    if args.action == "status":
        return status(service)
    told = install(service, start=args.start) if args.action == "install" else uninstall(
        service)
    print("\n".join(told))
    return 0


def _service(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str],
             platform: Platform) -> Service | str:
    http = settings.config.http
    host, port = getattr(args, "host", None) or http.host, getattr(args, "port", None)
    port = http.port if port is None else port
    if port == 0:
        return "a service needs a fixed port (its start-up waits for /ready on it)"
    common = ["--project-dir", str(settings.project_dir)]
    if settings.config_file is not None:
        common += ["--config", str(settings.config_file.resolve())]
    for root in args.extra_root:
        common += ["--extra-root", str(Path(root).expanduser().resolve())]
    for config in args.mcp_config:
        common += ["--mcp-config", str(Path(config).expanduser().resolve())]
    if args.strict_mcp_config:
        common.append("--strict-mcp-config")
    me = (sys.executable, "-m", "claude_mcp_bridge")
    probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    probe = f"[{probe}]" if ":" in probe else probe
    env = {"PATH": environ.get("PATH", "/usr/bin:/bin")}
    if settings.claude.path is not None:
        env["CLAUDE_MCP_BRIDGE_CLAUDE_BIN"] = str(settings.claude.path)
    for name in ("CLAUDE_MCP_BRIDGE_DATA_DIR", "CLAUDE_CONFIG_DIR"):
        if environ.get(name):
            env[name] = environ[name]
    return Service(
        platform=platform, home=Path(environ.get("HOME", str(Path.home()))),
        serve=(*me, "serve", "--transport", "http", "--host", host, "--port", str(port),
               *common, "--log-format", "json"),
        wait_ready=(*me, "service", "wait-ready", "--url", f"http://{probe}:{port}",
                    "--wait", str(READY_TIMEOUT_S), *common),
        env=env)
