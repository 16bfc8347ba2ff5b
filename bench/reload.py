"""5. Hot reload: from writing a definition file to the client's ``tools/list_changed``.

A 2025-handshake client over stdio (the notification reaches its ``message_handler``). Each
sample writes a new agent file after a random pause, so the write lands anywhere in the poll
cycle, then waits for the notification. The expected figure is about half a poll interval plus
the debounce plus one catalog rebuild.
"""

from __future__ import annotations

import random
import time

import anyio
import mcp_types as types
from mcp.client.session import IncomingMessage

from .options import Options
from .report import Table, ms, p50
from .servers import bridge_client
from .workspace import Workspace, generate_definitions, toml_config, workspace

DEFAULT = {"poll_s": 1.0, "debounce_s": 0.3}
SHORT = {"poll_s": 0.1, "debounce_s": 0.05}


async def bench_reload(options: Options) -> Table:
    table = Table("5. Hot reload: file written -> tools/list_changed received",
                  ["definitions", "poll_s / debounce_s", "samples", "p50 ms", "max ms"])
    rng = random.Random(6)
    cases = [(1, DEFAULT, options.count(6, 2)), (1, SHORT, options.count(10, 3))]
    if not options.quick:
        cases.append((2501, SHORT, 4))
    for count, reload, samples in cases:
        with workspace("reload") as ws:
            if count > 1:
                generate_definitions(ws, count - 501, 500)
            delays = await _samples(ws, reload, samples, rng)
        table.add(f"{count:,}", f"{reload['poll_s']:g} / {reload['debounce_s']:g}",
                  len(delays), ms(p50(delays)), ms(max(delays)))
    table.notes.append("expected: poll_s / 2 + debounce_s + one rebuild of the catalog, "
                       "on average")
    return table


async def _samples(
    ws: Workspace, reload: dict[str, float], count: int, rng: random.Random
) -> list[float]:
    changed = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    config = ws.config(toml_config({"reload": reload}))
    env = ws.bridge_env(ws.root / "no-claude")
    delays = []
    async with bridge_client("stdio", ws.project, env, config, ws.root / "bridge.log",
                             message_handler=on_message) as (client, _):
        await client.list_tools()
        await anyio.sleep(reload["poll_s"] * 1.5)  # the watcher has taken its first look
        for index in range(count):
            await anyio.sleep(rng.uniform(0, reload["poll_s"]))
            changed = anyio.Event()
            began = time.perf_counter()
            ws.agent(f"added-{index}", "Added while serving.", "You were added.")
            with anyio.fail_after(60):
                await changed.wait()
            delays.append(time.perf_counter() - began)
    return delays
