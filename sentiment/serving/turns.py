"""Short requests of a serving process take turns; long ones run beside them.

Only one thread of a process runs Python at a time (the GIL). With several
request threads busy, every release of the GIL (each SQLite call, numpy
operation on a few hundred elements, socket write) hands it to another
thread, and the first then waits to get it back: switching threads took a
third of a worker's CPU (docs/measurements.md, Serving). One request thread
per process would avoid that, but a long request (a batch of 1,000 long
reviews takes seconds) would then stall every connection of its process.

So requests with a small body (a single review, a verdict, any page) run one
at a time, queued asleep on a lock instead of fighting over the GIL, while a
request with a large body (a batch) runs without taking its turn, beside
them, as every request did before. A thread only takes the lock before
anything else, and no request waits for another to progress (a verdict waits
for other verdicts being committed only while they commit, and with turns
none is), so turns cannot deadlock.

Not with a log on a database server (PostgreSQL): there a request spends much
of its time waiting for the network, time its turn would keep from the others.
SQLite answers from this machine's files, and one writer at a time writes
them anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask

from sentiment.learning.learner import Learner

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Bodies up to this size take turns: a review of the most characters the app
# takes (20,000), form- or JSON-encoded with every character escaped, fits.
LARGEST_IN_TURN = 256 * 1024


def served_app(app: Flask) -> WSGIApplication:
    """The app as a serving process runs it: in turns, unless its log is over a network."""
    learner: Learner = app.extensions["learner"]
    return app if learner.feedback.over_network else InTurns(app)


class InTurns:
    """WSGI middleware: requests with a body of at most ``largest`` bytes one at a time."""

    def __init__(self, app: WSGIApplication, largest: int = LARGEST_IN_TURN) -> None:
        self.app = app
        self.largest = largest
        self._turn = threading.Lock()

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        if body_size(environ) > self.largest:
            return self.app(environ, start_response)
        with self._turn:
            # Flask does all of its work here, teardown included; what it returns
            # is the finished body.
            return self.app(environ, start_response)


def body_size(environ: WSGIEnvironment) -> int:
    """The request body's declared size (waitress declares a chunked body's once read)."""
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0
