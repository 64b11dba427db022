"""Measure the running app on loopback with a bounded load generator of its own.

``python -m bench.serving`` starts ``app.py`` (gunicorn) on a free loopback
port with a fresh instance folder, then, with 8 concurrent keep-alive
clients (connections that one thread drives) and ``--seconds`` per figure:

* ``POST /api/predict`` with one review of about 1,300 characters,
* the HTML results page (``POST /results`` with its CSRF token),
* verdicts (``POST /api/feedback`` on predictions made beforehand),
* then, from one client, the 25,000 official test reviews (from ``--archive`` or
  $ACLIMDB_ARCHIVE; else as many variants of the benchmark's review) posted to
  ``/api/predict`` 1,000 at a time, once through: reviews/s over HTTP,

plus sequential single-review latency, memory after start and after load
(RSS and PSS summed over the app's processes), and start-up time with 10,000
stored verdicts; all of it once per ``--workers`` value (default: 1, then
app.py's default of one pre-forked process per CPU core). Each load figure
also gives the app's CPU time per request, steadier than requests/s on a
shared machine, and the load generator's own, which it takes from the same
cores: together they bound what the machine can serve at all. ``--figures`` and
``--startup-verdicts 0`` narrow a run down, for paired comparisons of one
figure; ``--threads 4 1`` measures each thread count in turn. The app's
per-client rate limits are off (every request comes from one address), or
with ``--rate-limits`` on but far above the load, to measure what checking
them costs. Every loop is bounded in time and count and only talks to 127.0.0.1.

Ratios are only printed against a baseline measured in the same run, on the
same machine with the same load generator and settings (figures from another
day and another host compare nothing): first the tutorial's app
(``bench/tutorial_app.py``: waitress, 4 threads, the book preset's pickles
from ``--tutorial-model DIR`` or trained for the run from ``--archive`` or
$ACLIMDB_ARCHIVE) is measured: its results page, its verdicts
(``POST /thanks``), its memory, and its start-up with the same number of
stored verdicts (it has no JSON API, so no predict or sequential figure).
``--no-baseline`` skips it. ``--floor`` also measures an empty Flask page
(``bench/floor_app.py``, served alike) under the results page's load: the least
any Flask page served so costs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import itertools
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import psutil

from bench import library_versions, versions_line
from bench.services import free_port
from bench.tutorial_app import THREADS as TUTORIAL_THREADS
from bench.tutorial_app import TutorialError, check_model_dir
from sentiment.serving.process import usable_cores
from sentiment.serving.server import STOP_GRACE
from sentiment.settings import DEFAULT_THREADS
from train.data import DataError, given_archive, resolve_archive

ROOT = Path(__file__).resolve().parent.parent
REVIEW = (
    "I went into this film expecting very little, since the trailer made it look like yet "
    "another loud summer blockbuster, but I came out genuinely moved. The lead performance "
    "is subtle and generous, the kind of work that makes you forget you are watching an "
    "actor at all. The script takes its time, letting quiet scenes breathe instead of "
    "rushing from one set piece to the next, and the photography finds real beauty in "
    "ordinary places: a kitchen at dawn, a bus stop in the rain, a crowded hospital "
    "corridor. It is not perfect. The middle third drags a little, and one subplot about a "
    "business rival never quite pays off. The score is sometimes too insistent, telling us "
    "what to feel when the images already do. But these are small complaints about a movie "
    "that is smart, warm and surprisingly funny. The final twenty minutes are as good as "
    "anything I have seen this year, and the last shot stayed with me for days. I would "
    "happily watch it again, and I will be recommending it to everyone I know who still "
    "believes that cinema can be both entertaining and honest about being human at once."
)

FIGURES = ("predict", "page", "verdict", "sequential", "batch")  # load figures, in order
PREDICT = "POST /api/predict"
BATCH = 1000  # reviews per request of the batch figure
BATCHES = "POST /api/predict, 1,000 reviews"
PAGE = "HTML results page"
FLOOR = "empty Flask page"
VERDICT = "POST /api/feedback (verdict)"
TUTORIAL_VERDICT = "POST /thanks (verdict)"
FORM = "application/x-www-form-urlencoded"
TARGETS = {
    "predict_per_s": 750,
    "predict_p99_ms": 25,
    "verdicts_per_s": 400,
    "startup_s": 2.0,
    "rss_mb": 250,
    "batch_reviews_per_s": 12_000,
    "page_cpu_ms": 1.5,
}


LIFTED_RATE_LIMITS = {
    "SENTIMENT_RATE_LIMITS": "true",
    "SENTIMENT_PREDICT_LIMIT": "10000000 per minute; 100000000 per hour",
    "SENTIMENT_VERDICT_LIMIT": "10000000 per minute; 100000000 per hour",
}


@dataclass
class Server:
    """An app under test in a subprocess on a loopback port: our app.py by default.

    Subclasses (:class:`TutorialServer`) only say which command to run and
    which page answers once it is up, so that both apps are started, timed
    and accounted for (memory, CPU) by the same code.
    """

    instance: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    env_extra: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    threads: int = DEFAULT_THREADS  # app.py's default, passed explicitly (not $THREADS)
    rate_limits: bool = False
    health_path: ClassVar[str] = "/api/health"  # answers 200 once the app serves
    label: ClassVar[str] = "app.py"
    # Printed once every worker has built its app and listens. Until then the
    # kernel hands new connections to the workers already listening, and the
    # load generator's keep-alive connections would all stay on the first.
    ready_line: ClassVar[str | None] = "Serving on"

    def command(self) -> list[str]:
        """The command line that serves the app on ``self.port``."""
        return [sys.executable, str(ROOT / "app.py"), "--port", str(self.port),
                "--workers", str(self.workers), "--threads", str(self.threads)]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "INSTANCE_PATH": str(self.instance),
            # The bench measures throughput, from one address: per-client rate
            # limits would refuse most of it. Either off, or (to measure what
            # checking them costs) on but far above the load.
            **(LIFTED_RATE_LIMITS if self.rate_limits else {"SENTIMENT_RATE_LIMITS": "false"}),
            **self.env_extra,
        }

    def start(self, timeout: float = 60.0) -> float:
        """Start the app and wait until its health path answers; returns seconds taken."""
        env = self.environment()
        started = time.perf_counter()
        # The log goes to a file: a pipe nobody reads would fill up and block
        # the app.
        log_path = self.instance / "app.log"
        earlier = log_path.stat().st_size if log_path.exists() else 0  # earlier starts' lines
        with open(log_path, "ab") as log:
            # A session of its own, so that a crash can be staged by killing the
            # server's whole process group (see bench.crash).
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited: " + log_path.read_text()[-2000:])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.health_path)
                if conn.getresponse().status == 200 and (
                        self.ready_line is None
                        or self.ready_line in log_path.read_text()[earlier:]):
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.label} did not answer in time")

    def processes(self) -> list[psutil.Process]:
        return process_tree(self.proc.pid)

    def rss_mb(self) -> float:
        """Resident memory summed over the app's processes (shared pages counted in each)."""
        return sum(p.memory_info().rss for p in self.processes()) / 2**20

    def pss_mb(self) -> float:
        """Proportional set size summed over the processes: shared pages counted once.

        With pre-forked workers, the RSS sum counts the libraries they share
        with their parent once per process; PSS is what the app really holds.
        """
        return sum(p.memory_full_info().pss for p in self.processes()) / 2**20

    def memory(self) -> dict[str, float]:
        return {"rss_mb": self.rss_mb(), "pss_mb": self.pss_mb(),
                "processes": len(self.processes())}

    def cpu_seconds(self) -> float:
        """User + system CPU time of the app's processes so far."""
        return cpu_seconds_of(self.processes())

    def stop(self) -> None:
        """TERM, then wait past gunicorn's grace period: a worker finishing a checkpoint
        (seconds for a deep model's holdout) is killed at its end, never left behind."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=STOP_GRACE + 30)

    def kill(self) -> None:
        """SIGKILL to the whole process group (arbiter and workers), as a machine dies: a
        worker that outlived its arbiter would keep the port."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class PlainServer(Server):
    """A one-process Flask app under waitress's 4 threads, with none of our app's
    settings or start-up line: the tutorial's app and the floor."""

    threads: int = TUTORIAL_THREADS
    health_path: ClassVar[str] = "/"  # no health page: the form answers once it serves
    ready_line: ClassVar[str | None] = None  # one process: serving once it answers

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env_extra}


@dataclass
class TutorialServer(PlainServer):
    """The tutorial's app (bench/tutorial_app.py).

    ``model``: the folder with the book preset's pickles. Its verdicts go to
    ``reviews.sqlite`` in the instance folder, which it replays at each start.
    """

    model: Path = field(kw_only=True)
    label: ClassVar[str] = "the tutorial's app"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.tutorial_app", "--model", str(self.model),
                "--db", str(self.instance / "reviews.sqlite"), "--port", str(self.port)]


@dataclass
class FloorServer(PlainServer):
    """An empty Flask page (bench/floor_app.py)."""

    label: ClassVar[str] = "the empty Flask page"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.floor_app", "--port", str(self.port)]


class Client:
    """One keep-alive HTTP connection with a cookie jar of one cookie."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""
        self.headers: http.client.HTTPMessage | None = None  # the last answer's (Retry-After)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        if self.cookie:
            headers["Cookie"] = self.cookie
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        self.headers = response.headers
        if cookie := response.getheader("Set-Cookie"):
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data

    def json(self, path: str, payload: object) -> tuple[int, dict]:
        status, data = self.request("POST", path, json.dumps(payload).encode())
        return status, json.loads(data)


@dataclass
class LoadResult:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = float("nan")  # CPU the app's processes spent meanwhile
    client_cpu_s: float = float("nan")  # CPU this process (the load generator) spent

    def row(self) -> dict[str, float]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "name": self.name,
            "requests": self.requests,
            "errors": self.errors,
            "per_s": self.requests / self.seconds,
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            # Less at the mercy of a shared machine than requests/s: what one
            # request costs the app, wherever the time between went.
            "server_cpu_ms": self.server_cpu_s / max(self.requests, 1) * 1000,
            "client_cpu_ms": self.client_cpu_s / max(self.requests, 1) * 1000,
        }


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and every process under it."""
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def cpu_seconds_of(processes: list[psutil.Process]) -> float:
    """User + system CPU time the processes have spent so far."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def own_cpu_seconds() -> float:
    """User + system CPU time of this process so far (its children not included)."""
    times = os.times()
    return times.user + times.system


def measured(server: Server, run: Callable[[], LoadResult]) -> LoadResult:
    """``run()``, with the CPU time the app's processes and the load generator spent."""
    before, own_before = server.cpu_seconds(), own_cpu_seconds()
    result = run()
    result.server_cpu_s = server.cpu_seconds() - before
    result.client_cpu_s = own_cpu_seconds() - own_before
    return result


def cpu_bound_per_s(row: dict[str, float], cores: int | None = None) -> float:
    """Requests/s the machine's cores could serve at most, at this row's CPU per request.

    The app and the load generator share the cores, so their CPU per request
    together caps the rate, however the work is spread over processes.
    """
    cores = cores or os.cpu_count() or 1
    return cores * 1000 / (row["server_cpu_ms"] + row["client_cpu_ms"])


def http_request(method: str, path: str, body: bytes = b"",
                 content_type: str = "application/json", cookie: str = "") -> bytes:
    """One HTTP/1.1 request, as sent on a keep-alive connection."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if body:
        lines.append(f"Content-Type: {content_type}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def take_response(buffer: bytearray) -> int | None:
    """The status of the whole response at the start of ``buffer``, removed from it;
    None while it is still arriving. (The app's responses all give their length.)"""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = CONTENT_LENGTH.search(buffer, 0, end + 2)
    size = end + 4 + (int(length.group(1)) if length else 0)
    if len(buffer) < size:
        return None
    status = int(buffer[9:12])
    del buffer[:size]
    return status


@dataclass
class Connection:
    """A keep-alive connection of :func:`load` and the client's next request."""

    sock: socket.socket
    next_request: Callable[[], bytes | None]
    sent_at: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)


def load(
    name: str,
    port: int,
    clients: int,
    seconds: float,
    make_call: Callable[[Client, int], Callable[[], bytes | None]],
    max_requests: int = 10**6,
) -> LoadResult:
    """``clients`` keep-alive connections, each sending its next request as soon as
    the last is answered, for ``seconds`` (or until ``max_requests`` are sent).

    ``make_call(client, i)`` prepares client ``i`` (a page's cookie, say) and
    returns what gives its next request, or None when it has no more. One
    thread drives every connection with a selector: a thread per client took
    turns at this process's GIL, which cost the generator 0.33-0.51 ms of CPU
    per request on the app's own cores (0.10-0.27 ms like this: docs/measurements.md)
    and delayed noting the responses that arrived together.
    """
    connections = []
    for i in range(clients):
        client = Client(port)
        next_request = make_call(client, i)
        client.conn.close()  # it only prepared the client: the load has its own sockets
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.append(Connection(sock, next_request))
    latencies: list[float] = []
    errors = 0
    budget = max_requests
    deadline = time.perf_counter() + seconds

    def send(conn: Connection) -> bool:
        nonlocal budget
        request = conn.next_request() if budget and time.perf_counter() < deadline else None
        if request is None:
            return False
        budget -= 1
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(request)
        return True

    selector = selectors.DefaultSelector()
    began = time.perf_counter()
    try:
        for conn in connections:
            if send(conn):
                selector.register(conn.sock, selectors.EVENT_READ, conn)
        while selector.get_map():
            ready = selector.select(timeout=30)
            if not ready:
                raise RuntimeError(f"{name}: no response in 30 s")
            for key, _ in ready:
                conn = key.data
                chunk = conn.sock.recv(1 << 16)
                if not chunk:
                    raise RuntimeError(f"{name}: the app closed a connection")
                conn.buffer += chunk
                status = take_response(conn.buffer)
                if status is None:
                    continue
                latencies.append((time.perf_counter() - conn.sent_at) * 1000)
                errors += status >= 400
                if not send(conn):
                    selector.unregister(conn.sock)
        elapsed = time.perf_counter() - began
    finally:
        selector.close()
        for conn in connections:
            conn.sock.close()
    return LoadResult(name, len(latencies), errors, elapsed, latencies)


def tutorial_page_call(client: Client, _: int) -> Callable[[], bytes]:
    """The tutorial's results page: its form has no CSRF token and sets no cookie."""
    body = urllib.parse.urlencode({"moviereview": REVIEW}).encode()
    request = http_request("POST", "/results", body, FORM)
    return lambda: request


def tutorial_verdict_call_factory() -> Callable[[Client, int], Callable[[], bytes]]:
    """Verdicts on REVIEW, two in three "Correct" as for ours, for as long as the load runs.

    The tutorial's page sends the review and its label back with the verdict
    (it needs no prediction made beforehand); REVIEW reads positive.
    """
    counter = itertools.count()
    requests = {
        button: http_request("POST", "/thanks", urllib.parse.urlencode(
            {"feedback_button": button, "review": REVIEW, "prediction": "positive"}).encode(),
            FORM)
        for button in ("Correct", "Incorrect")
    }

    def make(client: Client, _: int) -> Callable[[], bytes]:
        return lambda: requests["Correct" if next(counter) % 3 else "Incorrect"]

    return make


def predict_call(client: Client, _: int) -> Callable[[], bytes]:
    request = http_request("POST", "/api/predict", json.dumps({"review": REVIEW}).encode())
    return lambda: request


def page_call(client: Client, _: int) -> Callable[[], bytes]:
    _, html = client.request("GET", "/")  # the form's CSRF token and its session cookie
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()
    body = urllib.parse.urlencode({"csrf_token": token, "review": REVIEW}).encode()
    request = http_request("POST", "/results", body, FORM, client.cookie)
    return lambda: request


def distinct_review(i: int) -> str:
    """REVIEW made the i-th of its kind: the app learns one verdict per client and text
    (later ones are repeats, stored but not learned), and a verdict must cost its update."""
    return f"{REVIEW} Seen {i} times."


def make_predictions(port: int, n: int) -> list[str]:
    client = Client(port)
    ids: list[str] = []
    while len(ids) < n:
        batch = [distinct_review(i) for i in range(len(ids), min(len(ids) + 1000, n))]
        status, data = client.json("/api/predict", {"reviews": batch})
        if status != 200:
            raise RuntimeError(f"batch prediction failed: {status} {data}")
        ids += [r["prediction_id"] for r in data["results"]]
    return ids


def verdict_call_factory(ids: list[str]) -> Callable[[Client, int], Callable[[], bytes | None]]:
    """Clients share one queue of prepared predictions; each gets one verdict."""
    queue = iter(enumerate(ids))

    def make(client: Client, _: int) -> Callable[[], bytes | None]:
        def call() -> bytes | None:
            i, pid = next(queue, (0, None))
            if pid is None:
                return None  # every prepared prediction has its verdict
            body = json.dumps({"prediction_id": pid, "correct": i % 3 != 0}).encode()
            return http_request("POST", "/api/feedback", body)

        return call

    return make


def batch_reviews(archive: str | None) -> tuple[list[str], str]:
    """The reviews the batch figure sends, and what they are: the 25,000 official test
    reviews from ``archive`` (else $ACLIMDB_ARCHIVE), or as many made from REVIEW."""
    path = given_archive(archive)
    if path is not None and path.is_file():
        from train.data import iter_archive

        return [r.review for r in iter_archive(path) if r.split == "test"], "the test reviews"
    return [distinct_review(i) for i in range(25_000)], "variants of the benchmark's review"


def batch_figure(reviews: list[str]) -> Figure:
    """One client posting ``reviews`` to /api/predict, :data:`BATCH` at a time, once
    through: reviews/s over HTTP, JSON both ways and every prediction recorded."""
    bodies = [json.dumps({"reviews": reviews[i:i + BATCH]}).encode()
              for i in range(0, len(reviews), BATCH)]

    def make(client: Client, _: int) -> Callable[[], bytes | None]:
        queue = iter(bodies)
        return lambda: (None if (body := next(queue, None)) is None
                        else http_request("POST", "/api/predict", body))

    def figure(server: Server) -> LoadResult:
        return measured(server, lambda: load(BATCHES, server.port, 1, 3600, make,
                                             max_requests=len(bodies)))
    return figure


def sequential_latency(port: int, n: int) -> LoadResult:
    return load("single review, sequential", port, 1, 3600, predict_call, max_requests=n)


def seed_verdicts(server: Server, n: int) -> None:
    """Store ``n`` verdicts through our running app (on predictions made first)."""
    ids = make_predictions(server.port, n)
    check_seeded(load("seed verdicts", server.port, 8, 600, verdict_call_factory(ids),
                      max_requests=n))


def seed_tutorial_verdicts(server: Server, n: int) -> None:
    """Store ``n`` verdicts through the tutorial's running app (POST /thanks)."""
    check_seeded(load("seed verdicts", server.port, 8, 600, tutorial_verdict_call_factory(),
                      max_requests=n))


def check_seeded(result: LoadResult) -> None:
    if result.errors:
        raise RuntimeError(f"{result.errors} verdicts failed while seeding")


def startup_with_verdicts(
    n: int, make_server: Callable[[Path], Server], seed: Callable[[Server, int], None]
) -> dict[str, float]:
    """Store ``n`` verdicts through a running server, stop it, time a fresh start.

    ``make_server(instance)``: a new :class:`Server` (on a free port) for the
    instance folder; ``seed(server, n)`` stores the verdicts.
    """
    with tempfile.TemporaryDirectory() as tmp:
        server = make_server(Path(tmp))
        server.start()
        try:
            seed(server, n)
        finally:
            server.stop()
        server = make_server(Path(tmp))
        seconds = server.start()
        memory = server.memory()
        server.stop()
        return {"verdicts": n, "startup_s": seconds, **memory}


Figure = Callable[[Server], LoadResult]  # one measured load figure on a started server


def run_figures(
    make_server: Callable[[Path], Server],
    figures: list[Figure],
    startup_verdicts: int,
    seed: Callable[[Server, int], None],
) -> dict[str, object]:
    """Start a server, take its memory, run ``figures`` in turn, take its memory again;
    then the start-up figure with ``startup_verdicts`` stored verdicts (0: none).

    The same sequence for either app, so that their figures compare.
    """
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = make_server(Path(tmp))
        results["startup_empty_s"] = server.start()
        try:
            results["memory_after_start"] = server.memory()
            rows = [figure(server) for figure in figures]
            results["memory_after_load"] = server.memory()
        finally:
            server.stop()
    results["load"] = [r.row() for r in rows]
    if startup_verdicts:
        results["startup"] = startup_with_verdicts(startup_verdicts, make_server, seed)
    return results


def under_load(args: argparse.Namespace, name: str,
               make_call: Callable[[Server], Callable[[Client, int], Callable[[], bytes | None]]]
               ) -> Figure:
    """The figure ``name``: ``args.clients`` clients for ``args.seconds``, their requests
    from ``make_call(server)`` (see :func:`load`), with the CPU each side spent."""
    def figure(server: Server) -> LoadResult:
        call = make_call(server)
        return measured(server, lambda: load(name, server.port, args.clients, args.seconds,
                                             call))
    return figure


def our_figures(args: argparse.Namespace) -> list[Figure]:
    """The load figures named in ``args.figures``, for our app, in the order of FIGURES."""

    def verdicts(server: Server) -> Callable[[Client, int], Callable[[], bytes | None]]:
        return verdict_call_factory(make_predictions(server.port, int(args.seconds * 1500)))

    def sequential(server: Server) -> LoadResult:
        return measured(server, lambda: sequential_latency(server.port, args.sequential))

    figures = {"predict": under_load(args, PREDICT, lambda _: predict_call),
               "page": under_load(args, PAGE, lambda _: page_call),
               "verdict": under_load(args, VERDICT, verdicts),
               "sequential": sequential}
    if "batch" in args.figures:
        figures["batch"] = batch_figure(args.batch_reviews)
    return [figures[name] for name in FIGURES if name in args.figures]


def tutorial_figures(args: argparse.Namespace) -> list[Figure]:
    """The figures named in ``args.figures`` that the tutorial's app has (no JSON API:
    no predict or sequential figure), with the same settings as ours."""
    figures = {"page": under_load(args, PAGE, lambda _: tutorial_page_call),
               "verdict": under_load(args, TUTORIAL_VERDICT,
                                     lambda _: tutorial_verdict_call_factory())}
    return [figures[name] for name in FIGURES if name in figures and name in args.figures]


def measure(args: argparse.Namespace, workers: int, threads: int) -> dict[str, object]:
    """The figures named in ``args.figures`` for the app served by ``workers`` processes
    of ``threads`` threads."""
    serving = {"workers": workers, "threads": threads, "rate_limits": args.rate_limits}
    env = {"SENTIMENT_MODEL_DIR": str(args.model_dir)} if args.model_dir else {}
    make_server = functools.partial(Server, **serving, env_extra=env)
    return {**serving, **run_figures(make_server, our_figures(args), args.startup_verdicts,
                                     seed_verdicts)}


def measure_tutorial(args: argparse.Namespace, model: Path) -> dict[str, object]:
    """The tutorial's figures (those of ``args.figures`` it has), memory and start-up."""
    make_server = functools.partial(TutorialServer, model=model)
    return {"app": "tutorial", "workers": 1, "threads": TUTORIAL_THREADS,
            **run_figures(make_server, tutorial_figures(args), args.startup_verdicts,
                          seed_tutorial_verdicts)}


def measure_floor(args: argparse.Namespace) -> dict[str, object]:
    """The empty Flask page's CPU and rate under the results page's load (the tutorial's
    form, which it echoes): what no Flask page served so costs less than."""
    return run_figures(FloorServer, [under_load(args, FLOOR, lambda _: tutorial_page_call)],
                       0, lambda server, n: None)


class BaselineError(Exception):
    """The tutorial's app cannot be measured as asked; main prints it in one line."""


def check_tutorial_model(folder: Path) -> Path:
    """``folder``, if it holds the book preset's pickles the tutorial's app loads."""
    try:
        return check_model_dir(folder)
    except TutorialError as exc:
        raise BaselineError(f"--tutorial-model: {exc}") from None


def baseline_archive(archive: str | None) -> Path:
    """The aclImdb archive to train the book preset on: ``archive``, else $ACLIMDB_ARCHIVE.

    Never a download (what ``resolve_archive`` falls back to): a benchmark
    that fetches 84 MB unasked would measure the network too.
    """
    if given_archive(archive) is None:
        raise BaselineError("the tutorial's app needs the book preset's model: set "
                            "ACLIMDB_ARCHIVE to the aclImdb archive (or pass --archive PATH) "
                            "to train it, pass --tutorial-model DIR, or pass --no-baseline")
    try:
        return resolve_archive(archive)
    except DataError as exc:
        raise BaselineError(str(exc)) from exc


def train_book(archive: Path, folder: Path) -> Path:
    """Train the book preset into ``folder`` (a subprocess, ~15 s); returns its pickles' folder."""
    print("training the book preset for the tutorial's app (about 15 s)...",
          file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "train", "--preset", "book", "--archive", str(archive),
               "--out", str(folder / "pkl"), "--report-dir", str(folder / "reports"),
               "--csv", str(folder / "movie_data.csv"), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise BaselineError(f"training the book preset failed ({done.returncode}): {lines[-1]}")
    return check_tutorial_model(folder / "pkl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="per load figure (default 20)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--sequential", type=int, default=2000, help="requests for the single-client figure"
    )
    parser.add_argument("--startup-verdicts", type=int, default=10_000,
                        help="stored verdicts for the start-up figure (0: skip it)")
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES),
                        help="load figures to measure (default: all)")
    default_workers = sorted({1, usable_cores()})
    parser.add_argument("--workers", type=int, nargs="+", default=default_workers,
                        help="app processes; one full measurement per value (default: 1 and "
                             "app.py's default, one per CPU core: "
                             f"{' '.join(map(str, default_workers))} here)")
    parser.add_argument("--threads", type=int, nargs="+", default=[DEFAULT_THREADS],
                        help="request threads per process; one full measurement per value "
                             f"and --workers value (default: app.py's, {DEFAULT_THREADS})")
    parser.add_argument("--rate-limits", action="store_true",
                        help="keep the app's per-client rate limits on (set far above the "
                             "load), to measure what checking them costs (default: off)")
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument("--tutorial-model", type=Path, metavar="DIR",
                          help="folder with the book preset's classifier.pkl and stopwords.pkl "
                               "for the tutorial's app (default: train them for this run)")
    baseline.add_argument("--no-baseline", action="store_true",
                          help="do not measure the tutorial's app (no ratios printed)")
    parser.add_argument("--archive", metavar="PATH",
                        help="aclImdb archive to train the book preset on when no "
                             "--tutorial-model is given (default: $ACLIMDB_ARCHIVE)")
    parser.add_argument("--floor", action="store_true",
                        help="also measure an empty Flask page (bench/floor_app.py) under "
                             "the results page's load: the floor under any page")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--model-dir", type=Path,
                        help="serve this model folder (a deep model's, say) instead of "
                             "pkl_objects/")
    args = parser.parse_args(argv)
    if args.model_dir and not (args.model_dir / "manifest.json").is_file():
        print(f"error: --model-dir: {args.model_dir} holds no manifest.json", file=sys.stderr)
        return 2

    model = archive = None
    try:  # before anything is measured: a run must not fail after minutes
        if args.tutorial_model:
            model = check_tutorial_model(args.tutorial_model)
        elif not args.no_baseline:
            archive = baseline_archive(args.archive)
    except BaselineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    versions = library_versions()
    print(versions_line(versions))
    with tempfile.TemporaryDirectory() as tmp:
        if archive is not None:
            try:
                model = train_book(archive, Path(tmp))
            except (BaselineError, subprocess.TimeoutExpired) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        tutorial = measure_tutorial(args, model) if model is not None else None
    floor = measure_floor(args) if args.floor else None
    args.batch_reviews, batch_source = (batch_reviews(args.archive) if "batch" in args.figures
                                        else ([], ""))
    runs = [{**measure(args, workers, threads), "batch_source": batch_source}
            for workers in args.workers for threads in args.threads]
    if tutorial is not None:
        print_tutorial(tutorial)
    else:
        print("\n== the tutorial's app: not measured in this run (--no-baseline) ==")
    if floor is not None:
        [row] = floor["load"]
        print(f"\n== the floor: {FLOOR} (bench/floor_app.py, 1 process, {TUTORIAL_THREADS} "
              f"threads), in this run ==\n{row['server_cpu_ms']:.2f} ms of CPU per page, "
              f"{row['per_s']:.0f} pages/s under the results page's load")
    for results in runs:
        print_table(results, tutorial)
    if args.json:
        report = {"versions": versions, "tutorial": tutorial, "floor": floor, "runs": runs}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_rows(rows: list[dict]) -> None:
    """The load figures as a table, the same for either app."""
    print(f"{'figure':<30}{'req':>8}{'err':>5}{'req/s':>9}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'p99 ms':>8}{'cpu ms':>8}{'gen ms':>8}")
    for r in rows:
        print(
            f"{r['name']:<30}{r['requests']:>8}{r['errors']:>5}{r['per_s']:>9.0f}"
            f"{r['p50_ms']:>8.2f}{r['p95_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['server_cpu_ms']:>8.2f}"
            f"{r['client_cpu_ms']:>8.2f}"
        )
    print("(cpu ms: CPU time of the app's processes per request; gen ms: the load "
          "generator's, on the same cores)")


def memory_line(results: dict) -> str:
    start, after = results["memory_after_start"], results["memory_after_load"]
    return (
        f"memory after start: RSS {start['rss_mb']:.0f} MB, PSS {start['pss_mb']:.0f} MB; "
        f"after load: RSS {after['rss_mb']:.0f} MB, PSS {after['pss_mb']:.0f} MB "
        f"({after['processes']} process{'es' if after['processes'] > 1 else ''}"
    )


def print_tutorial(results: dict) -> None:
    """The tutorial's figures, in the format of ours (:func:`print_table`)."""
    print(f"\n== the tutorial's app (1 process, {results['threads']} threads), "
          "measured in this run ==")
    print_rows(results["load"])
    print("\n" + memory_line(results) + ")")
    if s := results.get("startup"):
        print(f"start-up with {s['verdicts']:,} stored verdicts (it replays them all before "
              f"serving): {s['startup_s']:.2f} s; empty: {results['startup_empty_s']:.2f} s")


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def print_table(results: dict, tutorial: dict | None = None) -> None:
    """Our figures, each compared with the tutorial's of this run when it was measured."""
    workers = results["workers"]
    limits = "on, far above the load" if results.get("rate_limits") else "off"
    print(f"\n== {workers} worker process{'es' if workers > 1 else ''}, "
          f"{results['threads']} thread{'' if results['threads'] == 1 else 's'} "
          f"each, rate limits {limits} ==")
    print_rows(results["load"])
    rows = {r["name"]: r for r in results["load"]}
    theirs = {r["name"]: r for r in tutorial["load"]} if tutorial else {}
    memory = f"; target < {TARGETS['rss_mb']} MB"
    if tutorial:
        after = tutorial["memory_after_load"]
        memory += (f"; the tutorial's after load RSS {after['rss_mb']:.0f} MB, "
                   f"PSS {after['pss_mb']:.0f} MB in this run")
    print("\n" + memory_line(results) + memory + ")")
    if s := results.get("startup"):
        their_start = (tutorial or {}).get("startup")
        compared = (f"; the tutorial's {their_start['startup_s']:.2f} s in this run"
                    if their_start else "")
        empty = (f" (the tutorial's {tutorial['startup_empty_s']:.2f} s)" if tutorial else "")
        print(
            f"start-up with {s['verdicts']:,} stored verdicts: {s['startup_s']:.2f} s "
            f"(target < {TARGETS['startup_s']} s{compared}); "
            f"empty: {results['startup_empty_s']:.2f} s{empty}"
        )
    if predict := rows.get(PREDICT):
        print(
            f"predictions/s {predict['per_s']:.0f} (target >= {TARGETS['predict_per_s']}), "
            f"p99 {predict['p99_ms']:.1f} ms (target < {TARGETS['predict_p99_ms']}); "
            f"at {predict['server_cpu_ms']:.2f} + {predict['client_cpu_ms']:.2f} ms of CPU "
            f"per request, {os.cpu_count()} cores serve at most "
            f"{cpu_bound_per_s(predict):.0f}/s"
        )
    if page := rows.get(PAGE):
        if their_page := theirs.get(PAGE):
            print(
                f"results pages/s {page['per_s']:.0f}: "
                f"{ratio(page['per_s'], their_page['per_s'])} the tutorial's "
                f"{their_page['per_s']:.0f} in this run (its p99 {their_page['p99_ms']:.1f} ms; "
                f"ours {page['p99_ms']:.1f} ms); CPU per page {page['server_cpu_ms']:.2f} ms "
                f"(target <= {TARGETS['page_cpu_ms']}), "
                f"{ratio(page['server_cpu_ms'], their_page['server_cpu_ms'])} the tutorial's "
                f"{their_page['server_cpu_ms']:.2f} ms"
            )
        else:
            print(f"results pages/s {page['per_s']:.0f} (p99 {page['p99_ms']:.1f} ms); CPU per "
                  f"page {page['server_cpu_ms']:.2f} ms (target <= {TARGETS['page_cpu_ms']})")
    if batch := rows.get(BATCHES):
        print(f"batch predictions over HTTP: {batch['per_s'] * BATCH:,.0f} reviews/s "
              f"(target >= {TARGETS['batch_reviews_per_s']:,}; one client, {BATCH:,} "
              f"reviews a request, {results.get('batch_source', 'reviews')}); "
              f"{batch['server_cpu_ms'] / BATCH * 1000:.0f} us of the app's CPU per review")
    if verdict := rows.get(VERDICT):
        compared = ""
        if their_verdict := theirs.get(TUTORIAL_VERDICT):
            compared = (f": {ratio(verdict['per_s'], their_verdict['per_s'])} the tutorial's "
                        f"{their_verdict['per_s']:.0f} in this run")
        print(f"verdicts/s {verdict['per_s']:.0f}{compared} "
              f"(target >= {TARGETS['verdicts_per_s']})")


if __name__ == "__main__":
    sys.exit(main())
