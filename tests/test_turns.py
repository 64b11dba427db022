"""Short requests of a serving process take turns; long ones run beside them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from sentiment.serving.turns import LARGEST_IN_TURN, InTurns, body_size, served_app

Environ = dict[str, Any]


class Overlaps:
    """A WSGI app noting how many requests it serves at once; each takes ``seconds``,
    one with a body over :data:`LARGEST_IN_TURN` bytes ``long_seconds``."""

    def __init__(self, seconds: float = 0.02, long_seconds: float = 0.5) -> None:
        self.seconds = seconds
        self.long_seconds = long_seconds
        self.now = self.most = 0
        self.lock = threading.Lock()
        self.started = threading.Event()

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        self.started.set()
        long = body_size(environ) > LARGEST_IN_TURN
        time.sleep(self.long_seconds if long else self.seconds)
        with self.lock:
            self.now -= 1
        start_response("200 OK", [])
        return [b"ok"]


def request(size: int) -> Environ:
    return {"CONTENT_LENGTH": str(size)}


def serve_together(app: Callable[..., Iterable[bytes]], environs: list[Environ]) -> None:
    threads = [threading.Thread(target=app, args=(environ, lambda *_: None))
               for environ in environs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)


def test_short_requests_run_one_at_a_time() -> None:
    app = Overlaps()
    serve_together(InTurns(app), [request(size) for size in (0, 2_000, 60_000, 0)])
    assert app.most == 1
    alone = Overlaps()
    serve_together(alone, [request(size) for size in (0, 2_000, 60_000, 0)])
    assert alone.most > 1  # what the turns are for: threads otherwise overlap


def test_a_long_request_runs_beside_short_ones() -> None:
    app = Overlaps()
    turns = InTurns(app)
    batch = threading.Thread(target=turns, args=(request(LARGEST_IN_TURN + 1), lambda *_: None))
    batch.start()
    assert app.started.wait(5)
    serve_together(turns, [request(100), request(100)])
    # The short ones ran while the batch did (it takes 0.5 s, they 0.02 s each):
    # they waited for each other, never for it.
    assert app.now == 1 and app.most == 2
    batch.join(timeout=10)


def test_an_error_gives_the_turn_back() -> None:
    def failing(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("the app failed")

    turns = InTurns(failing)
    for _ in range(2):  # the second would wait for ever for a turn never given back
        with pytest.raises(RuntimeError):
            turns(request(10), lambda *_: None)
    assert not turns._turn.locked()


def test_body_size_reads_what_is_declared() -> None:
    assert body_size({}) == 0
    assert body_size({"CONTENT_LENGTH": ""}) == 0
    assert body_size({"CONTENT_LENGTH": "1234"}) == 1234
    assert body_size({"CONTENT_LENGTH": "12x"}) == 0  # waitress refuses it before the app
    assert body_size({"CONTENT_LENGTH": "-5"}) == 0


@pytest.mark.both_backends
def test_turns_are_taken_unless_the_log_is_on_a_database_server(make_app, backend) -> None:
    """A request on PostgreSQL spends much of its time waiting for the network: with
    turns, no other request of its process could use that time."""
    app = make_app()
    wrapped = served_app(app)
    assert (wrapped is app) == (backend is not None)
    assert isinstance(wrapped, InTurns) == (backend is None)
