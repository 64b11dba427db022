"""Serve the app from several waitress processes that share one listening socket.

One Python process runs Python code on one core at a time (the GIL), and
waitress parses HTTP in Python, so a single process tops out well below what
the machine can serve. The usual answer is pre-forking, as gunicorn does:
the parent binds the socket, imports the heavy libraries and loads the base
model once (app.py), then forks workers that each build their own app (SQLite
connections, live model, threads) and accept connections from the shared
socket. The app already
supports several processes on one instance folder: they follow one feedback
log and converge on bit-identical models.

The parent only supervises: it restarts a worker that dies, stops everything
if a worker cannot even start, and on SIGTERM or SIGINT asks every worker to
checkpoint and exit.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

import heap

log = logging.getLogger(__name__)

# A worker that dies this soon after it was started is broken, not unlucky:
# restarting it would only loop.
MIN_WORKER_LIFETIME = 5.0
# How long a stopping worker may take for its final checkpoint before kill -9
# (the verdicts are in the log either way; the next start replays them).
STOP_GRACE = 30.0


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Forks ``workers`` children running ``run_worker(sock)`` and keeps them alive."""

    def __init__(self, sock: socket.socket, workers: int,
                 run_worker: Callable[[socket.socket], None]) -> None:
        self.sock = sock
        self.workers = workers
        self.run_worker = run_worker
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        self.kill_at = float("inf")

    def spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                self.run_worker(self.sock)
            except KeyboardInterrupt:
                pass
            except SystemExit as exc:  # the worker said why (e.g. an unusable instance folder)
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        log.info("started worker %d", pid)

    def stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        if not self.stopping:
            log.info("stopping %d workers", len(self.children))
        self.stopping = True
        self.kill_at = min(self.kill_at, time.monotonic() + STOP_GRACE)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        """Run until stopped; returns the exit status for the parent process."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        # Objects made so far (modules, the imported libraries) are never
        # freed: keep the collector from touching them, so their memory stays
        # shared with the workers instead of being copied into each.
        gc.freeze()
        heap.release_free_memory()  # not copied into every worker
        for _ in range(self.workers):
            self.spawn()
        status = 0
        while self.children:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:  # nobody exited: check the stop deadline, then look again
                if time.monotonic() > self.kill_at:
                    for late in self.children:
                        log.error("worker %d did not stop in %.0f s; killing it", late,
                                  STOP_GRACE)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(late, signal.SIGKILL)
                    self.kill_at = float("inf")
                time.sleep(0.1)
                continue
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            exit_code = os.waitstatus_to_exitcode(code)
            if time.monotonic() - started < MIN_WORKER_LIFETIME:
                log.error("worker %d exited with %d right after starting; stopping", pid,
                          exit_code)
                status = 1
                self.stop()
                continue
            log.warning("worker %d exited with %d; starting a new one", pid, exit_code)
            self.spawn()
        return status


def serve_forked(run_worker: Callable[[socket.socket], None], sock: socket.socket,
                 workers: int) -> int:
    """Serve on ``sock`` (see :func:`bind`) from ``workers`` processes until stopped."""
    host, port = sock.getsockname()[:2]
    print(f"Serving on http://{host}:{port} with {workers} worker processes", flush=True)
    return Supervisor(sock, workers, run_worker).run()

