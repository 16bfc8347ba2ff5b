"""8. Follow-ups: a question with the last answer's ``session_id``, live vs resumed.

Two bridges over stdio, side by side in the same rounds: one keeps a call's process alive
for its follow-up (``[warm] live_sessions``), the other has live sessions off, so the
follow-up runs ``claude -p --resume <id>`` in a new process. Each round, each bridge gets a
first question (a new session) and then the timed follow-up; the order of the two bridges
rotates. The memory a live session holds is the resident memory of the bridge's children
(the waiting CLI and what it started) after a first question.
"""

from __future__ import annotations

import sys
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import psutil
from mcp import Client

from .options import Options, real_claude
from .report import Table, ms, p50, p95
from .servers import bridge_client
from .workspace import TOOL, toml_config, workspace

FAKE_CLAUDE = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "fake_claude.py"
TARGET = 0.1
"""A live follow-up's time under a tenth of a resumed one."""


async def bench_followup(options: Options) -> Table:
    table = Table("9. Follow-up latency: live session vs `--resume`",
                  ["CLI", "path", "follow-ups", "p50 ms", "p95 ms", "ratio p50 (live / resumed)",
                   "memory per live session MB"])
    await _measure(table, "strict fake", options, options.count(40, 8), None)
    claude = real_claude()
    if claude is None:
        table.notes.append("real CLI: skipped, not installed (run .ci/run, or set "
                           "CLAUDE_MCP_BRIDGE_REAL_CLAUDE)")
    else:
        await _measure(table, "real 2.1.197 + scripted model", options, options.count(20, 3),
                       claude)
    table.notes.append("both bridges over stdio with the SDK client, interleaved per round; "
                       "each follow-up passes the session_id its round's first question got. "
                       "The scripted model answers at once, so the time is the bridge's and "
                       "the CLI's own.")
    return table


async def _measure(table: Table, label: str, options: Options, rounds: int,
                   claude: Path | None) -> None:
    with workspace("followup") as ws, ExitStack() as stack:
        if claude is None:
            target = _fake(ws.root)
        else:
            from tests.fakes.messages_api import scripted_model

            model = stack.enter_context(scripted_model())  # answers every turn with "done"
            ws.env_extra.update(model.cli_env(str(ws.home)))
            target = claude
        configs = {
            "live": ws.config(toml_config({"warm": {"live_sessions": 4}}), "live.toml"),
            "resumed": ws.config(toml_config({"warm": {"live_sessions": 0}}), "resumed.toml"),
        }
        wall: dict[str, list[float]] = {path: [] for path in configs}
        memory: list[float] = []
        async with AsyncExitStack() as stack_async:
            clients: dict[str, tuple[Client, int]] = {}
            for path, config in configs.items():
                clients[path] = await stack_async.enter_async_context(bridge_client(
                    "stdio", ws.project, ws.bridge_env(target), config,
                    ws.root / f"bridge-{path}.log"))
            for client, _ in clients.values():  # warm up: imports, page cache
                await _follow_up(client, await _first(client))
            order = list(clients)
            for index in range(rounds):
                shift = index % len(order)
                for path in order[shift:] + order[:shift]:
                    client, pid = clients[path]
                    session = await _first(client)
                    if path == "live":
                        memory.append(_session_rss_mb(pid))
                    began = time.perf_counter()
                    await _follow_up(client, session)
                    wall[path].append(time.perf_counter() - began)
    ratio = p50(wall["live"]) / p50(wall["resumed"])
    for path, runs in wall.items():
        table.add(label, path, len(runs), ms(p50(runs)), ms(p95(runs)),
                  f"{ratio:.3f}" if path == "live" else "",
                  f"{p50(memory):.0f}" if path == "live" else "")
    if claude is not None:  # the fake starts in ~0.1 s: the goal is about the real CLI
        table.target(f"{label}: a live follow-up takes under 1/10 of a resumed one",
                     ratio < TARGET, f"{ratio:.3f}")


def _fake(root: Path) -> Path:
    """The strict fake CLI of the tests, as an executable ``claude``."""
    launcher = root / "bin" / "fake-claude"
    launcher.parent.mkdir(exist_ok=True)
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_CLAUDE} \"$@\"\n")
    launcher.chmod(0o755)
    return launcher


async def _first(client: Client) -> str:
    result = await client.call_tool(TOOL, {"prompt": "Remember the word teal."})
    _check(result)
    return str(result.structured_content["session_id"])


async def _follow_up(client: Client, session_id: str) -> None:
    result = await client.call_tool(TOOL, {"prompt": "Which word?", "session_id": session_id})
    _check(result)


def _check(result: object) -> None:
    if getattr(result, "is_error", True) or not getattr(result, "structured_content", None):
        content = getattr(result, "content", None) or []
        text = getattr(content[0], "text", "") if content else ""
        raise RuntimeError(f"the bridge call failed: {text}")


def _session_rss_mb(pid: int) -> float:
    """The mean resident memory of the process trees the bridge keeps alive (its children
    but the watchdog, each with its descendants)."""
    sizes = []
    for root in psutil.Process(pid).children():
        try:
            if "claude_mcp_bridge.watchdog" in root.cmdline():
                continue
            tree = [root, *root.children(recursive=True)]
            sizes.append(sum(process.memory_info().rss for process in tree))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sum(sizes) / len(sizes) / (1 << 20) if sizes else 0.0
