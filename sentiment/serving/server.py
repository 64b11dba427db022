"""Several processes on one port: gunicorn, configured for this app.

One Python process runs Python on one core at a time (the GIL), so a server
runs one worker process per core. gunicorn's arbiter does what the app
needs of a process manager:

* **Preloaded libraries and base model.** The arbiter imports the libraries
  and loads the base model before forking, so every worker shares those pages
  (about 8 MB of weights and 100 MB of libraries). Each worker then builds
  its own app after the fork (``preload_app`` stays off): SQLite connections
  and ``flock`` descriptors must not cross a fork.
* **waitress inside each worker** (:mod:`sentiment.serving.worker`): its event
  loop reads request heads and holds idle or slow connections without a
  thread, and a few request threads serve whole requests, so that neither a
  long request (a batch of 1,000 reviews) nor a flood of silent connections
  stalls the others.
* **A listening socket per worker** (``reuse_port``): the kernel spreads new
  connections among the workers by a hash. With one socket shared by all,
  keep-alive clients tended to pile onto whichever worker woke first.
* **Graceful stop and reload.** TERM: each worker finishes its requests,
  checkpoints and exits; INT (Ctrl-C): the same, without waiting for requests
  in flight. HUP: the base model is loaded again from its folder and new
  workers replace the old ones, gracefully. A worker that dies is replaced; one
  that cannot even build its app stops the server.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from sentiment.models import load_model, shares_across_fork
from sentiment.models.protocol import ServedModel
from sentiment.serving.process import (
    pin_to_one_cpu,
    prepare_process,
    start_serving,
    stop_serving,
)
from sentiment.settings import Settings
from sentiment.web.factory import StartupError, create_app

log = logging.getLogger(__name__)

# How long a stopping worker may take for its requests and final checkpoint
# before it is killed (the verdicts are in the log either way; the next start
# replays them).
STOP_GRACE = 30


class Server(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's arbiter serving :func:`~sentiment.web.factory.create_app` apps."""

    def __init__(self, settings: Settings, workers: int, threads: int,
                 announce: Callable[[], None]) -> None:
        self.settings = settings
        self.workers = workers
        self.threads = threads
        self.base_model = self._preload()
        self._ready = _ReadyCount(workers, announce)
        super().__init__()

    def _preload(self) -> ServedModel | None:
        """The base model, loaded once for every worker when it can cross a fork."""
        model_dir = self.settings.model_dir
        if shares_across_fork(model_dir):
            return load_model(model_dir)
        return None

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": [f"{_bracketed(self.settings.host)}:{self.settings.port}"],
            "workers": self.workers,
            "threads": self.threads,
            "worker_class": "sentiment.serving.worker.WaitressWorker",
            "reuse_port": True,
            "preload_app": False,
            "graceful_timeout": STOP_GRACE,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "sentiment",
            # gunicorn's control socket (one path per user) would be shared by
            # every server of that user; nothing here uses it.
            "control_socket_disable": True,
            "post_fork": self._pin_worker,
            "post_worker_init": self._worker_ready,
            "worker_exit": _worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """In each worker, after the fork: its own app around the shared base model."""
        try:
            app = create_app(base_model=self.base_model)
        except StartupError as exc:
            print(f"error: {exc.format_message()}", file=sys.stderr, flush=True)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)  # the arbiter then stops the server
        start_serving(app)
        return app

    def reload(self) -> None:
        """HUP: serve the base model as it now is on disk (a retrained one, say)."""
        try:
            self.base_model = self._preload()
        except Exception:  # keep serving the model that works
            log.exception("HUP: cannot load the model; the workers keep the current one")
        super().reload()

    def _pin_worker(self, arbiter: Any, worker: Any) -> None:
        """A deep model's worker runs on one CPU of its own (one in turn per worker).

        A Keras step on JAX gives other bits on one thread than on two, and the
        log must replay to the same model in every process
        (docs/deep-backend-study.md). The linear model needs no pinning.
        """
        if self.base_model is None:
            pin_to_one_cpu(worker.age)

    def _worker_ready(self, worker: Any) -> None:
        self._ready.one_more()


def _worker_exit(arbiter: Any, worker: Any) -> None:
    """In a worker on its way out: stop the app's threads and checkpoint."""
    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        stop_serving(app)


class _ReadyCount:
    """Announces the server once every worker of the first generation has built its app.

    Each worker writes a byte to a pipe once its app is built; a thread of the
    arbiter counts them.
    """

    def __init__(self, workers: int, announce: Callable[[], None]) -> None:
        self._read, self._write = os.pipe()
        os.set_inheritable(self._write, True)
        self._thread = threading.Thread(target=self._count, args=(workers, announce),
                                        name="ready-count", daemon=True)
        self._thread.start()

    def one_more(self) -> None:
        os.write(self._write, b"1")

    def _count(self, workers: int, announce: Callable[[], None]) -> None:
        seen = 0
        while seen < workers:
            chunk = os.read(self._read, workers)
            if not chunk:
                return
            seen += len(chunk)
        announce()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_port_free(host: str, port: int) -> None:
    """OSError if ``host:port`` cannot be bound.

    The workers bind with SO_REUSEPORT, which would let them share the port
    with another server already on it (the kernel would split the clients
    between the two). A probe without that option is refused by any socket
    already bound there, so a port in use is told at once.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers do (and the workers will): connections of a server that just
        # stopped, left in TIME_WAIT, do not make the port unusable.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def serve(settings: Settings, workers: int, threads: int) -> int:
    """Run the server until it is stopped; its exit status."""
    prepare_process()
    server = Server(settings, workers, threads, lambda: print(
        f"Serving on http://{_bracketed(settings.host)}:{settings.port}", flush=True))
    try:
        server.run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except HaltServer as exc:
        # Raised again while halting when a second worker fails to boot too
        # (the arbiter reaps it in the middle of stopping).
        print(f"error: {exc.reason}", file=sys.stderr)
        return int(exc.exit_status)
    finally:
        sys.stdout.flush()
    return 0
