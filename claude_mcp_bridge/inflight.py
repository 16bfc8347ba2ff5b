"""The calls running now: each one's stop scope, how the bridge stops them and why.

Transports stop a call by the key they know it by (an HTTP client that went away, a job
cancelled); shutdown drains: new calls are refused, running ones get a grace period, then
the rest are stopped. A stopped call's reason becomes its answer and its ledger row.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

import anyio

from .outcomes import Outcome

logger = logging.getLogger(__name__)


class InFlight:
    """The bridge's calls in flight, keyed by their stop scopes."""

    def __init__(self) -> None:
        self.draining = False
        self._scopes: dict[anyio.CancelScope, Hashable | None] = {}
        """Each running call's stop scope, with the key its transport knows it by."""
        self._stopped: dict[anyio.CancelScope, tuple[Outcome, str]] = {}
        """Why the bridge stopped a call (shutdown, client gone), for its answer and row."""
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        return len(self._scopes)

    def track(self, scope: anyio.CancelScope, key: Hashable | None) -> None:
        self._scopes[scope] = key
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    def why_stopped(self, scope: anyio.CancelScope) -> tuple[Outcome, str]:
        """How a call that did not finish ended: the bridge's reason, else its client's."""
        return self._stopped.pop(scope, ("cancelled", "cancelled by the client"))

    def untrack(self, scope: anyio.CancelScope) -> None:
        self._scopes.pop(scope, None)
        self._stopped.pop(scope, None)  # a stop that came while the call was settling
        if not self._scopes:
            self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Refuse new calls, let running ones finish for up to ``timeout_s``, then stop the
        rest (their children are ended and their ledger rows settled ``cancelled``)."""
        self.draining = True
        if self._scopes:
            logger.info("shutting down: waiting up to %gs for %d call(s) in flight",
                        timeout_s, len(self._scopes))
        with anyio.move_on_after(timeout_s):
            await self._idle.wait()
        self.stop_all()
        with anyio.CancelScope(shield=True):
            await self._idle.wait()

    def stop_all(self) -> None:
        """Stop every call in flight now (shutdown)."""
        if self._scopes:
            logger.warning("shutting down: stopping %d call(s) still running",
                           len(self._scopes))
        for scope in list(self._scopes):
            self._stop(scope, "cancelled", "stopped by the bridge shutting down")

    def stop_call(self, key: Hashable, why: str, *, outcome: Outcome = "cancelled") -> bool:
        """Stop the call its transport knows as ``key``; False when none is running."""
        for scope, known_as in list(self._scopes.items()):
            if known_as == key:
                self._stop(scope, outcome, why)
                return True
        return False

    def _stop(self, scope: anyio.CancelScope, outcome: Outcome, why: str) -> None:
        self._stopped.setdefault(scope, (outcome, why))
        scope.cancel()
