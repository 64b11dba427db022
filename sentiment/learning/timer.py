"""A thread that does, every few seconds, what no request should wait for."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicThread:
    """Calls ``work`` every ``interval`` seconds until :meth:`stop`.

    The learner's checkpoints (a request that finds one due wakes it,
    :meth:`wake`; with no traffic, its ticks are what save the last verdicts
    after ``checkpoint_seconds``) and the log's upkeep. A failed call is
    logged and retried at the next tick, so that one full disk does not end
    checkpointing for good.
    """

    def __init__(self, work: Callable[[], object], interval: float, name: str) -> None:
        self._work = work
        self._interval = interval
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._woken.wait(self._interval)
            self._woken.clear()
            if self._stopping.is_set():
                return
            try:
                self._work()
            except Exception:  # keep the timer alive; the next tick retries
                log.exception("%s failed", self._thread.name)

    def wake(self) -> None:
        """Call ``work`` now rather than at the next tick (at once if it is idle, else
        right after the call under way)."""
        self._woken.set()

    def stop(self) -> None:
        """Stop ticking and wait for a call under way to finish."""
        self._stopping.set()
        self._woken.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
