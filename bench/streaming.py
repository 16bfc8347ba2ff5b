"""4. Streaming: from the child printing an event to the client's progress callback.

The trivial fake prints ``tool_use`` events named ``t<wall-clock time>``; the bridge turns each
into the progress message ``running tool t<time>``, and the callback subtracts that time from
its own clock (one machine, one clock). Both transports, one session each, calls in sequence.
"""

from __future__ import annotations

import time

from mcp import Client

from .options import Options
from .report import Table, ms, p50, p95
from .servers import Transport, bridge_client
from .workspace import TOOL, workspace

TARGET_S = 0.020
PREFIX = "running tool t"


async def bench_streaming(options: Options) -> Table:
    stamps, calls = options.count(50, 20), options.count(6, 2)
    table = Table("4. Streaming: child event -> client progress notification",
                  ["transport", "events", "p50 ms", "p95 ms", "max ms"])
    transports: tuple[Transport, ...] = ("stdio", "http")
    for transport in transports:
        with workspace("streaming") as ws:
            claude = ws.trivial_claude()
            async with bridge_client(transport, ws.project, ws.bridge_env(claude), None,
                                     ws.root / "bridge.log") as (client, _):
                await _call(client, 2, [])  # warm up
                delays: list[float] = []
                for _ in range(calls):
                    await _call(client, stamps, delays)
        table.add(transport, len(delays), ms(p50(delays)), ms(p95(delays)), ms(max(delays)))
        table.target(f"{transport}: p95 < 20 ms", p95(delays) < TARGET_S,
                     f"{ms(p95(delays))} ms")
    table.notes.append(f"{calls} calls of {stamps} events, 10 ms apart")
    return table


async def _call(client: Client, stamps: int, delays: list[float]) -> None:
    expected = len(delays) + stamps

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        now = time.time()
        if message and message.startswith(PREFIX):
            delays.append(now - float(message[len(PREFIX):]))

    result = await client.call_tool(TOOL, {"prompt": f"stamps={stamps} every=0.01"},
                                    progress_callback=on_progress)
    if result.is_error or len(delays) != expected:
        raise RuntimeError(f"streaming call: is_error={result.is_error}, "
                           f"{len(delays)} of {expected} stamps arrived")
