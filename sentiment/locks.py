"""A lock shared by the threads of a process and by every process on the host."""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from pathlib import Path


class HostLock:
    """A mutex for threads, then an ``flock`` of ``path`` for processes.

    Both hand over as soon as they are released, unlike SQLite's write lock,
    which a refused writer polls (sleeping 1, 2, 5 ... 100 ms in the busy
    handler). Made after any ``fork``: an inherited descriptor would share the
    lock with the parent.
    """

    def __init__(self, path: Path) -> None:
        self._threads = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        weakref.finalize(self, os.close, self._fd)

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` give up at once if anyone holds it."""
        if not self._threads.acquire(blocking):
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._threads.release()
            return False
        except BaseException:
            self._threads.release()
            raise
        return True

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
