"""What the exactly-once tests compare the live model with, and a real server to crash.

The reference is computed without the learner, the feedback log or the
version store: the base classifier is unpickled, the vectorizer rebuilt, and
every *accepted* verdict read straight from the database (SQLite or
PostgreSQL, on a connection of its own) is ``partial_fit`` one at a
time in id order, each followed by the replays of the accepted verdicts
``REPLAYS`` places before it. The live model must be bit-identical to it.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from sentiment.models.linear import REPLAYS
from sentiment.models.state import ModelState
from sentiment.text.vectorizer import load_vectorizer

ROOT = Path(__file__).resolve().parent.parent


Source = Path | str  # an SQLite file, or a PostgreSQL URL


def log_of(app: Any) -> Source:
    """Where an app's log is: its PostgreSQL URL, else its SQLite file."""
    settings = app.extensions["settings"]
    if settings.database_url:
        return str(settings.database_url)
    return Path(settings.sqlite_path)


def query(source: Source, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one query (``?`` placeholders), on a connection of the test's own."""
    if isinstance(source, str):
        with psycopg.connect(source, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), args).fetchall()]
    db = sqlite3.connect(source, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def execute(source: Source, sql: str, args: tuple[Any, ...] = ()) -> None:
    """Change the log behind the app's back (what a damaged or hand-edited log looks like)."""
    if isinstance(source, str):
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), args)
        return
    with sqlite3.connect(source, timeout=30) as db:
        db.execute(sql, args)
    db.close()


@contextmanager
def version_files(source: Source, models: Path) -> Iterator[Any]:
    """The model versions' files of a log, as another process sees them: the database's
    (PostgreSQL, on connections of its own, closed on the way out), else the models
    folder's."""
    from sentiment.learning.versions import FolderFiles
    from sentiment.storage.postgres import PostgresFeedbackLog

    if not isinstance(source, str):
        yield FolderFiles(models)
        return
    log = PostgresFeedbackLog(source, pool_size=2)
    try:
        yield log.version_files()
    finally:
        log.close()


@contextmanager
def other_process_versions_lock(app: Any) -> Iterator[None]:
    """Hold the lock a checkpoint holds, as another process (or host) would take it."""
    with version_files(log_of(app), app.extensions["learner"].store.folder) as files, \
            files.lock:
        yield


def accepted_rows(source: Source) -> list[tuple[int, str, int]]:
    """(verdict id, review, label) of every accepted verdict learned (a repeat of the same
    client's verdict on the same text is kept, not learned), in id order."""
    return [(int(i), str(r), int(label)) for i, r, label in query(
        source, "SELECT f.id, p.review, f.label FROM feedback f"
        " JOIN predictions p ON p.id = f.prediction_id"
        " WHERE f.status = 'accepted' AND f.repeat_of IS NULL ORDER BY f.id")]


def reference_state(model_dir: Path, source: Source) -> ModelState:
    """Base classifier + partial_fit of each accepted verdict, one at a time, in id order,
    each followed by its replays."""
    with open(Path(model_dir) / "classifier.pkl", "rb") as fh:
        clf = pickle.load(fh)
    vectorizer = load_vectorizer(Path(model_dir))
    rows = accepted_rows(source)
    for at in range(len(rows)):
        for _, review, label in [rows[at]] + [rows[at - back] for back in REPLAYS
                                              if at - back >= 0]:
            clf.partial_fit(vectorizer.transform([review]), np.array([label]),
                            classes=np.array([0, 1]))
    return ModelState(clf.coef_.copy(), clf.intercept_.copy(), float(clf.t_))


# -- HTTP -------------------------------------------------------------------------
def call(port: int, method: str, path: str, body: Any = None,
         timeout: float = 30) -> tuple[int, Any]:
    """(status, decoded JSON) of one request; raises OSError if the server is gone."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


class Server:
    """``tests/serve_for_test.py`` in a subprocess, configured through the environment."""

    def __init__(self, instance: Path, model_dir: Path, log_dir: Path, name: str = "server",
                 **config: Any) -> None:
        self.instance = Path(instance)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SENTIMENT_") and k != "DATABASE_URL"}
        # These tests hammer the server from one address: no per-client limits.
        self.env.update(INSTANCE_PATH=str(instance), SENTIMENT_MODEL_DIR=str(model_dir),
                        SENTIMENT_RATE_LIMITS="false", PYTHONUNBUFFERED="1")
        for key, value in config.items():
            if key == "DATABASE_URL":
                if value:
                    self.env[key] = str(value)
            elif key.startswith("TEST_"):
                self.env[key] = str(value)
            else:
                self.env[f"SENTIMENT_{key}"] = json.dumps(value)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.{self.starts}.err"

    def start(self, timeout: float = 120) -> Server:
        self.starts += 1
        out_path = self.log_dir / f"{self.name}.{self.starts}.out"
        with open(out_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.serve_for_test"],
                                         cwd=ROOT, env=self.env, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = out_path.read_text()
            if text.startswith("PORT ") and text.endswith("\n"):
                self.port = int(text.split()[1])
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.stderr_path.read_text()[-3000:])
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start:\n" + self.stderr_path.read_text()[-3000:])

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30):
        return call(self.port, method, path, body, timeout)

    def kill(self) -> None:
        """``kill -9``: no cleanup, no final checkpoint."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """A polite stop (SIGTERM), then ``kill -9`` if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
