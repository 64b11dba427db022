"""The Procfile's ``web:`` line, run as a platform of the Heroku kind runs it.

The command is taken exactly as written and run through ``sh -c`` in the
checkout, with only what such a platform provides: ``$PORT``, the config vars
(``DATABASE_URL``, ``RATELIMIT_STORAGE_URI`` ...), ``$WEB_CONCURRENCY`` where it
sets one, and the Python that ``pip install -r requirements.txt`` installed
into first on ``PATH``. It must serve on 0.0.0.0:$PORT and stop cleanly (status
0) on the SIGTERM the platform sends to the whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis

from bench.services import free_port
from tests.redis_server import throwaway_redis
from tests.reference import ROOT, call

PROCFILE = ROOT / "Procfile"
REVIEW = "A wonderful, moving film with a great cast."
START_SECONDS = 120
STOP_SECONDS = 30
# What the test's own environment may hold that a fresh dyno would not.
NOT_FROM_THE_PLATFORM = ("DATABASE_URL", "RATELIMIT_STORAGE_URI", "SECRET_KEY",
                         "WEB_CONCURRENCY", "PORT", "INSTANCE_PATH")


def web_command() -> str:
    """The ``web:`` process's command, exactly as the Procfile gives it."""
    lines = [line for line in PROCFILE.read_text().splitlines() if line.startswith("web:")]
    assert len(lines) == 1, lines
    return lines[0].removeprefix("web:").strip()


def platform_env(port: int, instance: Path, model_dir: Path, **config_vars: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SENTIMENT_") and key not in NOT_FROM_THE_PLATFORM}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(PORT=str(port), INSTANCE_PATH=str(instance),
               SENTIMENT_MODEL_DIR=str(model_dir), **config_vars)
    return env


class WebProcess:
    """``sh -c <the web: command>`` in a session of its own, its output in ``log``."""

    def __init__(self, env: dict[str, str], log: Path, cores: set[int] | None = None) -> None:
        self.port = int(env["PORT"])
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                ["sh", "-c", web_command()], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=cores and (lambda: os.sched_setaffinity(0, cores)))

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return call(self.port, method, path, body)  # 127.0.0.1: the server binds 0.0.0.0

    def wait_until_serving(self) -> None:
        """/api/health answers 200 and every worker has built its app ("Serving on")."""
        announced = f"Serving on http://0.0.0.0:{self.port}"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (
                f"exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                healthy = self.call("GET", "/api/health")[0] == 200
            except OSError:
                healthy = False
            if healthy and announced in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise AssertionError(f"not serving after {START_SECONDS} s:\n{self.tail()}")

    def workers(self) -> int:
        """Worker processes of the server; the command's own process must be gunicorn's
        arbiter (the shell replaced by ``exec``), or a SIGTERM to it alone is lost."""
        server = psutil.Process(self.proc.pid)
        assert "app.py" in server.cmdline(), server.cmdline()
        return len(server.children())

    def terminate(self) -> int:
        """SIGTERM to the process group, as the platform stops a dyno; the exit status."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {STOP_SECONDS} s after SIGTERM:\n"
                                 f"{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL to the group of a server still running (a test that failed)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_SECONDS)


@contextmanager
def web_process(env: dict[str, str], log: Path,
                cores: set[int] | None = None) -> Iterator[WebProcess]:
    web = WebProcess(env, log, cores)
    try:
        yield web
    finally:
        web.kill()


def predict(web: WebProcess) -> dict[str, Any]:
    status, body = web.call("POST", "/api/predict", {"review": REVIEW})
    assert status == 200, (body, web.tail())
    return body


@pytest.mark.slow
def test_the_web_line_serves_on_port_and_stops_cleanly_on_sigterm(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """No WEB_CONCURRENCY: the app's default, one worker per usable core (two at most
    here, as a container's CPU limit would allow, to keep the test light)."""
    cores = set(sorted(os.sched_getaffinity(0))[:2])
    env = platform_env(free_port(), tmp_path / "instance", tiny_model_dir)
    with web_process(env, tmp_path / "web.log", cores) as web:
        web.wait_until_serving()
        assert web.workers() == len(cores)
        body = predict(web)
        assert body["label"] in ("positive", "negative") and body["prediction_id"]
        code = web.terminate()
    assert code == 0, web.tail()
    assert "Shutting down: Master" in web.tail()


@pytest.mark.slow
def test_the_web_line_runs_the_several_hosts_configuration(
        tmp_path: Path, tiny_model_dir: Path, postgres_cluster: Any) -> None:
    """DATABASE_URL (PostgreSQL), RATELIMIT_STORAGE_URI (Redis) and WEB_CONCURRENCY, as
    config vars: the verdict lands in the shared database, the counts in Redis."""
    url = postgres_cluster.new_database()
    with throwaway_redis() as limits_store:
        env = platform_env(free_port(), tmp_path / "instance", tiny_model_dir,
                           DATABASE_URL=url, RATELIMIT_STORAGE_URI=limits_store.url,
                           SECRET_KEY="shared-by-every-host", WEB_CONCURRENCY="2")
        with web_process(env, tmp_path / "web.log") as web:
            web.wait_until_serving()
            assert web.workers() == 2
            prediction = predict(web)
            status, verdict = web.call("POST", "/api/feedback",
                                       {"prediction_id": prediction["prediction_id"],
                                        "correct": False})
            assert status == 201, (verdict, web.tail())
            counted = redis.Redis.from_url(limits_store.url)
            try:
                assert list(counted.scan_iter(match="LIMITS:*")), "no rate-limit counts in Redis"
            finally:
                counted.close()
            code = web.terminate()
    assert code == 0, web.tail()

    flipped = 1 - ("negative", "positive").index(prediction["label"])
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT correct, label FROM feedback WHERE id = %s",
                            (verdict["feedback_id"],)).fetchall()
    assert rows == [(0, flipped)]
