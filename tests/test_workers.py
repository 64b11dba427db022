"""``python app.py --workers N``: pre-forked processes on one port, supervised.

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

import workers
from bench.serving import free_port
from model import SentimentModel
from tests.fakes import make_reviews
from tests.reference import ROOT, call, reference_state
from versions import VersionStore
from workers import MIN_WORKER_LIFETIME


def start(instance: Path, model_dir: Path, log: Path, workers: int | None = 2,
          cores: set[int] | None = None) -> tuple[subprocess.Popen, int]:
    """``python app.py`` with ``workers`` (None: the default) on the CPU ``cores``
    (None: this process's)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SENTIMENT_") and k != "WORKERS"}
    env.update(INSTANCE_PATH=str(instance), SENTIMENT_MODEL_DIR=str(model_dir),
               SENTIMENT_RATE_LIMITS="false", SENTIMENT_GUARD="false")
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
        # A body declared far over the limit is refused before it is sent (waitress
        # would otherwise take up to 1 GB of it before the app could say 413).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 900000000\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 413 ")

        time.sleep(MIN_WORKER_LIFETIME + 0.5)  # an early death would stop everything
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
        (replacement,) = now - first  # takes over the socket, and what waits on it
        assert listening_socket(replacement, port) == sockets[victim]
        acked += predict_and_judge(port, 30, seed=1000)
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "starting a new one" in log.read_text()

    # Every acknowledged verdict is in the final checkpoint, exactly once.
    db = instance / "reviews.sqlite"
    base = SentimentModel.load(tiny_model_dir)
    info, state = VersionStore(instance / "models", base.base_id, base.state()).load_current()
    expected = reference_state(tiny_model_dir, db)
    assert info.last_feedback_id == acked
    assert state.equals(expected)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores")
@pytest.mark.parametrize("n_cores", [1, 2])
def test_by_default_one_worker_serves_per_usable_core(tmp_path: Path, tiny_model_dir: Path,
                                                      n_cores: int) -> None:
    """One process per core the server may run on (its affinity, as a container or
    taskset sets it); one core: no supervisor, the process serves itself."""
    cores = set(sorted(os.sched_getaffinity(0))[:n_cores])
    log = tmp_path / "app.log"
    proc, port = start(tmp_path / "instance", tiny_model_dir, log, workers=None, cores=cores)
    try:
        wait_until_serving(proc, port, log, workers=0 if n_cores == 1 else n_cores)
        assert len(psutil.Process(proc.pid).children()) == (0 if n_cores == 1 else n_cores)
        deadline = time.monotonic() + 30  # the supervisor looks for ready workers every 0.1 s
        while not announced(log) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    assert announced(log) == [
        f"Serving on http://127.0.0.1:{port}" if n_cores == 1 else
        f"Serving on http://127.0.0.1:{port} with {n_cores} worker processes"]


def announced(log: Path) -> list[str]:
    """The server's own "Serving on" lines (waitress logs one per worker too, prefixed)."""
    return [line for line in log.read_text().splitlines() if line.startswith("Serving on")]


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
    assert code == 1, log.read_text()[-3000:]
    assert "right after starting; stopping" in log.read_text()
    assert not announced(log)  # only once every worker serves
    assert f"error: cannot start the app: the instance folder {not_a_folder} is a file" \
        in log.read_text()
    assert "Traceback" not in log.read_text()


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
        "PORT not a number": ([], {"PORT": "abc"}, 2, "argument --port: 'abc' is not a port"),
        "no threads": (["--threads", "0"], {}, 2, "'0' is not a number of threads"),
        "no workers": (["--workers", "0"], {"WORKERS": "2"}, 2,
                       "'0' is not a number of processes"),
        "a setting of the wrong kind": ([], {"SENTIMENT_CHECKPOINT_EVERY": "x"}, 2,
                                        "error: SENTIMENT_CHECKPOINT_EVERY must be an integer"),
        "a rate limit that does not parse": ([], {"SENTIMENT_PREDICT_LIMIT": '"often"'}, 2,
                                             "error: SENTIMENT_PREDICT_LIMIT must be rate limits"),
        "port in use": (["--port", str(busy)], {}, 1,
                        f"error: cannot listen on 127.0.0.1:{busy}: Address already in use"),
        "port in use, 2 workers": (["--port", str(busy), "--workers", "2"], {}, 1,
                                   "Address already in use"),
        "instance folder a file": ([], {"INSTANCE_PATH": str(tmp_path / "file")}, 1,
                                   "error: cannot start the app: the instance folder"),
    }
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SENTIMENT_") and k not in ("PORT", "WORKERS", "THREADS")}
    env.update(INSTANCE_PATH=str(tmp_path / "instance"), SENTIMENT_MODEL_DIR=str(tiny_model_dir))
    runs = {}
    try:
        for name, (args, extra, _, _) in cases.items():  # at once: each imports the libraries
            if "--port" not in args and "PORT" not in extra:
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


STUCK_WORKER = """
import os, signal, socket, sys, threading, time
sys.path.insert(0, {root!r})
import workers

workers.STOP_GRACE = 1.0

def stuck(sock, ready):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # never finishes its checkpoint
    print("WORKER", os.getpid(), flush=True)
    while True:
        time.sleep(1)

threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
began = time.monotonic()
status = workers.Supervisor(workers.bind("127.0.0.1", 0), 1, stuck).run()
print("STOPPED", status, round(time.monotonic() - began, 1), flush=True)
"""


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", STUCK_WORKER.format(root=str(ROOT))],
                          capture_output=True, text=True, timeout=60)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert "STOPPED" in lines, done.stdout + done.stderr
    assert lines["STOPPED"].split()[0] == "0"
    assert not psutil.pid_exists(int(lines["WORKER"])) or \
        psutil.Process(int(lines["WORKER"])).status() == psutil.STATUS_ZOMBIE
    assert "did not stop in 1 s; killing it" in done.stderr


def test_bind_gives_each_worker_a_socket_and_refuses_a_port_in_use() -> None:
    sockets = workers.bind("127.0.0.1", 0, 3)
    try:
        assert len(sockets) == 3 and len({s.getsockname() for s in sockets}) == 1
        port = sockets[0].getsockname()[1]
        # Another server with SO_REUSEPORT sockets (say a second copy of this one)
        # would otherwise have shared its port with us.
        with pytest.raises(OSError):
            workers.bind("127.0.0.1", port, 2)
    finally:
        for sock in sockets:
            sock.close()
    single = workers.bind("127.0.0.1", 0)
    with single[0]:
        assert len(single) == 1
