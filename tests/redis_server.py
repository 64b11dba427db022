"""A throwaway ``redis-server`` for tests: its own port and folder, nothing saved, gone after.

Tests that need one skip when ``redis-server`` is not installed, except on CI
(``CI`` set), which installs it: there a missing server fails the run rather
than silently testing less.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INSTALL_HINT = "redis-server is not on PATH (apt-get install redis-server)"
START_SECONDS = 10.0
STOP_SECONDS = 10.0


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; :meth:`stop` then :meth:`start` keep its port,
    as a restarted Redis would (and, saving nothing, it comes back empty)."""

    def __init__(self, executable: str, folder: Path, port: int) -> None:
        self.executable = executable
        self.folder = folder
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start it and return once it answers PING."""
        if self.running:
            return
        log = (self.folder / "redis.log").open("ab")
        with log:
            self._process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_it_answers()

    def stop(self) -> None:
        """Stop it, as an outage would: later connections are refused."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not self._answers_ping():
            if not self.running or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n"
                                   f"{self._log_tail()}")
            time.sleep(0.01)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        log = self.folder / "redis.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""


def redis_server_executable() -> str:
    """Where ``redis-server`` is; skips the test when it is not installed (fails on CI)."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail(f"{INSTALL_HINT}: CI must install it", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return executable


def free_port() -> int:
    """A port nothing listens on now (the OS's pick, so parallel runs do not collide)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
