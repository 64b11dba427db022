"""Crash and load proof: 8 clients predict and give verdicts while the server is killed.

``python -m bench.crash`` serves the app on loopback, drives 8 keep-alive
clients for ``--seconds`` (predict a review, then give a verdict on it),
and meanwhile kills the server with SIGKILL ``--restarts`` times at random
moments, restarting it each time. At the end it checks that:

* every verdict acknowledged with 201 is in the database,
* ``flask --app app model rebuild`` reproduces the live model bit for bit,
  and the live server's model digest equals the rebuilt one,
* ``PRAGMA integrity_check`` is ok,
* no request got a 5xx;

and prints the counts. Exit status 0 only if every check holds.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.reviews import make_review
from bench.serving import ROOT, Client, Server


class Tally:
    """Thread-safe counters of what the clients saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.acknowledged: list[tuple[int, int]] = []  # (feedback id, prediction id)

    def add(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1


def drive(port: int, deadline: float, seed: int, tally: Tally) -> None:
    """One client: predict, then a verdict on that prediction, until the deadline."""
    rng = random.Random(seed)
    client = Client(port)
    while time.monotonic() < deadline:
        try:
            status, data = client.json(
                "/api/predict", {"review": make_review(rng, rng.randrange(2))}
            )
            tally.add(f"predict {status}")
            if status != 200:
                continue
            pid = data["prediction_id"]
            status, data = client.json(
                "/api/feedback", {"prediction_id": pid, "correct": rng.random() < 0.7}
            )
            tally.add(f"verdict {status}")
            if status == 201:
                with tally.lock:
                    tally.acknowledged.append((data["feedback_id"], pid))
        except (ConnectionError, http.client.HTTPException, OSError, ValueError) as exc:
            # The server is down or was killed mid-request: not an answer, not a 5xx.
            tally.add(f"no answer ({type(exc).__name__})")
            client = Client(port)
            time.sleep(0.05)


def kill_and_restart(
    server: Server, restarts: int, seconds: float, seed: int, events: list[str]
) -> None:
    rng = random.Random(seed)
    moments = sorted(rng.uniform(0.05, 0.9) * seconds for _ in range(restarts))
    began = time.monotonic()
    for moment in moments:
        time.sleep(max(0.0, began + moment - time.monotonic()))
        # The whole server at once, arbiter and workers, as a machine or
        # container dies (a worker that outlived its arbiter would hold the port).
        server.kill()
        events.append(f"SIGKILL at {time.monotonic() - began:.1f} s")
        took = server.start()
        events.append(f"restarted in {took:.2f} s")


def check(instance: Path, server: Server, tally: Tally, model_dir: str | None) -> dict[str, object]:
    db = sqlite3.connect(instance / "reviews.sqlite")
    stored = dict(db.execute("SELECT f.id, p.token FROM feedback f"
                               " JOIN predictions p ON p.id = f.prediction_id").fetchall())
    missing = [fid for fid, pid in tally.acknowledged if stored.get(fid) != pid]
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    # A clean stop writes a last checkpoint, which the guard may turn into a
    # quarantine: compare the rebuild with the model served after that, as a
    # restarted server loads it.
    server.stop()
    server.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/api/health")
    live = json.loads(conn.getresponse().read())
    server.stop()
    with sqlite3.connect(instance / "reviews.sqlite") as db:
        stored_status = dict(db.execute("SELECT status, COUNT(*) FROM feedback GROUP BY status"))
    env = {**os.environ, "INSTANCE_PATH": str(instance), **server.env_extra}
    rebuild = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "model", "rebuild"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    from app import create_app

    config = {"INSTANCE_PATH": str(instance), "BACKGROUND_CHECKPOINTS": False}
    if model_dir:
        config["MODEL_DIR"] = model_dir
    app = create_app(config)
    learner = app.extensions["learner"]
    rebuilt_digest = learner.rebuild().state().digest()
    return {
        "acknowledged verdicts": len(tally.acknowledged),
        "stored verdicts": len(stored),
        "acknowledged but missing": len(missing),
        "integrity_check": integrity,
        "rebuild command": rebuild.stdout.strip() or rebuild.stderr.strip()[-300:],
        "rebuild exit code": rebuild.returncode,
        "live digest == rebuilt digest": live["model_digest"] == rebuilt_digest,
        "live model version": live["model_version"],
        "quarantined by the guard": stored_status.get("quarantined", 0),
    }


def run(
    seconds: float, restarts: int, clients: int, seed: int, model_dir: str | None
) -> tuple[bool, dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        env = {"SENTIMENT_MODEL_DIR": model_dir} if model_dir else {}
        server = Server(instance, env_extra=env)
        server.start()
        tally = Tally()
        events: list[str] = []
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=drive, args=(server.port, deadline, seed + i, tally))
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        kill_and_restart(server, restarts, seconds, seed, events)
        for t in threads:
            t.join()
        results = check(instance, server, tally, model_dir)
    fivexx = {k: v for k, v in tally.counts.items() if k.split()[-1].startswith("5")}
    results.update(
        {
            "requests answered": sum(v for k, v in tally.counts.items() if not k.startswith("no")),
            "restarts": restarts,
            "5xx": sum(fivexx.values()),
            "answers and errors by kind": dict(sorted(tally.counts.items())),
            "events": events,
        }
    )
    ok = (
        not results["acknowledged but missing"]
        and results["integrity_check"] == "ok"
        and results["rebuild exit code"] == 0
        and results["live digest == rebuilt digest"]
        and not fivexx
    )
    return ok, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", help="model folder (default: the committed pkl_objects)")
    args = parser.parse_args(argv)
    ok, results = run(args.seconds, args.restarts, args.clients, args.seed, args.model_dir)
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"    {k:<40} {v}")
        elif isinstance(value, list):
            print(f"{key}: " + "; ".join(value))
        else:
            print(f"{key:<32} {value}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
