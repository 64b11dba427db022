"""A throwaway ``redis-server`` for tests: its own port and folder, nothing saved, gone after.

Tests that need one skip when ``redis-server`` is not installed, except on CI
(``CI`` set), which installs it: there a missing server fails the run rather
than silently testing less.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.services import RedisServer, free_port
from tests.requires import unavailable

INSTALL_HINT = "redis-server is not on PATH (apt-get install redis-server)"


def redis_server_executable() -> str:
    """Where ``redis-server`` is; skips the test when it is not installed (fails on CI)."""
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable(INSTALL_HINT)
    return executable


@contextmanager
def throwaway_redis() -> Iterator[RedisServer]:
    """A running ``redis-server`` in a temporary folder, terminated on the way out."""
    executable = redis_server_executable()
    with tempfile.TemporaryDirectory(prefix="redis-") as folder:
        server = RedisServer(executable, Path(folder), free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()
