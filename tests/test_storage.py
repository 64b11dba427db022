"""The log's backends: one order without gaps, migrations, several hosts on one PostgreSQL.

The learner, guard, trust and exactly-once suites run on both backends
(``both_backends``); this module proves what only several connections or
several hosts can show.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from sentiment.storage import SQLFeedbackLog, open_log
from sentiment.storage.log import LogUnavailable
from sentiment.storage.migrations import MIGRATIONS
from tests.fakes import make_review
from tests.reference import ROOT, log_of, query, reference_state

WRITERS = 8
VERDICTS_EACH = 40


def predictions(log: SQLFeedbackLog, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    rows = [(make_review(rng, i % 2), i % 2, 0.6, None) for i in range(n)]
    return [pid for pid, _ in log.add_predictions(rows, "base+0")]


@pytest.mark.both_backends
def test_many_writers_on_their_own_connections_never_make_a_reader_skip_a_verdict(
        tmp_path: Path, backend: str | None) -> None:
    """Eight writers (each its own log object: its own connections) commit verdicts while
    a reader follows the log as the learner does ("accepted after the last id seen").
    Whatever the interleaving, the reader sees every verdict once, in id order."""
    path = tmp_path / "log.sqlite"
    setup = open_log(backend, path, durable=False)
    todo = [predictions(setup, VERDICTS_EACH, seed) for seed in range(WRITERS)]
    done = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def writer(ids: list[int]) -> None:
        log = open_log(backend, path, durable=False)
        try:
            for pid in ids:
                log.add_verdict(pid, correct=pid % 3 != 0)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            log.close()

    def reader() -> None:
        log = open_log(backend, path, durable=False)
        last = 0
        try:
            while True:
                finished = done.is_set()  # read before the log: the last pass sees all
                for verdict in log.accepted_after(last):
                    seen.append(verdict.id)
                    last = verdict.id
                if finished:
                    return
        finally:
            log.close()

    follower = threading.Thread(target=reader)
    follower.start()
    writers = [threading.Thread(target=writer, args=(ids,)) for ids in todo]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    follower.join()
    assert not errors, errors[:3]
    stored = [v.id for v in setup.accepted_after(0)]
    setup.close()
    assert len(stored) == WRITERS * VERDICTS_EACH
    assert seen == stored, "the reader skipped or repeated a verdict"


@pytest.mark.both_backends
def test_a_committed_verdict_is_answered_without_touching_the_database_again(
        tmp_path: Path, backend: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database going away right after a verdict's commit must not turn a stored
    verdict into a "try again" (a client would then think it lost)."""
    log = open_log(backend, tmp_path / "log.sqlite", durable=False)
    [pid] = predictions(log, 1, seed=3)

    def out_of_reach(*args: object) -> None:
        raise LogUnavailable("the database went away")

    monkeypatch.setattr(log, "_read_alone", out_of_reach)  # any read outside the commit
    verdict = log.add_verdict(pid, correct=False)
    assert (verdict.prediction_id, verdict.status, verdict.correct) == (pid, "accepted", False)
    monkeypatch.undo()
    assert log.verdict(verdict.id) == verdict
    log.close()


def test_without_the_log_lock_postgresql_commits_ids_out_of_order(postgres_cluster) -> None:
    """The pitfall the advisory lock exists for: two plain inserts, the later id commits
    first, and a reader at that moment sees id N+1 without id N."""
    url = postgres_cluster.new_database()
    log = open_log(url, Path("unused"), durable=False)
    [first, second] = predictions(log, 2, seed=1)
    insert = ("INSERT INTO feedback (prediction_id, correct, label, created)"
              " VALUES (%s, 1, 1, 'now') RETURNING id")
    with psycopg.connect(url) as slow, psycopg.connect(url) as quick:
        early = slow.execute(insert, (first,)).fetchone()[0]  # not committed yet
        late = quick.execute(insert, (second,)).fetchone()[0]
        quick.commit()
        assert late > early
        assert [v.id for v in log.accepted_after(0)] == [late]  # a reader moves past early
        slow.commit()
    assert [v.id for v in log.accepted_after(late)] == []  # ... and never sees it
    log.close()


def test_a_verdict_waits_for_the_ordered_transaction_before_it(postgres_cluster) -> None:
    """With the lock, a verdict cannot even draw its id while an earlier one is open."""
    url = postgres_cluster.new_database()
    holder, waiter = (open_log(url, Path("unused"), durable=False) for _ in range(2))
    [pid] = predictions(waiter, 1, seed=2)
    finished = threading.Event()
    opened = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder.exclusive():
            opened.set()
            release.wait(30)

    holding = threading.Thread(target=hold)
    holding.start()
    opened.wait(30)
    voting = threading.Thread(target=lambda: (waiter.add_verdict(pid, True), finished.set()))
    voting.start()
    assert not finished.wait(0.5), "the verdict committed inside another ordered transaction"
    release.set()
    holding.join()
    voting.join(30)
    assert finished.is_set()
    holder.close()
    waiter.close()


# -- several hosts -------------------------------------------------------------------
def host(make_app, tmp_path: Path, name: str, **config):
    """An app with an instance folder of its own on the test's PostgreSQL log: a host."""
    return make_app(INSTANCE_PATH=str(tmp_path / name), CHECKPOINT_SECONDS=1e9, **config)


def verdicts(app, n: int, seed: int, wrong: float = 0.1) -> list[int]:
    client, rng, ids = app.test_client(), random.Random(seed), []
    for _ in range(n):
        label = rng.randrange(2)
        body = client.post("/api/predict", json={"review": make_review(rng, label)}).get_json()
        honest = (body["label"] == "positive") == bool(label)
        r = client.post("/api/feedback", json={
            "prediction_id": body["prediction_id"],
            "correct": honest if rng.random() >= wrong else not honest})
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["feedback_id"])
    return ids


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_host_learns_another_hosts_verdict_without_being_asked(
        make_app, tmp_path: Path, backend: str) -> None:
    """Host B's follower (LISTEN/NOTIFY) applies host A's verdict with no request to B."""
    a, b = host(make_app, tmp_path, "a"), host(make_app, tmp_path, "b")
    learner_b = b.extensions["learner"]
    learner_b.start_following()
    delays = []
    for seed in range(5):
        [verdict_id] = verdicts(a, 1, seed)
        start = time.monotonic()
        while learner_b.applied_id < verdict_id:  # read, never sync: only the follower acts
            assert time.monotonic() - start < 10, "host B never learned host A's verdict"
            time.sleep(0.001)
        delays.append(time.monotonic() - start)
    learner_b.stop_threads()
    assert learner_b.model.state().equals(a.extensions["learner"].model.state())
    # Each host reports how long after their commit it learned the others' verdicts.
    lag_b = learner_b.status()["follow_lag_ms"]
    assert lag_b["verdicts"] == 5 and 0 <= lag_b["p50"] <= lag_b["p99"] < 10_000
    assert a.extensions["learner"].status()["follow_lag_ms"]["verdicts"] == 0  # its own
    print(f"\nhost B applied host A's verdicts after {[round(d * 1000, 1) for d in delays]} ms")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_hosts_share_versions_quarantines_and_rollbacks(
        make_app, tmp_path: Path, tiny_model_dir: Path, backend: str) -> None:
    """Each host has its own instance folder; the log and the chain of versions are one.
    Checkpoints published by either host, a rollback made on one host: every host reports
    the same version and the same model, equal to the log replayed."""
    a = host(make_app, tmp_path, "a", CHECKPOINT_EVERY=4)
    b = host(make_app, tmp_path, "b", CHECKPOINT_EVERY=4)
    la, lb = a.extensions["learner"], b.extensions["learner"]
    verdicts(a, 6, seed=1)
    verdicts(b, 6, seed=2)
    verdicts(a, 5, seed=3)
    for learner in (la, lb):
        learner.sync()
    chain = la.store.chain()
    assert len(chain) >= 3 and chain == lb.store.chain()
    status_a, status_b = la.status(), lb.status()
    assert status_a["model_version"] == status_b["model_version"]
    assert status_a["model_digest"] == status_b["model_digest"] == \
        reference_state(tiny_model_dir, log_of(a)).digest()

    # A rollback on host A: host B, whose own checkpoint came later, goes back too.
    target = chain[1]
    assert la.rollback(target) > 0
    lb.sync()
    assert lb.version.name == la.version.name == target
    expected = reference_state(tiny_model_dir, log_of(a)).digest()
    assert la.status()["model_digest"] == lb.status()["model_digest"] == expected
    # A third host started now reaches the same model from the shared versions.
    c = host(make_app, tmp_path, "c")
    assert c.extensions["learner"].status()["model_digest"] == expected
    assert c.extensions["learner"].version.name == target


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_with_the_database_down_predictions_serve_and_verdicts_answer_503(
        make_app, tmp_path: Path, backend: str, postgres_cluster) -> None:
    app = host(make_app, tmp_path, "a", WTF_CSRF_ENABLED=False)
    client = app.test_client()
    review = "A moving story, with a wonderful cast and a score I keep humming."
    body = client.post("/api/predict", json={"review": review}).get_json()
    before = app.extensions["learner"].applied_id
    postgres_cluster.stop()
    try:
        r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                              "correct": False})
        assert r.status_code == 503 and r.headers["Retry-After"], r.get_data(as_text=True)
        assert "try again" in r.get_json()["error"] and "postgresql" not in r.get_json()["error"]
        down = client.post("/api/predict", json={"review": review})
        assert down.status_code == 200, down.get_data(as_text=True)
        answer = down.get_json()
        assert answer["label"] == body["label"] and answer["prediction_id"] is None
        page = client.post("/results", data={"review": review})
        assert page.status_code == 200 and "cannot take corrections" in page.get_data(
            as_text=True)
    finally:
        postgres_cluster.start()
    # Back: nothing was half-stored, and the same verdict is taken once the app's
    # connections are made again (a client retrying as Retry-After says).
    assert query(log_of(app), "SELECT COUNT(*) FROM feedback") == [(0,)]
    back = time.monotonic()
    while True:
        r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                              "correct": False})
        if r.status_code != 503 or time.monotonic() - back > 60:
            break
        time.sleep(0.2)
    assert r.status_code == 201, r.get_data(as_text=True)
    print(f"\nverdicts taken again {time.monotonic() - back:.1f} s after the database was back")
    app.extensions["learner"].sync()
    assert app.extensions["learner"].applied_id > before


# -- migrations ----------------------------------------------------------------------
@pytest.mark.slow  # four `flask` processes
@pytest.mark.both_backends
def test_db_upgrade_and_status_from_the_command_line(tmp_path: Path, backend: str | None,
                                                     tiny_model_dir: Path) -> None:
    env = {"INSTANCE_PATH": str(tmp_path / "instance"), "SENTIMENT_MODEL_DIR":
           str(tiny_model_dir), "PATH": "/usr/bin:/bin"}
    if backend:
        env["DATABASE_URL"] = backend

    def flask(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", *args],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    newest = MIGRATIONS[-1]
    assert f"pending  {newest.version:>3}  {newest.name}" in flask("status")
    assert f"applied {newest.version}: {newest.name}" in flask("upgrade")
    status = flask("status")
    assert "pending" not in status and f"applied  {newest.version:>3}" in status
    assert "up to date" in flask("upgrade")  # again: nothing to do


def test_a_migration_not_safe_on_start_stops_the_app_until_db_upgrade(tmp_path: Path) -> None:
    from dataclasses import replace

    from sentiment.storage.migrations import MigrationNeeded
    from sentiment.storage.sqlite import SQLiteFeedbackLog

    path = tmp_path / "log.sqlite"
    SQLiteFeedbackLog(path).close()
    rewrite = replace(MIGRATIONS[-1], version=99, name="a long rewrite", on_start=False,
                      steps={"sqlite": ("CREATE TABLE rewritten (x INTEGER)",),
                             "postgresql": ()})
    with pytest.raises(MigrationNeeded, match="db upgrade"):
        SQLiteFeedbackLog(path, migrations=(*MIGRATIONS, rewrite))
    log = SQLiteFeedbackLog(path, upgrade=False)
    assert [m.version for m in log.migrate((*MIGRATIONS, rewrite), on_start=False)] == [99]
    log.close()
    SQLiteFeedbackLog(path, migrations=(*MIGRATIONS, rewrite)).close()  # starts now


@pytest.mark.postgresql  # the PostgreSQL backend's start (no cluster needed: none answers)
def test_an_unreachable_database_stops_the_start_with_a_readable_error(make_app) -> None:
    from sentiment.web.factory import StartupError

    with pytest.raises(StartupError, match="cannot use the feedback log") as info:
        make_app(DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/nothing")
    assert "secret" not in str(info.value)
    with pytest.raises(LogUnavailable):
        open_log("postgresql://127.0.0.1:1/x", Path("unused"))


def _write_from_a_new_thread(log: SQLFeedbackLog, rows: list, batches: int) -> None:
    """As a request thread does: its own connection, opened now."""
    def write() -> None:
        for _ in range(batches):
            log.add_predictions(rows, "base+0")
    thread = threading.Thread(target=write)
    thread.start()
    thread.join()


def test_once_handed_over_the_write_ahead_log_is_copied_by_the_upkeep_not_by_commits(
        tmp_path: Path) -> None:
    """Seen from the database file, which grows only when a checkpoint copies pages
    into it: by the commits themselves past 1,000 pages (SQLite's default), by the
    upkeep alone once handed over (the commits then wait for the backstop)."""
    from sentiment.storage.sqlite import BACKSTOP_PAGES, SQLiteFeedbackLog

    rows = [(f"review {i} " + "x" * 1500, i % 2, 0.6, b"\x01" * 1500) for i in range(500)]
    mb = 1024 * 1024
    by_commits = SQLiteFeedbackLog(tmp_path / "commits.sqlite")
    _write_from_a_new_thread(by_commits, rows, 4)  # some 3,000 pages
    assert (tmp_path / "commits.sqlite").stat().st_size > 3 * mb

    handed = SQLiteFeedbackLog(tmp_path / "upkeep.sqlite")
    upkeep = handed.hand_over_upkeep()
    _write_from_a_new_thread(handed, rows, 4)
    assert (tmp_path / "upkeep.sqlite").stat().st_size < mb  # still in the log
    assert handed._connect().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    upkeep()
    assert (tmp_path / "upkeep.sqlite").stat().st_size > 3 * mb
    token = handed.add_predictions(rows[:1], "base+0")[0][1]  # the log goes on as before
    assert handed.prediction_id(token) == 4 * len(rows) + 1
    for log in (by_commits, handed):
        log.close()


@pytest.mark.both_backends
def test_a_server_hands_the_logs_upkeep_to_a_thread_of_its_own(make_app, backend) -> None:
    """SQLite's checkpoints of its write-ahead log; PostgreSQL has none to hand over."""
    learner = make_app().extensions["learner"]
    learner.start_log_upkeep()
    threads = [t for t in threading.enumerate() if t.name == "log-upkeep"]
    assert len(threads) == (1 if backend is None else 0)
    learner.stop_threads()
    assert not any(t.is_alive() for t in threads)
