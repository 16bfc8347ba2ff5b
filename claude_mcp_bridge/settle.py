"""Settling a call: what it is charged, written to the ledger even when the disk fights back.

Charging rules, on every path (a finished run, a timeout, a stall, a cancel, a client gone,
a drain, a shutdown):

- a call whose child reported its cost (a ``result`` event) is charged that cost;
- a call whose cost is unknown is charged its cap when it had one: the child may have
  spent up to it, so the budget is never under-counted;
- an uncapped call of unknown cost is charged $0 and the log says so (its reservation
  was all that was left of the tightest budget; charging that for a crash at start-up
  would block the rest of the day);
- a call that never started its child (refused in the queue) is charged $0.

The settlement is made at once on the loop's thread when the ledger can start it without
waiting (``write_behind.at_once``: some 20 microseconds with SQLite, less than waking a
thread for it). Else it is queued (``Ledger.later``): the call answers without waiting for
the write, and every later read or reservation of the ledger waits for it. A ledger write
that fails (disk full, I/O error) is retried a few times, then logged and left: the row
stays ``running`` with its reservation held, and the next bridge that opens the ledger
settles it ``interrupted``, charging that reservation. A failed write never raises out
of settling, so a call always leaves the in-flight set.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio

from .ledger import Ledger, Settlement
from .ledger_schema import LEDGER_ERRORS
from .ledger_store import Busy
from .outcomes import Outcome
from .result import CallReport
from .write_behind import at_once

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_DELAYS_S = (0.05, 0.25, 1.0)
"""Waits between attempts at a ledger write that failed."""


class Settler:
    """Charges and records how calls ended."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def finished(self, call_id: str, tool: str, call: CallReport, cap: float | None,
                 began: float) -> None:
        """Settle a call that ran to a report (ok, error, timeout, stall)."""
        output = call.output
        cost = output.cost_usd if output.cost_usd is not None else charge_unknown(call_id, cap)
        error = call.message if call.outcome != "ok" else None
        self._write(call_id, Settlement(
            outcome=call.outcome, cost_usd=cost, num_turns=output.num_turns,
            session_id=output.session_id, usage=_tokens(call.usage), error=error,
            duration_ms=output.duration_ms, wall_ms=_wall_ms(began)))
        _log_end(call_id, tool, call.outcome, cost, began, error[:200] if error else None)

    def stopped(self, call_id: str, tool: str, outcome: Outcome, why: str, began: float,
                *, ran: bool, reported_usd: float | None, cap: float | None) -> None:
        """Settle a call that was refused in the queue or stopped before its report."""
        if reported_usd is not None:
            charged = reported_usd
        else:
            charged = charge_unknown(call_id, cap) if ran else 0.0
        self._write(call_id, Settlement(outcome=outcome, cost_usd=charged, error=why,
                                        wall_ms=_wall_ms(began)))
        _log_end(call_id, tool, outcome, charged, began, why)

    def _write(self, call_id: str, settlement: Settlement) -> None:
        now_or_later(self._ledger, lambda: self._ledger.settle(call_id, settlement),
                     f"settling call {call_id[:8]}")


def write_later(ledger: Ledger, write: Callable[[], None], what: str) -> Future[None]:
    """Queue a ledger write, retried on I/O errors as ``retried`` does, on the ledger's
    writer thread (its queue waits meanwhile, so writes keep their order). The future is
    done once the write was made or given up."""
    return ledger.later(functools.partial(_retried_now, write, what))


async def promptly(write: Callable[[], T]) -> T:
    """Run a blocking ledger transaction on the loop's thread when it can start at once
    (``write_behind.at_once``), else in a worker thread; its errors are raised as ever."""
    try:
        return at_once(write)
    except Busy:
        return await anyio.to_thread.run_sync(write)


def now_or_later(ledger: Ledger, write: Callable[[], None], what: str) -> Future[None] | None:
    """Make a ledger write at once if it can start without waiting; else (or when it
    fails: the queue retries) queue it as ``write_later`` does and return its future."""
    try:
        at_once(write)
        return None
    except Busy:
        pass
    except LEDGER_ERRORS as exc:
        logger.warning("%s failed (%s); queued to be retried", what, exc)
    except Exception:  # never out of settling: the queue logs it, as it did any write
        logger.debug("%s failed at once; queued", what, exc_info=True)
    return write_later(ledger, write, what)


async def made(write: Future[None]) -> None:
    """Wait for a queued write: the writer thread wakes the loop itself when it is made
    (asyncio), with no worker thread in between; cancelling the wait leaves it queued."""
    if write.done():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another backend
        await anyio.to_thread.run_sync(write.result)
        return
    await asyncio.shield(asyncio.wrap_future(write, loop=loop))


def _retried_now(write: Callable[[], None], what: str) -> bool:
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None), 1):
        try:
            write()
            return True
        except LEDGER_ERRORS as exc:
            if not _again(what, attempt, exc, delay):
                return False
            time.sleep(delay or 0)
    return False


async def retried(write: Callable[[], None], what: str) -> bool:
    """Run a blocking ledger write in a thread, retrying on I/O errors; False when it never
    went through (logged; the caller carries on)."""
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None), 1):
        try:
            await anyio.to_thread.run_sync(write)
            return True
        except LEDGER_ERRORS as exc:
            if not _again(what, attempt, exc, delay):
                return False
            await anyio.sleep(delay or 0)
    return False


def _again(what: str, attempt: int, exc: BaseException, delay: float | None) -> bool:
    """Log a failed attempt; whether to try again (after ``delay``)."""
    if delay is None:
        logger.error("%s failed %d times (%s); the ledger keeps the call running and the "
                     "next start settles it, charging its reservation", what, attempt, exc)
        return False
    logger.warning("%s failed (%s); retrying in %gs", what, exc, delay)
    return True


def charge_unknown(call_id: str, cap: float | None) -> float:
    """What a call whose cost the CLI never reported is charged: its cap, else $0."""
    if cap is not None:
        return cap
    logger.warning("call %s ended without reporting its cost and had no cap; charged $0",
                   call_id[:8])
    return 0.0


def _wall_ms(began: float) -> int:
    """Milliseconds since ``began`` (``time.monotonic``): the call's wall time so far."""
    return round((time.monotonic() - began) * 1000)


def _log_end(call_id: str, tool: str, outcome: str, cost: float | None, began: float,
             error: str | None) -> None:
    duration_ms = _wall_ms(began)
    level = logging.INFO if outcome == "ok" else logging.WARNING
    logger.log(level, "call %s %s in %d ms, $%s%s", call_id[:8], outcome, duration_ms,
               "?" if cost is None else f"{cost:g}", f": {error}" if error else "",
               extra={"event": "call.end", "call_id": call_id, "tool": tool,
                      "outcome": outcome, "cost_usd": cost, "duration_ms": duration_ms})


def _tokens(usage: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
