"""Serve the app from several waitress processes on one port.

One Python process runs Python code on one core at a time (the GIL), and
waitress parses HTTP in Python, so a single process tops out well below what
the machine can serve. The usual answer is pre-forking, as gunicorn does:
the parent binds the port, imports the heavy libraries and loads the base
model once (app.py), then forks workers that each build their own app (SQLite
connections, live model, threads) and accept connections. The app already
supports several processes on one instance folder: they follow one feedback
log and converge on bit-identical models.

Each worker accepts on a listening socket of its own, all bound to the port
with SO_REUSEPORT, so that the kernel spreads new connections among them (by
a hash of their addresses). With one socket shared by all, whichever worker
woke first took the connections: the benchmark's 8 keep-alive clients all
landed on one worker in 4 of 7 runs, which then served half the predictions
per second while the other idled. The parent holds every socket, so a worker
that dies leaves the connections waiting on its socket to the worker that
replaces it.

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

# waitress threads per worker. With one, a long request (a batch of long
# reviews) stalls every other connection of its worker; each thread more
# costs CPU in GIL hand-offs (README, Serving).
DEFAULT_THREADS = 4
# A worker that dies this soon after it was started is broken, not unlucky:
# restarting it would only loop.
MIN_WORKER_LIFETIME = 5.0
# How long a stopping worker may take for its final checkpoint before kill -9
# (the verdicts are in the log either way; the next start replays them).
STOP_GRACE = 30.0


def usable_cores() -> int:
    """The CPU cores this process may run on: the default number of workers.

    One worker per core: a worker runs Python on one core at a time, so fewer
    leave cores idle under load (one process served about half the
    predictions per second of two on this project's 2-core machine), and more
    only add memory and verdicts to learn (every worker learns every verdict).
    """
    try:
        return len(os.sched_getaffinity(0))  # what a container or taskset allows
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def bind(host: str, port: int, workers: int = 1, backlog: int = 1024) -> list[socket.socket]:
    """The listening sockets on ``host:port``: one per worker where the system spreads
    connections among sockets of one port (SO_REUSEPORT), else one for all.

    A port that anything already listens on is refused (OSError), even when
    that is another server with SO_REUSEPORT sockets: a first socket without
    the option checks it, then makes way for the workers' sockets. (Linux
    spreads connections among such sockets; some other systems give them all
    to one, which is no worse than a shared socket.)
    """
    first = _listening(host, port, backlog, reuse_port=False)
    if workers == 1 or not hasattr(socket, "SO_REUSEPORT"):
        return [first]
    port = first.getsockname()[1]  # the one chosen, for port 0
    first.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sockets.append(_listening(host, port, backlog, reuse_port=True))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listening(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Forks ``workers`` children running ``run_worker(sock, ready)`` and keeps them alive.

    ``sockets`` (from :func:`bind`): worker ``i`` accepts on ``sockets[i]``,
    or all on one shared socket; a replacement takes its predecessor's. A
    worker calls ``ready()`` once its app is built, and ``announce`` is
    printed when ``workers`` of them have: a server whose workers cannot
    start (an unusable instance folder, say) never claims to be serving.
    """

    def __init__(self, sockets: list[socket.socket], workers: int,
                 run_worker: Callable[[socket.socket, Callable[[], None]], None],
                 announce: str | None = None) -> None:
        self.sockets = sockets
        self.workers = workers
        self.run_worker = run_worker
        self.announce = announce
        self.children: dict[int, tuple[float, int]] = {}  # pid -> (start time, slot)
        self.stopping = False
        self.kill_at = float("inf")
        self._ready_reader, self._ready_writer = os.pipe()
        os.set_blocking(self._ready_reader, False)
        self._ready = 0  # workers that said they serve

    def spawn(self, slot: int) -> None:
        sock = self.sockets[slot % len(self.sockets)]
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for other in self.sockets:  # the other workers' sockets stay theirs
                    if other is not sock:
                        other.close()
                os.close(self._ready_reader)
                self.run_worker(sock, self._worker_ready)
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
        self.children[pid] = (time.monotonic(), slot)
        log.info("started worker %d", pid)

    def _worker_ready(self) -> None:
        """In a worker: tell the parent this worker serves (once)."""
        if self._ready_writer >= 0:
            os.write(self._ready_writer, b".")
            os.close(self._ready_writer)
            self._ready_writer = -1

    def _count_ready(self) -> None:
        """In the parent: count the workers that said they serve; announce when all have."""
        try:
            self._ready += len(os.read(self._ready_reader, 1024))
        except BlockingIOError:
            return
        if self.announce and self._ready >= self.workers and not self.stopping:
            print(self.announce, flush=True)
            self.announce = None

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
        for slot in range(self.workers):
            self.spawn(slot)
        status = 0
        while self.children:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:  # nobody exited: check the stop deadline, then look again
                self._count_ready()
                if time.monotonic() > self.kill_at:
                    for late in self.children:
                        log.error("worker %d did not stop in %.0f s; killing it", late,
                                  STOP_GRACE)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(late, signal.SIGKILL)
                    self.kill_at = float("inf")
                time.sleep(0.1)
                continue
            child = self.children.pop(pid, None)
            if child is None or self.stopping:
                continue
            started, slot = child
            exit_code = os.waitstatus_to_exitcode(code)
            if time.monotonic() - started < MIN_WORKER_LIFETIME:
                log.error("worker %d exited with %d right after starting; stopping", pid,
                          exit_code)
                status = 1
                self.stop()
                continue
            log.warning("worker %d exited with %d; starting a new one", pid, exit_code)
            self.spawn(slot)
        os.close(self._ready_reader)
        os.close(self._ready_writer)
        return status


def serve_forked(run_worker: Callable[[socket.socket, Callable[[], None]], None],
                 sockets: list[socket.socket], workers: int) -> int:
    """Serve on ``sockets`` (see :func:`bind`) from ``workers`` processes until stopped.

    ``run_worker(sock, ready)`` serves on ``sock`` and calls ``ready()`` once it can.
    """
    host, port = sockets[0].getsockname()[:2]
    announce = f"Serving on http://{host}:{port} with {workers} worker processes"
    return Supervisor(sockets, workers, run_worker, announce).run()

