"""``python app.py --workers N``: gunicorn's worker processes on one port.

Real processes on a real port: each worker accepts on a socket of its own on
that port, they share the instance folder, a killed worker is replaced, a
worker that cannot start stops the whole server instead of looping, and
SIGTERM leaves a final checkpoint that equals the accepted log replayed from
scratch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.services import free_port
from sentiment.learning.versions import VersionStore
from sentiment.models.linear import SentimentModel
from sentiment.serving.server import check_port_free
from tests.fakes import make_reviews
from tests.reference import ROOT, call, reference_state


def start(instance: Path, model_dir: Path, log: Path, workers: int | None = 2,
          cores: set[int] | None = None,
          settings: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """``python app.py`` with ``workers`` (None: the default) on the CPU ``cores``
    (None: this process's), with the environment's ``settings`` added."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SENTIMENT_") and k not in ("WEB_CONCURRENCY", "DATABASE_URL")}
    env.update(INSTANCE_PATH=str(instance), SENTIMENT_MODEL_DIR=str(model_dir),
               SENTIMENT_RATE_LIMITS="false", SENTIMENT_GUARD="false")
    env.update(settings or {})
    env.pop("SECRET_KEY", None)  # the workers create the key together, as on a first start
    command = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", "2"]
    if workers is not None:
        command += ["--workers", str(workers)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT,
                                preexec_fn=cores and (lambda: os.sched_setaffinity(0, cores)))
    return proc, port


def wait_until_serving(proc: subprocess.Popen, port: int, log: Path, workers: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        children = psutil.Process(proc.pid).children()
        try:
            if len(children) == workers and call(port, "GET", "/api/health", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not start:\n" + log.read_text()[-3000:])


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        raise


def listening_socket(pid: int, port: int) -> str:
    """The one socket the process listens on ``port`` with (its kernel identity)."""
    found = {os.readlink(f"/proc/{pid}/fd/{c.fd}")
             for c in psutil.Process(pid).net_connections(kind="tcp")
             if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert len(found) == 1, found
    return found.pop()


def connections_per_worker(parent: int, port: int) -> dict[int, int]:
    return {child.pid: sum(1 for c in child.net_connections(kind="tcp")
                           if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
            for child in psutil.Process(parent).children()}


def predict_and_judge(port: int, n: int, seed: int) -> int:
    for i, (review, _) in enumerate(make_reviews(n, seed)):
        status, body = call(port, "POST", "/api/predict", {"review": review})
        assert status == 200, body
        status, body = call(port, "POST", "/api/feedback",
                            {"prediction_id": body["prediction_id"], "correct": i % 3 != 0})
        assert status == 201, body
    return n


@pytest.mark.slow
def test_workers_share_the_port_survive_a_kill_and_checkpoint_on_sigterm(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    instance, log = tmp_path / "instance", tmp_path / "app.log"
    proc, port = start(instance, tiny_model_dir, log)
    try:
        wait_until_serving(proc, port, log, workers=2)
        first = {c.pid for c in psutil.Process(proc.pid).children()}
        sockets = {pid: listening_socket(pid, port) for pid in first}
        assert len(set(sockets.values())) == 2  # a socket of its own each
        # The kernel spreads new connections over the two sockets: 24 open
        # connections all on one worker would happen once in 2**23 starts.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(24)]
        try:
            for conn in clients:  # a request on each: accepted, not just queued
                conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(100).startswith(b"HTTP/1.1 200 ")
            spread = connections_per_worker(proc.pid, port)
            assert sum(spread.values()) == 24 and min(spread.values()) > 0, spread
        finally:
            for conn in clients:
                conn.close()
        acked = predict_and_judge(port, 30, seed=0)
        # A body declared far over the limit is refused before it is sent.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 900000000\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 413 ")

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = {c.pid for c in psutil.Process(proc.pid).children()}
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        assert victim not in now and len(now) == 2, log.read_text()[-3000:]
        wait_until_serving(proc, port, log, workers=2)
        (replacement,) = now - first  # listens on a socket of its own
        assert listening_socket(replacement, port) not in sockets.values()
        acked += predict_and_judge(port, 30, seed=1000)
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert f"Worker (pid:{victim}) was sent SIGKILL" in log.read_text()

    # Every acknowledged verdict is in the final checkpoint, exactly once.
    db = instance / "reviews.sqlite"
    base = SentimentModel.load(tiny_model_dir)
    info, state = VersionStore(instance / "models", base.base_id, base.state(),
                               base.state_from_bytes).load_current()
    expected = reference_state(tiny_model_dir, db)
    assert info.last_feedback_id == acked
    assert state.equals(expected)


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores")
@pytest.mark.parametrize("n_cores", [1, 2])
def test_by_default_one_worker_serves_per_usable_core(tmp_path: Path, tiny_model_dir: Path,
                                                      n_cores: int) -> None:
    """One worker process per core the server may run on (its affinity, as a
    container or taskset sets it)."""
    cores = set(sorted(os.sched_getaffinity(0))[:n_cores])
    log = tmp_path / "app.log"
    proc, port = start(tmp_path / "instance", tiny_model_dir, log, workers=None, cores=cores)
    try:
        wait_until_serving(proc, port, log, workers=n_cores)
        assert len(psutil.Process(proc.pid).children()) == n_cores
        deadline = time.monotonic() + 30
        while not announced(log) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    assert announced(log) == [f"Serving on http://127.0.0.1:{port}"]


def announced(log: Path) -> list[str]:
    """The server's own "Serving on" line, printed once every worker has built its app."""
    return [line for line in log.read_text().splitlines() if line.startswith("Serving on")]


@pytest.mark.slow
def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path,
                                                     tiny_model_dir: Path) -> None:
    log = tmp_path / "app.log"
    not_a_folder = tmp_path / "instance"
    not_a_folder.write_text("a file where the instance folder should be")
    proc, _ = start(not_a_folder, tiny_model_dir, log)
    try:
        code = proc.wait(timeout=120)
    finally:
        stop(proc)
    assert code == 3, log.read_text()[-3000:]  # gunicorn: a worker failed to boot
    assert "Worker failed to boot" in log.read_text()
    assert not announced(log)  # only once every worker serves
    assert f"error: cannot start the app: the instance folder {not_a_folder} is a file" \
        in log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_bad_settings_and_an_unusable_port_are_refused_in_one_line(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """Each used to be a traceback; --threads 0 served nothing, --port 70000 port 4464."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    (tmp_path / "file").write_text("not a folder")
    cases = {  # name: (arguments, environment, exit status, the one line of error)
        "port out of range": (["--port", "70000"], {}, 2,
                              "argument --port: '70000' is not a port number"),
        "port not a number": ([], {"SENTIMENT_PORT": "abc"}, 2,
                              "error: SENTIMENT_PORT must be a valid integer"),
        "no threads": (["--threads", "0"], {}, 2, "'0' is not a number of threads"),
        "no workers": (["--workers", "0"], {"SENTIMENT_WORKERS": "2"}, 2,
                       "'0' is not a number of processes"),
        "no workers, from the environment": ([], {"SENTIMENT_WORKERS": "0"}, 2,
                                             "error: SENTIMENT_WORKERS must be greater than"),
        "a setting of the wrong kind": ([], {"SENTIMENT_CHECKPOINT_EVERY": "x"}, 2,
                                        "error: SENTIMENT_CHECKPOINT_EVERY must be a valid "
                                        "integer"),
        # gunicorn itself would read it on import and end in a traceback.
        "a platform's worker count that is no number": (
            [], {"WEB_CONCURRENCY": "abc"}, 2, "error: WEB_CONCURRENCY must be a valid integer"),
        "a database URL that is not PostgreSQL's": (
            [], {"DATABASE_URL": "mysql://x/y"}, 2, "error: DATABASE_URL must be a postgresql://"),
        "a misspelt setting": ([], {"SENTIMENT_CHECKPOINTS_EVERY": "5"}, 2,
                               "error: SENTIMENT_CHECKPOINTS_EVERY is not a setting"),
        "a rate limit that does not parse": ([], {"SENTIMENT_PREDICT_LIMIT": "often"}, 2,
                                             "error: SENTIMENT_PREDICT_LIMIT must be rate limits"),
        "port in use": (["--port", str(busy)], {}, 1,
                        f"error: cannot listen on 127.0.0.1:{busy}: Address already in use"),
        "port in use, 2 workers": (["--port", str(busy), "--workers", "2"], {}, 1,
                                   "Address already in use"),
        "instance folder a file": ([], {"INSTANCE_PATH": str(tmp_path / "file")}, 3,
                                   "error: cannot start the app: the instance folder"),
    }
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SENTIMENT_") and k not in ("WEB_CONCURRENCY", "DATABASE_URL")}
    env.update(INSTANCE_PATH=str(tmp_path / "instance"), SENTIMENT_MODEL_DIR=str(tiny_model_dir))
    runs = {}
    try:
        for name, (args, extra, _, _) in cases.items():  # at once: each imports the libraries
            if "--port" not in args and "SENTIMENT_PORT" not in extra:
                args = ["--port", str(free_port()), *args]
            runs[name] = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args],
                                          cwd=ROOT, env={**env, **extra}, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for name, (_, _, status, message) in cases.items():
            output, _ = runs[name].communicate(timeout=120)
            assert runs[name].returncode == status, (name, output)
            assert message in output and "Traceback" not in output, (name, output)
            assert "Serving on" not in output, (name, output)
    finally:
        taken.close()
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()


@pytest.mark.slow
def test_a_missing_model_stops_the_server_before_any_worker_starts(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    proc, _ = start(tmp_path / "instance", tmp_path / "no-such-model", log)
    try:
        code = proc.wait(timeout=120)
    finally:
        stop(proc)
    assert code == 1, log.read_text()[-3000:]
    lines = log.read_text().splitlines()
    assert lines == [f"error: cannot load the model: [Errno 2] No such file or directory: "
                     f"'{tmp_path / 'no-such-model' / 'manifest.json'}'"], lines


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_parent_stops_every_worker(
    tmp_path: Path, tiny_model_dir: Path, signum: int
) -> None:
    log = tmp_path / "app.log"
    proc, port = start(tmp_path / "instance", tiny_model_dir, log)
    wait_until_serving(proc, port, log, workers=2)
    children = psutil.Process(proc.pid).children()
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_a_port_in_use_is_refused_even_by_sockets_that_share_theirs() -> None:
    """The workers bind with SO_REUSEPORT; a second server with that option (say a second
    copy of this one) must not share the port with us."""
    for reuse in (False, True):
        with socket.socket() as taken:
            if reuse:
                taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError):
                check_port_free("127.0.0.1", taken.getsockname()[1])
    check_port_free("127.0.0.1", free_port())


@pytest.mark.slow
def test_idle_and_slow_connections_do_not_take_the_app_offline(tmp_path: Path,
                                                              tiny_model_dir: Path) -> None:
    """The issue's repro: 200 connections that send nothing, and slowloris clients sending a
    header line every few seconds, left every health probe unanswered."""
    log = tmp_path / "app.log"
    proc, port = start(tmp_path / "instance", tiny_model_dir, log, workers=1)
    idle: list[socket.socket] = []
    try:
        wait_until_serving(proc, port, log, workers=1)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
        slow = idle[:40]
        for conn in slow:
            conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            for conn in slow:
                conn.sendall(b"X-Slow: a\r\n")
            started = time.monotonic()
            status, _ = call(port, "GET", "/api/health", timeout=5)
            assert status == 200 and time.monotonic() - started < 1.0
            status, body = call(port, "POST", "/api/predict",
                                {"review": "A wonderful, brilliant, moving film."}, timeout=5)
            assert status == 200, body
            time.sleep(2)
        time.sleep(5)  # silent longer than the channel timeout: the server has closed them
        silent = idle[40:]
        closed = 0
        for conn in silent:
            conn.settimeout(0.5)
            try:
                closed += conn.recv(1) == b""
            except OSError:
                closed += 1
        assert closed == len(silent)
    finally:
        for conn in idle:
            conn.close()
        assert stop(proc) == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_behind_a_trusted_proxy_each_client_is_its_forwarded_address(tmp_path, tiny_model_dir):
    """waitress drops X-Forwarded-For unless told not to: every client behind the proxy
    would then be one client to the rate limits, the repeat rule and the trust policy."""
    import json
    import sqlite3
    import urllib.request

    log = tmp_path / "server.log"
    proc, port = start(tmp_path / "instance", tiny_model_dir, log, workers=1,
                       settings={"SENTIMENT_TRUSTED_PROXIES": "1"})
    try:
        wait_until_serving(proc, port, log, 1)
        for address in ("203.0.113.7", "203.0.113.8"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/predict", method="POST",
                data=json.dumps({"review": "A fine film, warmly acted."}).encode(),
                headers={"Content-Type": "application/json", "X-Forwarded-For": address})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
    finally:
        assert stop(proc) == 0
    with sqlite3.connect(tmp_path / "instance" / "reviews.sqlite") as db:
        clients = [row[0] for row in db.execute("SELECT client FROM predictions ORDER BY id")]
    assert clients == ["203.0.113.7", "203.0.113.8"]
