"""The thread that keeps a bridge's lease on a shared ledger, and recovers the calls of
bridges whose lease ran out.

Every ``lease_s / 3`` it renews this bridge's lease, then settles the ``running`` rows of
bridges that are gone (``Ledger.recover_interrupted``). A renewal that fails (the database
is unreachable) is logged and tried again next time: two misses in a row still leave a
third of the lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, renew: Callable[[], object], recover: Callable[[], object],
                 lease_s: float) -> None:
        self._renew = renew
        self._recover = recover
        self._every_s = lease_s / 3
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-lease", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            for step in (self._renew, self._recover):
                try:
                    step()
                except Exception as exc:  # the next tick tries again
                    logger.warning("ledger lease: %s failed (%s); trying again in %.1fs",
                                   getattr(step, "__name__", "a step"), exc, self._every_s)
