"""A gunicorn worker that serves HTTP with waitress: gunicorn runs the processes, waitress
the connections.

gunicorn's own threaded worker (gthread) hands every new connection to a request
thread, which waits there for the request's head: a thousand connections that
send nothing, or a few hundred that send their head one line every few seconds
(slowloris), hold every thread of every worker, and the app answers no one
(``python -m bench.abuse``: no answer in 30 s). waitress reads heads in its
event loop and gives a thread only a whole request, so such connections cost
a file descriptor each, and it closes those that stay silent. gunicorn keeps
doing what it is good at: forking, a socket per worker, restarts, graceful
stops and HUP reloads; this class is the documented way to plug another server
into it (``worker_class``). Requests with small bodies take turns
(:mod:`sentiment.serving.turns`), unless the log is on a database server.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from gunicorn.workers.base import Worker
from waitress.server import create_server

from sentiment.serving.turns import served_app

log = logging.getLogger(__name__)

# Seconds a connection may stay silent (no byte of a request, or between two)
# before waitress closes it: a kept-alive browser reconnects at no cost, a
# connection that only holds a slot is gone soon.
CHANNEL_TIMEOUT = 5
# Open connections per worker process, well above what its threads serve:
# the rest wait in waitress's event loop, not in a thread.
CONNECTION_LIMIT = 4_000


class WaitressWorker(Worker):  # type: ignore[misc]  # gunicorn has no type hints
    """Runs a waitress server on this worker's listening sockets until told to stop."""

    def run(self) -> None:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # a line per busy moment
        body_limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
        server = create_server(
            served_app(self.wsgi),
            sockets=[listener.sock for listener in self.sockets],
            threads=self.cfg.threads,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=1,
            # poll(): select() cannot watch more than 1,024 connections.
            asyncore_use_poll=True,
            # Which proxies to believe is the app's decision (ProxyFix, set by
            # SENTIMENT_TRUSTED_PROXIES); waitress would drop X-Forwarded-For
            # before the app sees it, so every client behind nginx looked like one.
            clear_untrusted_proxy_headers=False,
            # A body a little over the app's limit still gets the app's readable
            # 413; one declared over twice the limit is refused as its head
            # arrives, without being received.
            **({"max_request_body_size": 2 * body_limit} if body_limit else {}),
        )
        serving = threading.Thread(target=server.run, name="waitress", daemon=True)
        serving.start()
        while self.alive and serving.is_alive():
            self.notify()  # the arbiter restarts a worker that stops reporting
            if not self.is_parent_alive():
                break
            serving.join(timeout=1.0)
        self._stop(server)

    def _stop(self, server: Any) -> None:
        """Stop accepting, let the requests in flight finish (within the grace period)."""
        try:
            server.close()  # the listening sockets: no new connection
            server.task_dispatcher.shutdown(timeout=self.cfg.graceful_timeout)
        except Exception:  # stopping anyway; the checkpoint comes next (worker_exit)
            log.exception("waitress did not stop cleanly")

    def is_parent_alive(self) -> bool:
        """False once the arbiter is gone (killed): the worker stops with it."""
        return bool(self.ppid == os.getppid())
