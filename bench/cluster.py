"""Several hosts on one PostgreSQL log and one Redis, under load, while hosts and the database die.

``python -m bench.cluster`` (issue 29, item 5) first measures ONE host (``app.py
--workers 2``, its SQLite log in its instance folder) under the load generator
for ``--baseline-seconds``: the single-host throughput of this run. Then it
starts a throwaway PostgreSQL (``fsync`` on, as in production) and Redis, and
``--hosts`` hosts (``app.py --workers 2``, each with an instance folder of its
own, in a process group of its own) sharing them, and drives them for
``--seconds`` the way clients behind a load balancer would:

* ``--clients`` threads with keep-alive connections; each predicts on a random
  live host, then gives its verdict (honest, but wrong one time in five) on
  another live host. A host that refuses a connection is taken out of rotation,
  as a load balancer's health check would, and the request goes to another; it
  comes back once restarted and answering ``/api/health``.
* Exactly-once accounting: a verdict whose connection broke (its host killed)
  is sent again, with the same prediction id, to another host. 201 is an
  acceptance; 409 on such a retry says the first attempt had committed. A 503
  (the database restarting) is retried after its Retry-After (1 s at most); a
  409 then says the 503 came after the commit (reported apart).
* At 25% of the run host 1's whole process group gets SIGKILL and is
  restarted 2 s later; at 50% host 2's; at 70% PostgreSQL restarts.
* A prober gives a verdict to one host every 100 ms and times how long until
  another host's ``/api/health`` reports it applied.

At the end every host's model digest (each worker's), a rebuild from the log
in a fresh instance folder, and the database are compared: nothing
acknowledged may be missing, nothing applied twice, no 5xx outside the
database's restart, and propagation p99 within 100 ms (probes overlapping the
database's restart excepted: no verdict propagates then). Both runs are timed
after a 3 s warm-up, with CPU per request by role. The figures go to
``reports/cluster.md``; the exit status is 0 only if every check holds, 2 if
PostgreSQL or Redis is not installed (``make services``).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg

from bench import command_line, versions_line
from bench.reviews import make_review
from bench.services import PostgresCluster, RedisServer, binaries, free_port
from bench.serving import (
    ROOT,
    Client,
    Server,
    cpu_seconds_of,
    own_cpu_seconds,
    process_tree,
)
from sentiment.storage.postgres import CONNECT_TIMEOUT, OUTAGE_BACKOFF

KILLS = (0.25, 0.50)  # when host 1, then host 2, get SIGKILL (share of --seconds)
DB_RESTART = 0.70  # when PostgreSQL restarts
RESTART_AFTER = 2.0  # seconds a killed host stays down
WRONG = 0.2  # share of verdicts that say the opposite of the truth
RETRY_AFTER_CAP = 1.0  # the longest a client honours Retry-After here
# After the database is back, a request may still wait CONNECT_TIMEOUT for its pool
# (psycopg_pool tries to reconnect 1 s, then 2 s ... after a failure), then its
# process fails requests fast for OUTAGE_BACKOFF: 5xx up to this long after it is
# back are counted as the restart's (a sub-second restart; 1.9 s was seen).
GRACE = CONNECT_TIMEOUT + OUTAGE_BACKOFF + 1.0
PROBE_EVERY = 0.1
PROBE_TIMEOUT = 5.0  # a verdict not seen on the other host by then counts as this late
P99_TARGET_MS = 100.0
PROBE_REVIEW = "A short review the prober asks about, to see the host's model version."
HEALTH_CALLS = 16  # fresh connections per host: the kernel spreads them over its workers
VERDICT_GIVE_UP = 60.0  # a verdict still unanswered after this long is reported, not retried
# Load before either run's clock starts: each worker vectorises the guard's holdout at
# its first verdict (~1 s of CPU, six workers in the cluster), and opens its connections.
WARMUP = 3.0
# What the hosts must not inherit from the shell running the benchmark.
INHERITED = ("DATABASE_URL", "SENTIMENT_DATABASE_URL", "RATELIMIT_STORAGE_URI",
             "SENTIMENT_RATELIMIT_STORAGE_URI", "INSTANCE_PATH")
REFUSED, BROKEN = "refused", "broken"
ON_BROKEN = "a broken connection (committed by the attempt its host died in)"
# A 503 says "nothing was stored"; a 409 on its retry says the verdict had committed.
ON_503 = "a 503 (the verdict HAD committed, though the 503 said nothing was stored)"
NO_ANSWER = (ConnectionError, http.client.HTTPException, OSError)


class MissingServiceError(Exception):
    """PostgreSQL or Redis is not installed: the benchmark cannot run at all."""


def services() -> str:
    """The ``redis-server`` executable; MissingServiceError (naming ``make services``) without
    it or without PostgreSQL's ``pg_ctl``."""
    redis, postgres = shutil.which("redis-server"), binaries()
    if postgres is None or redis is None:
        missing = " and ".join(name for name, ok in (("pg_ctl (PostgreSQL)", postgres),
                                                     ("redis-server", redis)) if not ok)
        raise MissingServiceError(f"{missing} not installed: run `make services`")
    return redis


@dataclass
class Host(Server):
    """``app.py`` on 127.0.0.1, its environment only what this benchmark gives it.

    A ``DATABASE_URL`` in the shell must not turn the SQLite baseline into a
    PostgreSQL host, nor point a host at another database.
    """

    name: str = "host"

    def command(self) -> list[str]:
        return [*super().command(), "--host", "127.0.0.1"]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in super().environment().items() if k not in INHERITED}
        return {**env, "INSTANCE_PATH": str(self.instance), **self.env_extra}


class Balancer:
    """Which hosts take traffic: a host leaves when it refuses a connection and comes
    back once restarted and healthy, as behind a load balancer's health checks."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts
        self._up = [True] * len(hosts)
        self._lock = threading.Lock()

    def live(self) -> list[int]:
        with self._lock:
            return [i for i, up in enumerate(self._up) if up]

    def mark(self, host: int, up: bool) -> None:
        with self._lock:
            self._up[host] = up

    def pick(self, rng: random.Random, avoid: int | None = None) -> int | None:
        """A random live host other than ``avoid`` (``avoid`` itself if it is the only one);
        None while none is live."""
        live = self.live()
        others = [i for i in live if i != avoid]
        return rng.choice(others or live) if live else None


@dataclass(frozen=True)
class ServerError:
    at: float  # when it was answered, in seconds since the clock started
    host: str
    path: str
    status: int
    ms: float  # how long the answer took


@dataclass
class Tally:
    """What the load generator and the prober saw, shared by their threads."""

    began: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    # The load's predictions and acknowledged verdicts: (monotonic time, kind, ms taken).
    done: list[tuple[float, str, float]] = field(default_factory=list)
    acknowledged: dict[str, int | None] = field(default_factory=dict)  # token -> id (None: 409)
    server_errors: list[ServerError] = field(default_factory=list)
    propagation: list[tuple[float, float]] = field(default_factory=list)  # (at s, ms)

    def add(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.counts[kind] += n

    def now(self) -> float:
        return time.monotonic() - self.began

    def completed(self, kind: str, ms: float) -> None:
        with self.lock:
            self.done.append((time.monotonic(), kind, ms))

    def acknowledge(self, token: str, feedback_id: int | None, kind: str) -> None:
        with self.lock:
            self.acknowledged[token] = feedback_id
            self.counts[kind] += 1

    def server_error(self, host: str, path: str, status: int, ms: float) -> None:
        with self.lock:
            self.server_errors.append(ServerError(self.now(), host, path, status, ms))

    def rate(self, start: float, end: float, kinds: tuple[str, ...] = ("predict", "verdict")
             ) -> float:
        """The load's predictions and acknowledged verdicts (or ``kinds``) per second between
        two monotonic times."""
        return sum(len(self.latencies(start, end, kind)) for kind in kinds) / max(end - start,
                                                                                   1e-9)

    def latencies(self, start: float, end: float, kind: str | None = None) -> list[float]:
        """The milliseconds of the load's requests (``kind``'s) answered between two times."""
        with self.lock:
            return [ms for t, k, ms in self.done if start <= t < end and kind in (None, k)]


Reply = tuple[int, dict[str, Any], float, float]  # status, body, Retry-After, ms taken


class Requester:
    """A keep-alive connection per host, and what a client does when one fails."""

    def __init__(self, balancer: Balancer, tally: Tally, seed: int, source: str) -> None:
        self.balancer = balancer
        self.tally = tally
        self.rng = random.Random(seed)
        self.source = source  # "load" or "probe": the counts are kept apart
        self.clients: dict[int, Client] = {}
        self.abort = threading.Event()  # the run failed or was interrupted: give up at once

    def run(self, stop: threading.Event) -> None:
        """Send requests until ``stop`` is set."""
        raise NotImplementedError

    def run_reporting(self, stop: threading.Event) -> None:
        """:meth:`run`; a thread that dies of an answer it did not expect fails the run
        (rather than quietly leaving less load)."""
        try:
            self.run(stop)
        except Exception as exc:
            self.tally.add(f"unexpected answer: {self.source} thread died of {exc!r}")
            raise

    def attempt(self, host: int, path: str, payload: object | None = None) -> Reply | str:
        """The host's answer, or REFUSED (it is then out of rotation) or BROKEN (the
        connection failed before an answer came: the request may or may not have run)."""
        try:
            reply = self._send(host, path, payload)
        except ConnectionRefusedError:
            self.balancer.mark(host, False)
            self.tally.add(f"{self.source}: connection refused, host marked down")
            return REFUSED
        except NO_ANSWER as exc:
            self.tally.add(f"{self.source}: connection broke ({type(exc).__name__})")
            return BROKEN
        if self.source == "probe":
            self.tally.completed("probe", reply[3])  # its share of the window's CPU
        return reply

    def _send(self, host: int, path: str, payload: object | None) -> Reply:
        server = self.balancer.hosts[host]
        client = self.clients.get(host) or Client(server.port)
        self.clients[host] = client
        body = None if payload is None else json.dumps(payload).encode()
        started = time.perf_counter()
        try:
            status, raw = client.request("GET" if body is None else "POST", path, body)
        except BaseException:
            # A dead keep-alive connection is dropped; the next request opens one.
            client.conn.close()
            del self.clients[host]
            raise
        ms = (time.perf_counter() - started) * 1000
        if status >= 500:  # whatever its body: a proxy's or server's page is a 5xx too
            self.tally.server_error(server.name, path, status, ms)
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"error": raw[:200].decode(errors="replace")}
        given = client.headers.get("Retry-After") if client.headers is not None else None
        retry_after = float(given) if given else RETRY_AFTER_CAP
        return status, data, min(retry_after, RETRY_AFTER_CAP), ms

    def predict(self, stop: threading.Event) -> tuple[str, bool, int, float] | None:
        """(token, whether the model was right, host, ms taken) for a fresh review; None
        when the prediction was not recorded (the database down) or the load is over."""
        label = self.rng.randrange(2)
        review = make_review(self.rng, label)
        while not stop.is_set():
            host = self.balancer.pick(self.rng)
            reply = REFUSED if host is None else self.attempt(host, "/api/predict",
                                                              {"review": review})
            if host is None or isinstance(reply, str):
                time.sleep(0.01)
                continue
            status, data, _, ms = reply
            self.tally.add(f"{self.source}: predict {status}")
            if status != 200 or data.get("prediction_id") is None:
                if status == 200:
                    self.tally.add(f"{self.source}: predictions served unrecorded (database down)")
                return None
            right = data["label"] == ("negative", "positive")[label]
            return data["prediction_id"], right, host, ms
        return None


class LoadClient(Requester):
    """One client of the load: predict on a host, give the verdict on another, again."""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            predicted = self.predict(stop)
            if predicted is None:
                continue
            token, right, host, ms = predicted
            self.tally.completed("predict", ms)
            correct = right if self.rng.random() >= WRONG else not right
            self.verdict(token, correct, avoid=host)

    def verdict(self, token: str, correct: bool, avoid: int) -> None:
        """Give one verdict until it is acknowledged exactly once (201, or 409 on a retry)."""
        broke = refused = False
        self.tally.add("verdicts given")
        give_up = time.monotonic() + VERDICT_GIVE_UP
        while time.monotonic() < give_up and not self.abort.is_set():
            host = self.balancer.pick(self.rng, avoid)
            if host is None:
                time.sleep(0.05)
                continue
            reply = self.attempt(host, "/api/feedback", {"prediction_id": token,
                                                        "correct": correct})
            self.tally.add("verdict requests")
            if reply == BROKEN:
                broke, avoid = True, host
            if isinstance(reply, str):
                continue
            status, data, retry_after, ms = reply
            if status == 201:
                self.tally.acknowledge(token, int(data["feedback_id"]),
                                       "accepted: 201" + (" on a retry" if broke else ""))
                self.tally.completed("verdict", ms)
                return
            if status == 409 and (broke or refused):
                why = (ON_BROKEN if broke else ON_503)
                self.tally.acknowledge(token, None, f"accepted: 409 after {why}")
                self.tally.completed("verdict", ms)
                return
            if status < 500:
                self.tally.add(f"unexpected answer: verdict {status}")
                return
            refused = True
            self.tally.add(f"refused {status}, retried after Retry-After")
            time.sleep(retry_after)
        self.tally.add("unexpected answer: verdict given up after 60 s")


class Prober(Requester):
    """Every ~100 ms a verdict on host i, then host j's /api/health until it shows it."""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.probe(stop)
            time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - started)))

    def probe(self, stop: threading.Event) -> None:
        live = self.balancer.live()
        if len(live) < 2:
            self.tally.add("probe: skipped, fewer than two hosts up")
            return
        i, j = self.rng.sample(live, 2)
        predicted = self._predict_on(i)
        if predicted is None:
            return
        token, right = predicted
        reply = self.attempt(i, "/api/feedback", {"prediction_id": token, "correct": right})
        if isinstance(reply, str) or reply[0] != 201:
            self.tally.add("probe: skipped, the verdict was not accepted at once")
            return
        seen_at = time.monotonic()
        feedback_id = int(reply[1]["feedback_id"])
        self.tally.acknowledge(token, feedback_id, "probe: accepted: 201")
        self._wait_until_applied(j, feedback_id, seen_at)

    def _predict_on(self, host: int) -> tuple[str, bool] | None:
        label = self.rng.randrange(2)
        reply = self.attempt(host, "/api/predict", {"review": make_review(self.rng, label)})
        if isinstance(reply, str) or reply[0] != 200 or reply[1].get("prediction_id") is None:
            self.tally.add("probe: skipped, no recorded prediction")
            return None
        data = reply[1]
        return data["prediction_id"], data["label"] == ("negative", "positive")[label]

    def _wait_until_applied(self, host: int, feedback_id: int, since: float) -> None:
        while time.monotonic() - since < PROBE_TIMEOUT:
            # A prediction, as a user of that host would ask for: it answers from the
            # live model after catching up with the log, and its model_version ends
            # with the last verdict that model has learned (base+N, v000007+N).
            reply = self.attempt(host, "/api/predict", {"review": PROBE_REVIEW})
            if isinstance(reply, str):
                self.tally.add("probe: skipped, the other host went down")
                return
            if reply[0] == 200 and int(reply[1]["model_version"].rsplit("+", 1)[1]) \
                    >= feedback_id:
                with self.tally.lock:
                    self.tally.propagation.append(
                        (since - self.tally.began, (time.monotonic() - since) * 1000))
                return
        self.tally.add("probe: not seen within 5 s")
        with self.tally.lock:
            self.tally.propagation.append((since - self.tally.began, PROBE_TIMEOUT * 1000))


@contextmanager
def running(requesters: list[Requester]) -> Iterator[threading.Event]:
    """The requesters' threads, stopped (each finishing its verdict) on the way out."""
    stop = threading.Event()
    threads = [threading.Thread(target=r.run_reporting, args=(stop,), daemon=True,
                                name=f"{r.source}-{n}") for n, r in enumerate(requesters)]
    for t in threads:
        t.start()
    try:
        yield stop
    except BaseException:
        for r in requesters:
            r.abort.set()
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=VERDICT_GIVE_UP + 30)


def stop_host(host: Host) -> None:
    """TERM to the group, then KILL if it lingers: nothing may outlive the benchmark."""
    if host.proc is None:
        return
    if host.proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(host.proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            host.proc.wait(timeout=15)
    host.kill()  # whatever is left of the group (a worker that outlived its arbiter)


def load_clients(balancer: Balancer, tally: Tally, clients: int, seed: int) -> list[Requester]:
    return [LoadClient(balancer, tally, seed + n, "load") for n in range(clients)]


# -- the two runs --------------------------------------------------------------


class CpuMeter:
    """CPU seconds spent so far by each role's processes (each a whole process tree),
    and by the load generator (this process, its children not included)."""

    def __init__(self, roles: dict[str, Callable[[], list[int]]]) -> None:
        self.roles = roles

    def take(self) -> dict[str, float]:
        spent = {role: sum(_tree_cpu(pid) for pid in pids()) for role, pids in self.roles.items()}
        return {**spent, "load generator": own_cpu_seconds()}


def _tree_cpu(pid: int) -> float:
    try:
        return cpu_seconds_of(process_tree(pid))
    except psutil.NoSuchProcess:  # a host killed meanwhile
        return 0.0


@dataclass
class Window:
    """A stretch of undisturbed load, for throughput: when, and the CPU each role spent."""

    start: float = 0.0
    end: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def open(self, meter: CpuMeter) -> None:
        self.start, self.cpu = time.monotonic(), meter.take()

    def close(self, meter: CpuMeter) -> None:
        self.end = time.monotonic()
        self.cpu = {role: spent - self.cpu[role] for role, spent in meter.take().items()}

    @property
    def seconds(self) -> float:
        return self.end - self.start


def baseline(folder: Path, args: argparse.Namespace) -> tuple[Tally, Window]:
    """ONE host on its SQLite log under the same load, for ``--baseline-seconds``."""
    host = Host(folder / "baseline", workers=args.workers, rate_limits=True, name="single")
    host.instance.mkdir()
    host.start()
    meter = CpuMeter({"hosts": lambda: [host.proc.pid] if host.proc else []})
    window = Window()
    try:
        tally = Tally(time.monotonic())
        with running(load_clients(Balancer([host]), tally, args.clients, args.seed)):
            time.sleep(WARMUP)
            window.open(meter)
            time.sleep(args.baseline_seconds)
            window.close(meter)
        return tally, window
    finally:
        stop_host(host)


@dataclass
class Events:
    """The disruptions, in seconds since the clock started (after the warm-up)."""

    clean: Window = field(default_factory=Window)  # from the clock's start to the first kill
    lines: list[str] = field(default_factory=list)
    db_down: tuple[float, float] | None = None  # (stop begins, back up)


def disrupt(cluster: Cluster, balancer: Balancer, seconds: float, tally: Tally,
            meter: CpuMeter) -> Events:
    """The schedule: host 1 then host 2 killed and restarted, then PostgreSQL restarted.

    One step after the other: a step that is late (a slow restart) delays the next
    rather than overlapping it (a host cannot start while the database is down).
    """
    events = Events()
    events.clean.open(meter)
    for n, share in enumerate(KILLS[:len(cluster.hosts)]):
        _sleep_until(tally.began + share * seconds)
        if n == 0:
            events.clean.close(meter)
        kill_and_restart(cluster.hosts[n], n, balancer, tally, events)
    _sleep_until(tally.began + DB_RESTART * seconds)
    down = tally.now()
    cluster.pg.stop()
    cluster.pg.start()
    events.db_down = (down, tally.now())
    events.lines.append(f"PostgreSQL: stop at {down:.1f} s, back up at {tally.now():.1f} s")
    return events


def kill_and_restart(host: Host, n: int, balancer: Balancer, tally: Tally,
                     events: Events) -> None:
    """SIGKILL the host's group; restart it 2 s later; back in rotation once healthy."""
    host.kill()
    at = tally.now()
    time.sleep(RESTART_AFTER)
    took = host.start()
    balancer.mark(n, True)
    events.lines.append(f"{host.name}: SIGKILL at {at:.1f} s, restarted {RESTART_AFTER:.0f} s "
                        f"later, healthy after {took:.1f} s more (back in rotation at "
                        f"{tally.now():.1f} s)")


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@dataclass
class Cluster:
    """The throwaway services and hosts of one run."""

    folder: Path
    pg: PostgresCluster
    redis: RedisServer
    url: str = ""
    hosts: list[Host] = field(default_factory=list)

    def start(self, count: int, workers: int) -> None:
        self.pg.start()
        self.url = self.pg.new_database()
        self.redis.start()
        for n in range(1, count + 1):
            host = Host(self.folder / f"host{n}", workers=workers, rate_limits=True,
                        env_extra=self.env(), name=f"host {n}")
            host.instance.mkdir()
            self.hosts.append(host)
            host.start()

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.url, "RATELIMIT_STORAGE_URI": self.redis.url}

    def meter(self) -> CpuMeter:
        """CPU of the hosts, PostgreSQL (its postmaster's tree) and Redis."""
        postmaster = int((self.pg.data / "postmaster.pid").read_text().split()[0])
        return CpuMeter({
            "hosts": lambda: [h.proc.pid for h in self.hosts if h.proc],
            "PostgreSQL": lambda: [postmaster],
            "Redis": lambda: self.redis.pids,
        })

    def close(self) -> None:
        for host in self.hosts:
            stop_host(host)
        self.redis.stop()
        self.pg.close()


def cluster_run(cluster: Cluster, args: argparse.Namespace) -> tuple[Tally, Events]:
    """Load on every host, then (after the warm-up) the prober and the schedule."""
    balancer = Balancer(cluster.hosts)
    tally = Tally(time.monotonic())
    with running(load_clients(balancer, tally, args.clients, args.seed)):
        time.sleep(WARMUP)
        tally.began = time.monotonic()
        with running([Prober(balancer, tally, args.seed + 1000, "probe")]):
            events = disrupt(cluster, balancer, args.seconds, tally, cluster.meter())
            # Past the end of the schedule long enough to see the hosts after the restart.
            assert events.db_down is not None
            _sleep_until(tally.began + max(args.seconds, events.db_down[1] + GRACE + 1))
    return tally, events


# -- the checks ------------------------------------------------------------------


def host_digests(host: Host, tally: Tally) -> list[dict[str, Any]]:
    """/api/health over fresh connections, so that each of the host's workers answers."""
    answers = []
    for _ in range(HEALTH_CALLS):
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=60)
        conn.request("GET", "/api/health")
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status >= 500:
            tally.server_error(host.name, "/api/health (final)", response.status, 0.0)
            continue
        answers.append(json.loads(body))
    return answers


def rebuild_env(cluster: Cluster, folder: Path) -> dict[str, str]:
    """A host's environment with a FRESH instance folder: nothing but the database."""
    folder.mkdir()
    env = Host(folder, rate_limits=True, env_extra=cluster.env()).environment()
    return {**env, "SENTIMENT_BACKGROUND_CHECKPOINTS": "false"}


def rebuild(cluster: Cluster, attempt: int) -> tuple[subprocess.CompletedProcess[str], str]:
    """``flask --app app model rebuild`` (its lines and exit status), and the digest it
    prints of the base model plus the accepted log replayed from scratch."""
    env = rebuild_env(cluster, cluster.folder / f"rebuild{attempt}")
    command = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "model", "rebuild"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    found = re.search(r"^rebuilt model digest (\w+)$", command.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"the rebuild printed no digest: {command.stderr[-2000:]}")
    return command, found.group(1)


def log_head(url: str) -> tuple[int, int]:
    """(highest verdict id, generation): it changes when a verdict or a quarantine lands."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT (SELECT COALESCE(MAX(id), 0) FROM feedback),"
                           " (SELECT value FROM meta WHERE key = 'generation')").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass
class Database:
    """What the database holds at the end."""

    stored: dict[int, str]  # feedback id -> its prediction's token
    judged: set[str]  # tokens with a first verdict
    duplicates: int  # predictions with more than one first verdict
    statuses: dict[str, int]


def read_database(url: str) -> Database:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT f.id, p.token, f.released_from FROM feedback f"
                            " JOIN predictions p ON p.id = f.prediction_id").fetchall()
        duplicates = conn.execute(
            "SELECT prediction_id FROM feedback WHERE released_from IS NULL"
            " GROUP BY prediction_id HAVING COUNT(*) > 1").fetchall()
        statuses: dict[str, int] = dict(conn.execute(
            "SELECT status, COUNT(*) FROM feedback GROUP BY status").fetchall())
    return Database({int(i): str(t) for i, t, _ in rows},
                    {str(t) for _, t, released in rows if released is None},
                    len(duplicates), {str(k): int(v) for k, v in statuses.items()})


@dataclass
class Final:
    """The end state: every host's answers, the rebuild's, the database's."""

    health: dict[str, list[dict[str, Any]]]
    command: subprocess.CompletedProcess[str]
    rebuilt: str
    database: Database
    attempts: int


def final_state(cluster: Cluster, tally: Tally) -> Final:
    """Read hosts, rebuild and database while the log stands still.

    With no load, the log can still change: a checkpoint's guard may quarantine
    (the rebuild command's own sync may run one too). Then every host reloads
    and the comparison is made again, up to three times.
    """
    for attempt in range(1, 4):
        before = log_head(cluster.url)
        health = {h.name: host_digests(h, tally) for h in cluster.hosts}
        command, rebuilt = rebuild(cluster, attempt)
        if log_head(cluster.url) == before:
            break
    return Final(health, command, rebuilt, read_database(cluster.url), attempt)


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool


def lost(tally: Tally, database: Database) -> int:
    """Acknowledged verdicts the database does not hold (by id and prediction for a 201,
    by prediction for a 409)."""
    return sum(database.stored.get(fid) != token if fid is not None
               else token not in database.judged for token, fid in tally.acknowledged.items())


def outside_window(tally: Tally, events: Events) -> list[ServerError]:
    down, up = events.db_down or (float("inf"), float("inf"))
    return [e for e in tally.server_errors if not down <= e.at <= up + GRACE]


def propagation(tally: Tally, events: Events, clear: bool = True) -> list[float]:
    """The probes' milliseconds; ``clear``: only probes that overlapped no part of the
    database's restart (+ GRACE), when no verdict can reach any host."""
    down, up = events.db_down or (float("inf"), float("inf"))
    return [ms for at, ms in tally.propagation
            if not clear or at + ms / 1000 < down or at > up + GRACE]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def follow_lags(final: Final) -> dict[str, list[dict[str, Any]]]:
    """Each worker's follow_lag_ms (from /api/health), by host, one per distinct answer:
    how long after their commit it learned the verdicts other processes took."""
    return {name: [a["follow_lag_ms"] for a in answers
                   if a.get("follow_lag_ms", {}).get("p99") is not None]
            for name, answers in final.health.items()}


def worst_lag(final: Final) -> tuple[float, float, int]:
    """(largest p50, largest p99, fewest verdicts) over every worker that answered."""
    lags = [lag for answers in follow_lags(final).values() for lag in answers]
    if not lags:
        return float("nan"), float("nan"), 0
    return (max(lag["p50"] for lag in lags), max(lag["p99"] for lag in lags),
            min(lag["verdicts"] for lag in lags))


def checks(tally: Tally, events: Events, final: Final) -> list[Check]:
    digests = {name: sorted({a["model_digest"] for a in answers})
               for name, answers in final.health.items()}
    differ = sum(d != [final.rebuilt] for d in digests.values())
    # The command compares its own replay with the model it loaded from the shared
    # versions (the newest version plus the verdicts after it): exit 0 when identical.
    same = differ == 0 and final.command.returncode == 0
    twice = final.database.duplicates + differ
    twice_text = (str(twice) if not twice else f"{final.database.duplicates} predictions with "
                  f"several first verdicts, {differ} hosts whose model differs from the rebuild")
    _, lag_p99, _ = worst_lag(final)
    unexpected = sum(n for k, n in tally.counts.items() if k.startswith("unexpected"))
    return [
        Check("lost", str(lost(tally, final.database)), lost(tally, final.database) == 0),
        Check("applied twice", twice_text, twice == 0),
        Check("every host's digest == the rebuilt digest, and `model rebuild` finds the "
              "published versions bit-identical", "yes" if same else "no", same),
        Check(f"5xx outside the database's restart (+{GRACE:.0f} s)",
              str(len(outside_window(tally, events))), not outside_window(tally, events)),
        Check(f"a verdict is in every other worker's live model within {P99_TARGET_MS:.0f} ms "
              "at p99 (follow_lag_ms of the slowest worker)", f"{lag_p99:.1f} ms",
              lag_p99 <= P99_TARGET_MS),
        Check("unexpected answers (a 4xx other than a 409 on a retry; a client thread that "
              "died)", str(unexpected),
              unexpected == 0),
    ]


# -- the report ------------------------------------------------------------------


@dataclass
class Run:
    """One run's load as measured over its undisturbed window."""

    tally: Tally
    window: Window

    @property
    def rate(self) -> float:
        return self.tally.rate(self.window.start, self.window.end)

    def latency(self, kind: str) -> str:
        ms = self.tally.latencies(self.window.start, self.window.end, kind)
        return f"{percentile(ms, 50):.1f} / {percentile(ms, 99):.1f}"

    def cpu_ms(self, role: str) -> float:
        """CPU milliseconds ``role`` spent per request answered in the window."""
        answered = len(self.tally.latencies(self.window.start, self.window.end))
        return self.window.cpu.get(role, 0.0) * 1000 / max(answered, 1)

    def cpu_bound(self) -> float:
        """Requests/s this machine's cores could serve at most at this CPU per request."""
        total = sum(self.cpu_ms(role) for role in self.window.cpu)
        return (os.cpu_count() or 1) * 1000 / total if total else float("nan")


@dataclass
class Outcome:
    command: str
    args: argparse.Namespace
    single: Run
    cluster: Run
    events: Events
    final: Final
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def ratio(self) -> float:
        return self.cluster.rate / self.single.rate if self.single.rate else float("nan")


def throughput_rows(o: Outcome) -> list[tuple[str, str, str]]:
    """(figure, single host, cluster) over each run's undisturbed window."""
    one, many = o.single, o.cluster
    rows = [
        ("seconds measured (after a 3 s warm-up)", f"{one.window.seconds:.1f}",
         f"{many.window.seconds:.1f} (until the first kill)"),
        ("predictions + verdicts per second", f"{one.rate:.1f}", f"{many.rate:.1f}"),
        ("predict p50 / p99 ms", one.latency("predict"), many.latency("predict")),
        ("verdict p50 / p99 ms", one.latency("verdict"), many.latency("verdict")),
        ("the prober's requests per second (not counted above; their CPU is below)", "-",
         f"{many.tally.rate(many.window.start, many.window.end, ('probe',)):.1f}"),
    ]
    for role in ("hosts", "PostgreSQL", "Redis", "load generator"):
        rows.append((f"CPU ms per request: {role}",
                     f"{one.cpu_ms(role):.2f}" if role in one.window.cpu else "-",
                     f"{many.cpu_ms(role):.2f}"))
    rows.append((f"at that CPU, {os.cpu_count()} cores serve at most (/s)",
                 f"{one.cpu_bound():.0f}", f"{many.cpu_bound():.0f}"))
    return rows


def fault_rows(o: Outcome) -> list[tuple[str, str]]:
    """What the disruptions did to the verdicts, the answers and the propagation."""
    c = o.cluster.tally.counts
    everything = propagation(o.cluster.tally, o.events, clear=False)
    clear = propagation(o.cluster.tally, o.events)
    accepted = sum(n for k, n in c.items() if k.startswith("accepted"))
    fivexx = collections.Counter(f"{e.status} on {e.path}"
                                 for e in o.cluster.tally.server_errors)
    return [
        ("verdicts given (load generator)", f"{c['verdicts given']:,}"),
        ("verdict requests sent, retries included", f"{c['verdict requests']:,}"),
        ("accepted (201 + 409 after a retry)", f"{accepted:,}"),
        *((f"- {k.removeprefix('accepted: ')}", f"{n:,}") for k, n in sorted(c.items())
          if k.startswith("accepted")),
        ("refused 503 then retried (answers)", f"{c['refused 503, retried after Retry-After']:,}"),
        ("lost (acknowledged, not in the database)", str(lost(o.cluster.tally, o.final.database))),
        ("verdicts in the database, by status",
         ", ".join(f"{k} {v:,}" for k, v in sorted(o.final.database.statuses.items()))),
        ("predictions served unrecorded (database down)",
         f"{c['load: predictions served unrecorded (database down)']:,}"),
        ("5xx answers", ", ".join(f"{n} x {k}" for k, n in fivexx.items()) or "0"),
        ("propagation probes (verdict on one host, seen on another)", f"{len(everything):,}"),
        ("propagation p50 / p99 / max ms, every probe", spread(everything)),
        (f"propagation p50 / p99 / max ms, the {len(clear):,} probes clear of the database's "
         f"restart (+{GRACE:.0f} s)", spread(clear)),
        ("prober's verdicts acknowledged", f"{c['probe: accepted: 201']:,}"),
        ("in the other workers' live models, p50 / p99 ms (follow_lag_ms, slowest worker; "
         "verdicts each)", "{:.1f} / {:.1f} ({:,} at least)".format(*worst_lag(o.final))),
    ]


def spread(ms: list[float]) -> str:
    return (f"{percentile(ms, 50):.1f} / {percentile(ms, 99):.1f} / "
            f"{max(ms, default=float('nan')):.1f}")


def digest_lines(o: Outcome) -> list[str]:
    lines = [f"rebuilt from the log (fresh instance folder): {o.final.rebuilt[:16]}"]
    for name, answers in o.final.health.items():
        digests = sorted({a["model_digest"][:16] for a in answers})
        applied = sorted({a["applied_feedback_id"] for a in answers})
        versions = sorted({a["model_version"] for a in answers})
        lines.append(f"{name}: digest {', '.join(digests)} ({len(answers)} answers), "
                     f"applied up to {', '.join(map(str, applied))}, {', '.join(versions)}")
    out = ("; ".join(o.final.command.stdout.split("\n")).strip("; ")
           or o.final.command.stderr.strip()[-300:])
    lines.append(f"`flask --app app model rebuild` (exit {o.final.command.returncode}): {out}")
    if o.final.attempts > 1:
        lines.append(f"(the log changed while it was read; read again, {o.final.attempts} times)")
    return lines


def event_lines(o: Outcome) -> list[str]:
    lines = list(o.events.lines)
    errors = o.cluster.tally.server_errors
    if errors:
        shown = "; ".join(f"{e.status} from {e.host} {e.path} at {e.at:.2f} s (after "
                          f"{e.ms:.0f} ms)" for e in errors[:30])
        more = f" (and {len(errors) - 30} more)" if len(errors) > 30 else ""
        lines.append(f"5xx at: {shown}{more}")
    else:
        lines.append("5xx at: none")
    slowest = sorted(o.cluster.tally.propagation, key=lambda p: -p[1])[:8]
    lines.append("slowest propagation probes: " + "; ".join(f"{ms:.0f} ms at {at:.1f} s"
                                                            for at, ms in slowest))
    other = [f"{k}: {n:,}" for k, n in sorted(o.cluster.tally.counts.items())
             if k.startswith(("load: conn", "probe: ", "unexpected"))]
    lines.append("connections and probes: " + ("; ".join(other) or "none"))
    return lines


def machine_note(o: Outcome) -> str:
    cores = os.cpu_count() or 1
    return " ".join([
        f"Every process shares this machine's {cores} cores ({platform.machine()}): the",
        f"{o.args.hosts} hosts ({o.args.workers} workers each, every worker learning every",
        f"verdict), PostgreSQL (fsync on), Redis, the {o.args.clients} load threads (each",
        "sending its next request as soon as the last is answered) and the prober: the",
        f"cluster's CPU per request makes that about as much as these {cores} cores serve.",
        "With 6 load threads the machine is saturated, a request's latency is mostly its",
        "wait for a core, and the slowest worker's follow lag p99 was 138 ms",
        "(docs/operations.md). The single host had the cores to itself (no PostgreSQL,",
        f"Redis or prober). Both runs are timed after {WARMUP:.0f} s of load (each worker",
        "vectorises the guard's holdout at its first verdict). Propagation is measured two",
        "ways. In the live model: each worker reports in /api/health (follow_lag_ms) how",
        "long after its commit it learned each verdict another process took, whether its",
        "follower (woken by NOTIFY) or a request got there first; the slowest worker's p99",
        "is the one checked. As a user sees it: a probe counts from the 201 on host i to",
        "the first prediction on host j that comes from a model holding the verdict (a",
        "prediction catches up with the log first, so this is one prediction's latency on",
        "a loaded host). Times are seconds since the clock started; a killed host is",
        f"SIGKILLed whole (arbiter and workers) and restarted {RESTART_AFTER:.0f} s later.",
    ])


def notes(o: Outcome) -> list[str]:
    """What is wrong without being one of the checks."""
    lied = o.cluster.tally.counts[f"accepted: 409 after {ON_503}"]
    if not lied:
        return []
    return ["", f"Note: {lied} verdict(s) answered 503 (\"nothing was stored\") had committed: "
                "the retry got 409. Counted as accepted (the database holds each once); the "
                "503's message was wrong."]


def render(o: Outcome) -> str:
    speed = [f"| {a} | {b} | {c} |" for a, b, c in throughput_rows(o)]
    faults = [f"| {name} | {value} |" for name, value in fault_rows(o)]
    check_lines = [f"- {c.name}: {c.value} — {'PASS' if c.ok else 'FAIL'}" for c in o.checks]
    return "\n".join([
        f"# Cluster: {o.args.hosts} hosts on one PostgreSQL and one Redis (`{o.command}`)", "",
        versions_line() + ".", "", machine_note(o), "",
        "## Throughput, undisturbed", "",
        "| figure | single host (SQLite) | cluster |", "|---|---|---|", *speed, "",
        f"cluster / single: {o.ratio:.2f}x", "",
        "## Faults: two hosts killed, the database restarted", "",
        "| figure | value |", "|---|---|", *faults, "",
        "## Events", "", *(f"- {line}" for line in event_lines(o)), "",
        "## Models", "", *(f"- {line}" for line in digest_lines(o)), "",
        "## Checks", "", *check_lines, *notes(o), "",
        "**PASS**" if o.ok else "**FAIL**: " + ", ".join(c.name for c in o.checks if not c.ok),
        ""])


# -- the command -------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="the cluster run; the disruptions are placed in proportion")
    parser.add_argument("--baseline-seconds", type=float, default=15.0,
                        help="the single host's run")
    parser.add_argument("--clients", type=int, default=2,
                        help="load threads, each closed-loop (2: about what 2 cores serve)")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="processes per host")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "cluster.md")
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.hosts < 2 or args.clients < 1 or args.workers < 1:
        parser.error("--hosts must be at least 2, --clients and --workers at least 1")
    return args


def measure(args: argparse.Namespace, redis: str, command: str) -> Outcome:
    """Both runs, the end state and the checks; every server is gone when it returns."""
    with tempfile.TemporaryDirectory(prefix="sentiment-cluster-") as tmp:
        folder = Path(tmp)
        single = Run(*baseline(folder, args))
        (folder / "redis").mkdir()
        cluster = Cluster(folder, PostgresCluster(durable=True),
                          RedisServer(redis, folder / "redis", free_port()))
        try:
            cluster.start(args.hosts, args.workers)
            tally, events = cluster_run(cluster, args)
            final = final_state(cluster, tally)
        finally:
            cluster.close()
    return Outcome(command, args, single, Run(tally, events.clean), events, final,
                   checks(tally, events, final))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        redis = services()
    except MissingServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(versions_line())
    outcome = measure(args, redis, command_line("bench.cluster", argv))
    text = render(outcome)
    print(text)
    if not args.no_report:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"written to {args.out}")
    if not outcome.ok:
        print("FAILED: " + ", ".join(c.name for c in outcome.checks if not c.ok))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
