"""The feedback log opened by several processes at once."""

from __future__ import annotations

import base64
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from sentiment.storage import log as log_module
from sentiment.storage.log import TIME_DIGITS, prediction_tokens
from sentiment.storage.sqlite import SQLiteFeedbackLog as FeedbackLog

OPENERS = 6
ROUNDS = 40


def open_log(path: Path, barrier) -> None:
    barrier.wait()
    FeedbackLog(path).close()


@pytest.mark.slow
def test_processes_opening_a_new_database_together_all_succeed(tmp_path: Path) -> None:
    # Pre-forked workers start together on a fresh instance folder: each one
    # switches the new file to WAL, and SQLite may refuse the loser at once
    # rather than wait. Before the open was retried, ~3% of openers here died.
    fork = multiprocessing.get_context("fork")
    failed = 0
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / "reviews.sqlite"
        barrier = fork.Barrier(OPENERS)
        openers = [fork.Process(target=open_log, args=(path, barrier)) for _ in range(OPENERS)]
        for p in openers:
            p.start()
        for p in openers:
            p.join(60)
        failed += sum(p.exitcode != 0 for p in openers)
    assert failed == 0, f"{failed} of {OPENERS * ROUNDS} openers failed"


def test_a_writer_holds_a_lock_other_processes_wait_on(tmp_path: Path) -> None:
    # Writers of other processes queue on an flock of this file (woken when it
    # is released) instead of polling SQLite's lock from its busy handler.
    import fcntl
    import os

    path = tmp_path / "reviews.sqlite"
    log = FeedbackLog(path)
    other = os.open(path.with_name("reviews.sqlite-writer.lock"), os.O_RDWR)
    try:
        with log.exclusive(), pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)


def test_a_log_of_an_earlier_release_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite"
    old = sqlite3.connect(path)  # predictions as stored before feature columns were kept
    old.executescript("""
        CREATE TABLE predictions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, review TEXT NOT NULL,
            label INTEGER NOT NULL CHECK (label IN (0, 1)), probability REAL NOT NULL,
            model_version TEXT NOT NULL, client TEXT, created TEXT NOT NULL);
        INSERT INTO predictions (review, label, probability, model_version, created)
            VALUES ('An old review, kept.', 1, 0.9, 'base+0', '2026-01-01');
    """)
    old.close()
    log = FeedbackLog(path)
    log.add_verdict(1, correct=False)
    [(new, token)] = log.add_predictions([("A new one.", 0, 0.8, b"columns")], "base+1",
                                         browser="a browser")
    assert log.prediction_id(token) == new and log.prediction_id("not a token") is None
    stored_old, stored_new = log.prediction(1), log.prediction(new)
    assert stored_old is not None and stored_old.view_token is None  # no permalink then
    assert stored_new is not None and stored_new.view_token not in (None, token)
    assert log.prediction_to_view(stored_new.view_token) == stored_new  # type: ignore[arg-type]
    [(api, _)] = log.add_predictions([("Asked through the API.", 1, 0.7, None)], "base+1")
    assert log.prediction(api).view_token is None  # type: ignore[union-attr]  # none shown
    assert log.verdict_on(1) is not None and log.verdict_on(new) is None
    log.add_verdict(new, correct=True)
    old_verdict, new_verdict = log.accepted_after(0)
    assert (old_verdict.review, old_verdict.label, old_verdict.features) == \
        ("An old review, kept.", 0, None)
    assert (new_verdict.review, new_verdict.label, new_verdict.features) == \
        ("A new one.", 0, b"columns")
    log.close()
    FeedbackLog(path).close()  # opening an upgraded log again changes nothing


def test_a_log_without_text_keys_gets_them_and_still_finds_repeats(tmp_path) -> None:
    """Repeats are found by an index on (client, hashed text), filled in for older rows."""
    path = tmp_path / "reviews.sqlite"
    log = FeedbackLog(path)
    [(first, _), (second, _)] = log.add_predictions(
        [("The same review, twice.", 1, 0.9, None)] * 2, "base+0", "10.0.0.1")
    log.add_verdict(first, correct=False, client="10.0.0.1")
    log.close()
    with sqlite3.connect(path) as db:  # as a log of the release before text keys
        db.execute("DROP INDEX feedback_client_text")
        db.execute("ALTER TABLE feedback DROP COLUMN text_key")
        db.execute("DROP TABLE schema_migrations")  # (which came later still)
    log = FeedbackLog(path)
    repeat = log.add_verdict(second, correct=False, client="10.0.0.1")
    assert repeat.repeat_of == 1
    with sqlite3.connect(path) as db:
        plan = " ".join(str(r) for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM feedback WHERE client = ? AND text_key = ?"
            " AND status = 'accepted' AND repeat_of IS NULL ORDER BY id LIMIT 1", ("x", b"k")))
    assert "feedback_client_text" in plan
    log.close()


def test_prediction_tokens_sort_by_time_and_keep_128_random_bits(monkeypatch) -> None:
    clock = iter([1_700_000_000_123 * 10**6, 1_700_000_000_124 * 10**6])
    monkeypatch.setattr(log_module.time, "time_ns", lambda: next(clock))
    first, later = prediction_tokens(500), prediction_tokens(3)
    for token in first + later:
        assert re.fullmatch(f"[0-9a-f]{{{TIME_DIGITS}}}[A-Za-z0-9_-]{{22}}", token)
        assert len(base64.urlsafe_b64decode(token[TIME_DIGITS:] + "==")) == 16
    assert first[0][:TIME_DIGITS] == f"{1_700_000_000_123:0{TIME_DIGITS}x}"
    assert max(first) < min(later)  # what keeps the index growing at its end
    assert len({t[TIME_DIGITS:] for t in first + later}) == 503  # each its own random part
