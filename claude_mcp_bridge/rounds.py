"""2026-07-28 era: a call's permission question as an ``InputRequiredResult`` round trip.

That era has no server-to-client requests, so the question cannot be sent while the call's
request is open. Instead the call runs in the server's task group (``running()``, entered by
the server's lifespan), *parked*: when its child asks, the request returns
``InputRequiredResult`` with the question as an elicitation form and an opaque
``request_state``; the child stays paused on its prompt. The client asks its user and retries
``tools/call`` with the answer in ``input_responses`` and the same ``request_state``; the
parked call gets the answer and the retry waits for the next question or the result.

A retry must come from the same client (``[clients.<name>]``, or the owner). A parked call
nobody retries is denied at the question's time limit (the desk's ``ask_timeout_s``), runs
on, and its result is dropped if nobody collects it within that time again. A request
cancelled while it waits stops the parked call (its child is ended).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup

from .approvals import Answer, Question
from .asking import DECISION_SCHEMA, to_answer
from .outcomes import Reply
from .progress import Progress

logger = logging.getLogger(__name__)

Step = Question | Reply


@dataclass(eq=False)
class Parked:
    """One call running across requests; it is the call's ``Approver``."""

    state: str
    client: str | None
    linger_s: float
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    waiting: tuple[Question, anyio.Event] | None = None
    answer: Answer | None = None
    collected: anyio.Event = field(default_factory=anyio.Event)
    session: Any = None
    """The session of the request now waiting for this call: progress goes there."""

    def __post_init__(self) -> None:
        self._send, self._steps = anyio.create_memory_object_stream[Step](math.inf)

    async def ask(self, question: Question) -> Answer | None:
        answered = anyio.Event()
        self.waiting, self.answer = (question, answered), None
        self._send.send_nowait(question)
        try:
            await answered.wait()
        finally:
            self.waiting = None
        return self.answer

    def finish(self, reply: Reply) -> None:
        self._send.send_nowait(reply)

    def give(self, answer: Answer) -> None:
        if self.waiting is not None:
            self.answer = answer
            self.waiting[1].set()

    def close(self) -> None:
        self._send.close()
        self._steps.close()

    async def next_step(self) -> Step:
        return await self._steps.receive()


class RoundTrips:
    """The parked calls of one server."""

    def __init__(self) -> None:
        self._tasks: TaskGroup | None = None
        self._parked: dict[str, Parked] = {}

    @property
    def available(self) -> bool:
        return self._tasks is not None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            try:
                yield
            finally:
                self._tasks = None
                for parked in list(self._parked.values()):
                    parked.scope.cancel()
                tg.cancel_scope.cancel()

    async def start(self, run: Callable[[Parked], Awaitable[Reply]], session: Any,
                    client: str | None, linger_s: float
                    ) -> types.CallToolResult | types.InputRequiredResult:
        """Run ``run(approver)`` parked; the first question or the result answers."""
        assert self._tasks is not None
        parked = Parked(secrets.token_urlsafe(24), client, linger_s, session=session)
        self._parked[parked.state] = parked

        async def background() -> None:
            try:
                with parked.scope:
                    parked.finish(await run(parked))
                    with anyio.move_on_after(parked.linger_s):
                        await parked.collected.wait()
            finally:
                self._parked.pop(parked.state, None)
                parked.close()

        self._tasks.start_soon(background)
        return await self._answer(parked)

    async def resume(self, params: types.CallToolRequestParams, session: Any,
                     client: str | None
                     ) -> types.CallToolResult | types.InputRequiredResult | None:
        """A retry: give the parked call its answer, then wait as before. None: unknown
        state (expired, another client's, or never issued)."""
        parked = self._parked.get(params.request_state or "")
        if parked is None or parked.client != client:
            return None
        parked.session = session
        if parked.waiting is not None:
            question = parked.waiting[0]
            response = (params.input_responses or {}).get(question.question_id)
            if isinstance(response, types.ElicitResult):
                parked.give(to_answer(response))
            else:
                parked.give(Answer("deny", "the client retried without an answer"))
        return await self._answer(parked)

    async def _answer(self, parked: Parked) -> types.CallToolResult | types.InputRequiredResult:
        try:
            step = await parked.next_step()
        except anyio.EndOfStream:  # stopped (the server shutting down) before it answered
            step = Reply("the call was stopped before it finished", None, is_error=True)
        except BaseException:
            parked.scope.cancel()  # the request was cancelled: stop the call
            raise
        if isinstance(step, Reply):
            parked.collected.set()
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=step.text)],
                structured_content=step.structured, is_error=step.is_error)
        request = types.ElicitRequest(params=types.ElicitRequestFormParams(
            message=step.text, requested_schema=DECISION_SCHEMA))
        return types.InputRequiredResult(input_requests={step.question_id: request},
                                         request_state=parked.state)


def parked_progress(parked: Parked) -> Progress:
    """Progress of a parked call, to whichever request waits for it now."""
    count = 0

    async def say(message: str) -> None:
        nonlocal count
        count += 1
        try:
            await parked.session.report_progress(count, None, message)
        except Exception:  # the request it was meant for may have ended: not an error
            logger.debug("progress of a parked call not delivered", exc_info=True)
    return Progress(say)
