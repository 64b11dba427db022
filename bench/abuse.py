"""Idle and slow connections against a well-behaved client: does the app stay up?

``python -m bench.abuse`` starts ``app.py`` (default settings, rate limits off),
measures a well-behaved client (a fresh connection per ``GET /api/health``, one
keep-alive connection for ``POST /api/predict``), then opens ``--idle``
connections that send nothing and ``--slow`` slowloris clients that send a
request head one line every ``--drip`` seconds, and measures the same client
again while they are open; then closes them and measures once more (recovery).
It prints each phase's p50/p99 and errors (an answer later than ``--timeout``
or none is an error), and how many abusive connections the server had closed.
Goal (issue 25): under abuse, p99 under 250 ms and no error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import selectors
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import versions_line
from bench.serving import REVIEW, Server

GOAL_P99_MS = 250.0


@dataclass
class Phase:
    name: str
    health_ms: list[float] = field(default_factory=list)
    predict_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def line(self) -> str:
        def stats(values: list[float]) -> str:
            if not values:
                return f"{'-':>8} {'-':>8} {0:>6}"
            return (f"{np.percentile(values, 50):8.1f} {np.percentile(values, 99):8.1f} "
                    f"{len(values):6d}")
        return (f"{self.name:<34} {stats(self.health_ms)}   {stats(self.predict_ms)} "
                f"{self.errors:7d}")


def well_behaved(port: int, seconds: float, timeout: float, phase: Phase) -> None:
    """A visitor checking health on fresh connections and predicting on a kept-alive one."""
    body = json.dumps({"review": REVIEW}).encode()
    keep: http.client.HTTPConnection | None = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            fresh.request("GET", "/api/health")
            ok = fresh.getresponse().status == 200
            fresh.close()
        except OSError:
            ok = False
        elapsed = (time.perf_counter() - start) * 1000
        if ok and elapsed <= timeout * 1000:
            phase.health_ms.append(elapsed)
        else:
            phase.errors += 1
        start = time.perf_counter()
        try:
            keep = keep or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            keep.request("POST", "/api/predict", body=body,
                         headers={"Content-Type": "application/json"})
            response = keep.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok, keep = False, None
        elapsed = (time.perf_counter() - start) * 1000
        if ok and elapsed <= timeout * 1000:
            phase.predict_ms.append(elapsed)
        else:
            phase.errors += 1
        time.sleep(0.05)


class Abusers:
    """``idle`` connections that send nothing and ``slow`` ones that drip a request head."""

    def __init__(self, port: int, idle: int, slow: int, drip: float) -> None:
        self.port, self.drip = port, drip
        self.idle: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        self.refused = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        for _ in range(idle):
            self._connect(self.idle)
        for _ in range(slow):
            if (sock := self._connect(self.slow)) is not None:
                sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\n")
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _connect(self, into: list[socket.socket]) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            self.refused += 1
            return None
        sock.setblocking(False)
        into.append(sock)
        return sock

    def _drip(self) -> None:
        """One header line per slow connection every ``drip`` seconds; notice closures."""
        line = 0
        while not self._stop.wait(self.drip):
            line += 1
            for sock in list(self.slow):
                try:
                    sock.send(f"X-Slow-{line}: {'a' * 8}\r\n".encode())
                except OSError:
                    self.slow.remove(sock)
                    self.closed_by_server += 1
            self._count_closed_idle()

    def _count_closed_idle(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self.idle:
                selector.register(sock, selectors.EVENT_READ)
            for key, _ in selector.select(0):
                sock = key.fileobj
                try:
                    closed = sock.recv(1) == b""  # type: ignore[union-attr]
                except OSError:
                    closed = True
                if closed:
                    self.idle.remove(sock)  # type: ignore[arg-type]
                    self.closed_by_server += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._count_closed_idle()
        for sock in self.idle + self.slow:
            sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1000, help="connections that send nothing")
    parser.add_argument("--slow", type=int, default=200, help="slowloris connections")
    parser.add_argument("--drip", type=float, default=10.0,
                        help="seconds between a slow connection's header lines (default 10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase (default 30)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="an answer later than this is an error (default 5 s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="app processes (default: app.py's, one per core)")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.idle + args.slow + 100
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))
    print(versions_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp) / "instance"
        instance.mkdir()
        server = Server(instance)
        if args.workers:
            server.workers = args.workers
        else:
            from sentiment.serving.process import usable_cores

            server.workers = usable_cores()
        server.start()
        try:
            phases = [Phase("before (no abuse)")]
            well_behaved(server.port, args.seconds / 3, args.timeout, phases[0])
            abusers = Abusers(server.port, args.idle, args.slow, args.drip)
            opened = len(abusers.idle) + len(abusers.slow)
            phases.append(Phase(f"{args.idle} idle + {args.slow} slowloris"))
            well_behaved(server.port, args.seconds, args.timeout, phases[1])
            closed, refused = abusers.closed_by_server, abusers.refused
            abusers.close()
            phases.append(Phase("after they left"))
            well_behaved(server.port, args.seconds / 3, args.timeout, phases[2])
        finally:
            server.stop()
    print(f"\napp.py, {server.workers} worker processes; abusive connections opened {opened}, "
          f"refused at connect {refused}, closed by the server while open {closed}")
    print(f"{'phase':<34} {'health p50':>8} {'p99':>8} {'n':>6}   {'predict p50':>8} "
          f"{'p99':>8} {'n':>6} {'errors':>7}")
    for phase in phases:
        print(phase.line())
    under = phases[1]
    p99 = max(np.percentile(v, 99) if v else float("inf")
              for v in (under.health_ms, under.predict_ms))
    met = p99 < GOAL_P99_MS and under.errors == 0
    print(f"\ngoal under abuse: p99 < {GOAL_P99_MS:.0f} ms and no error: "
          f"{'met' if met else 'NOT met'} (p99 {p99:.1f} ms, {under.errors} errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
