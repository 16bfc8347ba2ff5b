"""The ``claude-mcp-bridge`` command: flags and environment -> Settings -> a subcommand.

This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from . import __version__, logs, service
from .agent_tests import cli as agent_tests
from .errors import BridgeError, ConfigError
from .startup import build_settings, default_config_file

# Every command builds this module's parser, and ``serve`` over stdio must answer
# ``initialize`` within a few milliseconds of the SDK's own imports (Claude Code starts its
# first turn without servers that are still connecting): the config, discovery, the bridge,
# the server and the HTTP stack load where a command needs them.
if TYPE_CHECKING:

    from .bridge import Bridge
    from .catalog import Catalog
    from .jobs import JobBoard
    from .server import BridgeServer
    from .settings import Settings

logger = logging.getLogger("claude_mcp_bridge")

HANDSHAKE_WAIT_S = 0.5
"""Over stdio the bridge is built once the client's handshake is answered, or after this long."""

LARGE_CATALOG = 100
"""Beyond this many tools, start-up suggests router mode."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    if args.command == "serve" and args.transport == "stdio":
        return _guarded(_serve_stdio, args)
    try:
        settings = build_settings(args, os.environ)
    except ConfigError as exc:
        if args.command != "doctor":
            print(f"claude-mcp-bridge: {exc}", file=sys.stderr)
            return 2
        # doctor still checks everything else, with the defaults in place of the config
        from .doctor import Check

        print(Check("config", "fail", f"{exc}; fix it and run doctor again"))
        try:
            settings = build_settings(args, os.environ, defaults=True)
        except ConfigError as again:
            print(Check("settings", "fail", str(again)))
            return 1
        _doctor(args, settings)
        return 1
    return _guarded(_COMMANDS[args.command], args, settings)


def _guarded(command: Callable[..., int], *args: Any) -> int:
    """Run a command; a failure is one line on stderr and an exit code, never a traceback."""
    try:
        return command(*args)
    except KeyboardInterrupt:
        return 130
    except (BridgeError, OSError) as exc:  # the message names the path and the fix
        print(f"claude-mcp-bridge: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # no traceback on a terminal; it is in the debug log
        logger.debug("unexpected failure", exc_info=True)
        print(f"claude-mcp-bridge: unexpected {type(exc).__name__}: {exc} (run with "
              "--log-level DEBUG for the details)", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """``serve`` over HTTP (stdio takes ``_serve_stdio``)."""
    from .bridge import open_bridge
    from .jobs import JobBoard
    from .server import create_server
    from .transports.http import TOKEN_VAR, HttpOptions, serve_http

    options = HttpOptions.from_config(settings.config.http, host=args.host, port=args.port,
                                      token=os.environ.get(TOKEN_VAR, "").strip() or None)
    if options.token:
        logs.configure(args.log_level, args.log_format, secrets=[options.token])
    from .clients import Clients

    clients = Clients.from_config(settings.config)
    if problem := options.problem(clients):
        print(f"claude-mcp-bridge: {problem}", file=sys.stderr)
        return 2
    _freeze_imports()
    with open_bridge(settings) as bridge:
        _log_start(settings, bridge.catalog)
        _freeze_start_up()
        jobs = JobBoard(bridge)
        server = create_server(bridge, jobs)
        anyio.run(_serving, server, bridge, jobs, partial(serve_http, bridge, server, options))
    return 0


def _serve_stdio(args: argparse.Namespace) -> int:
    """``serve`` over stdio: the transport is up and answering ``initialize`` before the
    settings are read and the bridge is built (the bridge's own start-up then overlaps the
    client's handshake); requests that need the bridge wait for it. A failure to build it
    (a bad config, an unusable ledger) ends the server with the message, as before."""
    with ExitStack() as stack:
        return anyio.run(_stdio_answering_first, args, stack)


async def _stdio_answering_first(args: argparse.Namespace, stack: ExitStack) -> int:
    from .server import BridgeServer
    from .transports.stdio import serve_stdio

    server = BridgeServer()
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        async def transport() -> None:
            await serve_stdio(server)
            tg.cancel_scope.cancel()

        tg.start_soon(transport)
        await server.contacted(within_s=HANDSHAKE_WAIT_S)
        try:
            bridge, jobs = await anyio.to_thread.run_sync(_open_bridge, args, stack)
        except Exception as exc:  # reported by main, after the transport is down
            failure = exc
            tg.cancel_scope.cancel()
        else:
            _freeze_start_up()
            await _serving(server, bridge, jobs, anyio.sleep_forever,
                           attach=partial(server.attach, bridge, jobs))
    if failure is not None:
        raise failure
    return 0


def _open_bridge(args: argparse.Namespace, stack: ExitStack) -> tuple[Bridge, JobBoard]:
    from .bridge import open_bridge
    from .jobs import JobBoard

    _freeze_imports()
    settings = build_settings(args, os.environ)
    bridge = stack.enter_context(open_bridge(settings))
    _log_start(settings, bridge.catalog)
    return bridge, JobBoard(bridge)


def _freeze_imports() -> None:
    # The modules live as long as the server and hold no garbage: out of the collections
    # that building the catalog triggers (2,500 definitions: 340 -> 267 ms, and the
    # collection below 90 -> 15 ms; bench/PROFILE.md).
    gc.freeze()


def _freeze_start_up() -> None:
    # What start-up built (modules, the catalog) lives as long as the server: keep it
    # out of every later garbage collection (measured: tools/list of 2,500 tools -25%).
    # No collection first: after the imports' freeze, one found nothing to free at
    # 2,500 definitions and took 30-44 ms of the start-up.
    gc.freeze()


async def _serving(server: BridgeServer, bridge: Bridge, jobs: JobBoard,
                   serve: Callable[[], Awaitable[None]],
                   attach: Callable[[], None] | None = None) -> None:
    """Run a transport, with background jobs and the hot-reload watcher beside it;
    ``attach`` the bridge (stdio) once the watchers took their first look, so a change a
    client makes after it saw the tools is never taken for the state they were built from."""
    from .reload import watch, watch_file

    reload = bridge.settings.config.reload
    config_file = bridge.settings.config_file or default_config_file()
    async with bridge.warm.running(), jobs.running(), anyio.create_task_group() as tg:
        if reload.enabled:
            await tg.start(partial(watch, bridge.settings.roots, server.reload,
                                   poll_s=reload.poll_s, debounce_s=reload.debounce_s,
                                   first=bridge.catalog.registry.files))
            await tg.start(partial(watch_file, config_file,
                                   partial(server.reload_config, config_file),
                                   poll_s=reload.poll_s, debounce_s=reload.debounce_s))
        if attach is not None:
            attach()
        await serve()
        tg.cancel_scope.cancel()


def _log_start(settings: Settings, catalog: Catalog) -> None:
    registry = catalog.registry
    rejected = [d for d in registry.diagnostics if d.severity == "error"]
    logger.info(
        "publishing %d tools (%d agents, %d skills); %d files rejected; claude: %s",
        len(catalog.tools), len(registry.agents), len(registry.skills), len(rejected),
        settings.claude.path or settings.claude.missing_message())
    if len(catalog.tools) > LARGE_CATALOG and settings.config.catalog.mode == "tools":
        logger.warning(
            "%d tools cost the calling model context on every turn (and make tools/list "
            "slow); consider [catalog] mode = \"router\" (two tools: find_agent, run_agent)",
            len(catalog.tools))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from .bridge import load_catalog
    from .listing import listing, listing_text

    catalog = load_catalog(settings)
    if args.json:
        print(json.dumps(listing(catalog), indent=2))
    else:
        print(listing_text(catalog, settings.project_dir))
    return 0


def _call(args: argparse.Namespace, settings: Settings) -> int:
    from .bridge import open_bridge
    from .cli_call import call_once

    arguments: dict[str, Any] = {"prompt": args.prompt}
    for key in ("cwd", "model", "max_turns", "max_budget_usd", "session_id"):
        value = getattr(args, key)
        if value is not None:
            arguments[key] = value
    with open_bridge(settings) as bridge:
        return anyio.run(call_once, bridge, args.tool, arguments, args.json)


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from .bridge import open_bridge
    from .usage import parse_since, usage_report, usage_text

    since = parse_since(args.since)
    if since is None:
        print(f"claude-mcp-bridge: --since {args.since!r}: use a number of days or hours "
              "such as 7d or 12h", file=sys.stderr)
        return 2
    with open_bridge(settings) as bridge:
        report = usage_report(bridge.ledger, bridge.global_budget, since=since, by=args.by)
    print(json.dumps(report, indent=2) if args.json else usage_text(report))
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from .doctor import run_checks

    checks = run_checks(settings)
    for check in checks:
        print(check)
    return 0 if all(check.ok for check in checks) else 1


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from .tokens import token_command

    return token_command(args.action, args.name, settings.config_file or default_config_file(),
                         print_toml=getattr(args, "print_toml", False), out=sys.stdout,
                         err=sys.stderr)


def _service(args: argparse.Namespace, settings: Settings) -> int:
    return service.run(args, settings, os.environ)


_COMMANDS = {"serve": _serve, "list": _list, "call": _call, "usage": _usage, "doctor": _doctor,
             "test": agent_tests.run, "token": _token, "service": _service}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claude-mcp-bridge",
        description="Publish your Claude Code agents and skills as MCP tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    serve = sub.add_parser(
        "serve", parents=[common], help="serve the tools over MCP (stdio, http, sse)",
        description="Serve every agent and skill as an MCP tool. stdio by default; with "
                    "--transport http or sse one HTTP server offers both Streamable HTTP "
                    "(/mcp) and legacy SSE (/sse), plus /health and /ready.")
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio",
                       help="stdio (default), or http / sse: the same HTTP server with both")
    serve.add_argument("--host", help="address to bind for http/sse (default [http] host, "
                                      "127.0.0.1); other than loopback needs a token")
    serve.add_argument("--port", type=int, help="port for http/sse (default [http] port, 8765; "
                                                "0 = any free port, logged)")
    listing = sub.add_parser(
        "list", parents=[common], help="show the tools that would be published",
        description="Show the tools that would be published and the files that were rejected.")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    call = sub.add_parser(
        "call", parents=[common], help="run one tool from the terminal",
        description="Run one tool call with live progress on stderr and the answer on stdout; "
                    "exits non-zero when the call fails.")
    call.add_argument("tool", help="tool name, as `list` shows it (e.g. agent_reviewer)")
    call.add_argument("prompt", help="the task for the agent")
    call.add_argument("--cwd", help="directory the agent works in")
    call.add_argument("--model", help="model to use instead of the definition's")
    call.add_argument("--max-turns", type=int, help="stop after this many turns")
    call.add_argument("--max-budget-usd", type=float, help="stop at this cost in USD")
    call.add_argument("--session-id", help="resume this earlier session")
    call.add_argument("--json", action="store_true", help="print the structured result as JSON")
    usage = sub.add_parser(
        "usage", parents=[common], help="calls, success rate, durations and cost",
        description="Calls, success rate, p50/p95 duration and cost per tool or per day, and "
                    "the budget left today and this month, from the ledger.")
    usage.add_argument("--since", default="7d", help="how far back: 7d, 12h, ... (default 7d)")
    usage.add_argument("--by", choices=["tool", "day", "client"], default="tool",
                       help="group rows by")
    usage.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub.add_parser(
        "doctor", parents=[common], help="check the installation and the config",
        description="Check claude (found, version, flags), the config, the definition files "
                    "and the ledger; one line per check, with what to do when one fails.")
    _more_parsers(sub, common)
    return parser


def _more_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    agent_tests.add_parser(sub, common)
    _token_parser(sub, common)
    service.add_parser(sub, common)


def _token_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    token = sub.add_parser(
        "token", help="give an HTTP client its own token, or revoke it",
        description="Manage [clients.NAME] tokens in the config file (only hashes are kept).")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[common], help="print a new token for NAME and write its hash",
        description="Print a new token for client NAME once (stdout) and write its SHA-256 "
                    "into [clients.NAME] of the config file; replaces an earlier token.")
    add.add_argument("name", help="the client's name, e.g. ci-bot")
    add.add_argument("--print-toml", action="store_true",
                     help="write nothing; print the TOML to paste (on stderr)")
    revoke = actions.add_parser(
        "revoke", parents=[common], help="revoke NAME's token",
        description="Remove client NAME's token hash from the config file; its entry stays.")
    revoke.add_argument("name", help="the client's name")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project-dir", default=".", metavar="DIR",
                        help="project whose .claude/agents and .claude/skills are published "
                             "(default: the current directory)")
    common.add_argument("--extra-root", action="append", default=[], metavar="DIR",
                        help="another folder laid out like ~/.claude (agents/, skills/), e.g. a "
                             "team's shared agents; repeatable")
    common.add_argument("--mcp-config", action="append", default=[], metavar="PATH",
                        help="MCP config file forwarded to every agent run; repeatable")
    common.add_argument("--strict-mcp-config", action="store_true",
                        help="agents see only the forwarded MCP servers")
    common.add_argument("--config", metavar="PATH",
                        help="TOML config file (default: $CLAUDE_MCP_BRIDGE_CONFIG, else "
                             "config.toml in the user config dir)")
    common.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="wall-clock limit of one call (overrides [limits] timeout_s)")
    common.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level; logs always go to stderr")
    common.add_argument("--log-format", default="auto", choices=["auto", "json", "text"],
                        help="JSON lines or text; auto = JSON unless stderr is a terminal")
    return common
