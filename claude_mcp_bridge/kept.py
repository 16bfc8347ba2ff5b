"""A child kept alive between calls (a live session), and what one of its turns cost."""

from __future__ import annotations

from dataclasses import dataclass, replace

from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .events import ResultEvent
from .processes import CallTree


@dataclass
class Kept:
    """A child kept alive after a turn, waiting on stdin for its next user message."""

    process: Process
    stdout: BufferedByteReceiveStream
    """Its stdout, with whatever was read past the last line."""
    tree: CallTree
    cost_usd: float = 0.0
    """The ``total_cost_usd`` it last reported: the CLI counts every turn of the process
    (and, resumed by a CLI from 2.1.332, the session's earlier processes) in it, so a turn
    costs the difference."""
    turns: int = 1


def this_turn(event: ResultEvent, before: float) -> ResultEvent:
    """``event`` with the cost of this turn alone: ``before`` is what its total counted
    beyond it."""
    if not before or event.total_cost_usd is None:
        return event
    return replace(event, total_cost_usd=max(0.0, round(event.total_cost_usd - before, 9)))
