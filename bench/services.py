"""Throwaway PostgreSQL and Redis servers, for the tests and for ``bench.cluster``.

Each lives in a temporary folder on a free port of 127.0.0.1 and is gone
after. PostgreSQL comes from ``initdb`` + ``pg_ctl`` (Debian's package,
``make services``), Redis from ``redis-server``; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

USER = "sentiment"
REDIS_START_SECONDS = 10.0
REDIS_STOP_SECONDS = 10.0


def free_port() -> int:
    """A port nothing listens on now (the OS's pick, so parallel runs do not collide)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def binaries() -> Path | None:
    """The folder of ``pg_ctl`` and ``initdb``: on PATH, or where Debian installs them."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                     key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    return Path(folders[-1]) if folders else None


class PostgresCluster:
    """A PostgreSQL cluster of its own, trusting local connections (it lives as long as
    its user, in a folder nobody else uses). The tests turn ``fsync`` off: they kill
    the app and restart the database, never the machine. PostgreSQL refuses to run as
    root, so as root it runs as Debian's ``postgres`` user.
    """

    def __init__(self, folder: Path | None = None, durable: bool = False) -> None:
        """``durable``: fsync as a production database does (the benchmark's), rather
        than the tests' faster ``fsync=off``."""
        bin_dir = binaries()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (make test installs it)")
        self.bin = bin_dir
        self.root = Path(folder or tempfile.mkdtemp(prefix="sentiment-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)
        self._durable = durable

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                      "--auth=trust", "--encoding=UTF8", "--no-instructions")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
                   " -c max_connections=300")
        if not self._durable:
            options += " -c fsync=off -c full_page_writes=off"
        # -w: returns once the server accepts connections
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``mode``: fast (roll back what is under way), immediate (as a crash)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"log_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


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

    @property
    def pids(self) -> list[int]:
        """The server's process, while it runs."""
        return [self._process.pid] if self._process is not None and self.running else []

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
            process.wait(REDIS_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + REDIS_START_SECONDS
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
