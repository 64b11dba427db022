"""The learner's rules, one at a time: guard threshold, following the log, checkpoints.

Two apps built on one instance folder stand in for two processes.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sentiment.models.linear import REPLAYS
from tests.fakes import make_review
from tests.reference import (
    execute,
    log_of,
    other_process_versions_lock,
    query,
    reference_state,
)

QUIET = {"CHECKPOINT_EVERY": 10**6, "CHECKPOINT_SECONDS": 1e9, "DURABLE_COMMITS": False}

pytestmark = pytest.mark.both_backends


def give(learner, review: str, label: int) -> int:
    """Predict ``review`` and answer so that the learned label is ``label``."""
    pid, prediction, _ = learner.predict([review])[0]
    return learner.verdict(pid, (prediction.label == "positive") == bool(label)).id


def honest(learner, n: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        give(learner, make_review(rng, i % 2), i % 2)


def assert_model_is_the_log(app, model_dir: Path) -> None:
    learner = app.extensions["learner"]
    live = learner.model.state()
    assert live.equals(learner.rebuild().state())
    assert live.equals(reference_state(model_dir, log_of(app)))


# -- the guard ---------------------------------------------------------------------
def wrong_verdicts_reaching(learner, levels: list[float]) -> tuple[list, list[int]]:
    """Wrong verdicts, and how many of them bring the holdout to each accuracy level.

    Simulated on a copy of the live model; the learner applies the same rows
    in the same order to the same state, so it reaches the same accuracies.
    """
    data = learner.holdout.features(learner.model)
    for seed in range(11, 61):  # accuracy moves in steps: some sequences skip a level
        rng = random.Random(seed)
        clone = learner.model.clone()
        rows, counts = [], []
        while len(counts) < len(levels) and len(rows) < 2000:
            label = rng.randrange(2)
            rows.append((make_review(rng, label, sentences=1), 1 - label))
            for back in (0, *REPLAYS):  # as the learner learns each verdict
                if len(rows) > back:
                    clone.learn(*rows[-1 - back])
            accuracy = clone.accuracy(*data)
            if abs(accuracy - levels[len(counts)]) < 1e-9:
                counts.append(len(rows))
            elif accuracy < levels[len(counts)]:
                break  # skipped this level: try another sequence
        if len(counts) == len(levels):
            break
    assert len(counts) == len(levels), "the holdout never reached those accuracies"
    return rows, counts


def test_guard_threshold_is_the_margin_below_the_best_of_base_and_last_good(
        make_app, tiny_model_dir):
    app = make_app(**QUIET, GUARD_MARGIN=0.01)
    learner = app.extensions["learner"]
    base = learner.base_accuracy()
    assert base == 1.0  # the holdout has 100 reviews: one mistake is 0.01
    rows, (first, second) = wrong_verdicts_reaching(learner, [0.99, 0.98])

    for review, label in rows[:first]:
        give(learner, review, label)
    result = learner.checkpoint()
    assert result.published is not None, result  # 0.99: exactly the margin below base
    assert result.published.holdout_accuracy == pytest.approx(0.99)

    for review, label in rows[first:second]:
        give(learner, review, label)
    result = learner.checkpoint()
    # 0.98 is within the margin of the last good version (0.99), not of the base.
    assert result.published is None and result.quarantined == second - first, result
    assert result.threshold == pytest.approx(0.99)
    assert learner.version.name == "v000001"
    assert learner.holdout_accuracy() == pytest.approx(0.99)
    assert_model_is_the_log(app, tiny_model_dir)


def test_guard_off_publishes_anything(make_app, tiny_model_dir):
    app = make_app(**QUIET, GUARD=False)
    learner = app.extensions["learner"]
    rows, (count,) = wrong_verdicts_reaching(learner, [0.9])
    for review, label in rows[:count]:
        give(learner, review, label)
    result = learner.checkpoint()
    assert result.published is not None and result.accuracy is None
    assert learner.feedback.verdicts("quarantined") == []


# -- following the log ---------------------------------------------------------------
def test_two_processes_follow_one_log(make_app, tiny_model_dir):
    config = {**QUIET, "CHECKPOINT_EVERY": 5}
    a, b = make_app(**config), make_app(**config)
    la, lb = a.extensions["learner"], b.extensions["learner"]
    honest(la, 3, seed=1)
    lb.sync()
    assert lb.model.state().equals(la.model.state())
    honest(la, 4, seed=2)  # v000001 holds 1..5; 6 and 7 unsaved in a
    assert la.model_version == "v000001+7"
    lb.sync()  # b counted 7 rows, but only 2 come after the current version
    assert [v.name for v in lb.store.list()] == ["base", "v000001"]
    assert lb.model_version == la.model_version == "v000001+7"
    assert lb.model.state().equals(la.model.state())

    # A rollback in one is followed by the other (the log's generation changed).
    honest(lb, 3, seed=3)  # b publishes v000002 (1..10)
    la.sync()
    assert la.model_version == lb.model_version == "v000002+10"
    assert la.rollback("v000001") == 5
    assert not lb.model.state().equals(la.model.state())  # until it looks at the log
    lb.sync()
    assert lb.model_version == la.model_version == "v000001+5"
    assert lb.model.state().equals(la.model.state())
    assert_model_is_the_log(b, tiny_model_dir)


def test_a_verdict_on_a_review_without_words_is_learned_and_replayed(make_app, tiny_model_dir):
    """The app refuses such reviews now, but a log may hold one from before: learning it
    failed in sklearn (no column) and took every request and every restart down with it."""
    app = make_app(**QUIET)
    learner = app.extensions["learner"]
    honest(learner, 2, seed=5)
    before = learner.model.state()
    give(learner, "<br /><br />", 0)  # alone: no column at all
    after = learner.model.state()
    assert after.coef.tobytes() == before.coef.tobytes()
    assert after.intercept.tobytes() != before.intercept.tobytes()  # as sklearn's own call
    pid, _, _ = learner.predict(["<p> </p>"])[0]
    honest(learner, 1, seed=6)
    learner.verdict(pid, True)  # with others in one partial_fit
    assert learner.applied_id == 5
    assert learner.predict(["A wonderful film."])[0][1].label in ("positive", "negative")
    again = make_app(**QUIET)  # a restart replays them
    assert again.extensions["learner"].model.state().equals(learner.model.state())
    assert_model_is_the_log(again, tiny_model_dir)


def test_rollback_only_to_an_ancestor(make_app, tiny_model_dir):
    app = make_app(**{**QUIET, "CHECKPOINT_EVERY": 3})
    learner = app.extensions["learner"]
    honest(learner, 7, seed=4)  # v1, v2; 7 unsaved
    assert learner.store.chain() == ["v000002", "v000001", "base"]
    with pytest.raises(ValueError, match="not the current version or one of its ancestors"):
        learner.rollback("v000003")
    assert learner.rollback("base") == 7
    assert learner.store.chain() == ["base"]
    with pytest.raises(ValueError):
        learner.rollback("v000001")  # superseded now
    assert learner.model.state().equals(learner.store.base_state)
    assert_model_is_the_log(app, tiny_model_dir)


def test_sync_is_cheap_when_nothing_changed(make_app, monkeypatch):
    app = make_app(**{**QUIET, "CHECKPOINT_EVERY": 3})
    learner = app.extensions["learner"]
    honest(learner, 8, seed=5)
    learner.rollback("v000001")  # rows 4..8 quarantined: the log ends with them
    calls = []
    real = learner.feedback.accepted_after
    monkeypatch.setattr(learner.feedback, "accepted_after",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(5):
        learner.predict(["A plain review of a film I saw."])
    assert calls == [], "an idle sync should not read the log"
    honest(learner, 1, seed=6)
    assert calls and learner.applied_id == 9


def test_verdicts_are_learned_from_the_columns_stored_with_their_predictions(
        make_app, tiny_model_dir, monkeypatch):
    a, b = make_app(**QUIET), make_app(**QUIET)  # b stands for another worker
    la, lb = a.extensions["learner"], b.extensions["learner"]
    rng = random.Random(8)
    predictions = [la.predict([make_review(rng, i % 2)])[0] for i in range(6)]

    def no_vectorising(docs):
        raise AssertionError("a verdict's review was vectorised again")

    for learner in (la, lb):  # the learners' clones share their base's vectorizer
        monkeypatch.setattr(learner.base.vectorizer, "raw_counts", no_vectorising)
    for i, (pid, _, _) in enumerate(predictions):
        la.verdict(pid, i % 3 != 0)
    lb.sync()
    monkeypatch.undo()
    assert la.applied_id == lb.applied_id == 6
    assert lb.model.state().equals(la.model.state())
    assert_model_is_the_log(a, tiny_model_dir)  # the reference vectorises every text


def test_verdicts_without_usable_stored_columns_are_learned_from_their_text(
        make_app, tiny_model_dir):
    app = make_app(**QUIET)
    learner = app.extensions["learner"]
    rng = random.Random(9)
    predictions = [learner.predict([make_review(rng, i % 2)])[0] for i in range(4)]
    # As an earlier release stored them (none), and damaged (cut short).
    stored = query(log_of(app), "SELECT features FROM predictions ORDER BY id")
    execute(log_of(app), "UPDATE predictions SET features = NULL WHERE token = ?",
            (predictions[0][0],))
    execute(log_of(app), "UPDATE predictions SET features = substr(features, 1,"
            " length(features) - 2) WHERE token = ?", (predictions[2][0],))
    kept = query(log_of(app), "SELECT features FROM predictions ORDER BY id")
    assert kept[0][0] is None and len(kept[2][0]) == len(stored[2][0]) - 2
    for pid, _, _ in predictions:
        learner.verdict(pid, False)
    assert learner.applied_id == 4
    assert_model_is_the_log(app, tiny_model_dir)


def test_batched_learning_is_bit_identical_to_one_verdict_at_a_time(tiny_model_dir):
    """The served settings make one partial_fit on k rows equal k single-row calls;
    an L2 penalty would not, and then the learner must not batch."""
    import random

    import numpy as np

    from sentiment.models.linear import SentimentModel
    from tests.fakes import make_review

    base = SentimentModel.load(tiny_model_dir)
    assert base.learns_in_batches_exactly
    rng = random.Random(3)
    texts = [make_review(rng, rng.randrange(2)) for _ in range(40)]
    labels = np.array([rng.randrange(2) for _ in texts])

    one_by_one, batched = base.clone(), base.clone()
    for text, label in zip(texts, labels, strict=True):
        one_by_one.learn(text, int(label))
    batched.learn_features(batched.transform(texts), labels)
    assert batched.state().equals(one_by_one.state())

    with_l2 = base.clone()
    with_l2.classifier.set_params(penalty="l2", alpha=1e-3)
    assert not with_l2.learns_in_batches_exactly
    one_by_one, batched = with_l2.clone(), with_l2.clone()
    for text, label in zip(texts, labels, strict=True):
        one_by_one.learn(text, int(label))
    batched.learn_features(batched.transform(texts), labels)
    assert not batched.state().equals(one_by_one.state())


def in_thread(call, seconds: float = 30.0) -> dict:
    """Run ``call`` in a thread; its result, or no "result" if it is still blocked."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(result=call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return out


def test_verdicts_committed_together_are_learned_in_one_partial_fit(make_app, tiny_model_dir):
    app = make_app(**QUIET)
    learner = app.extensions["learner"]
    learner.config = dataclasses.replace(learner.config, group_wait=30.0)
    rng = random.Random(6)
    pids = [learner.predict([make_review(rng, i % 2)])[0][0] for i in range(4)]
    rows_per_call: list[int] = []
    learn, add = learner.model.learn_features, learner.feedback.add_verdict
    barrier = threading.Barrier(len(pids))

    def counting(X, y) -> None:
        rows_per_call.append(X.shape[0])
        learn(X, y)

    def add_together(*args):
        barrier.wait(30)  # all four are committing before any has committed
        return add(*args)

    learner.model.learn_features = counting
    learner.feedback.add_verdict = add_together
    threads = [threading.Thread(target=learner.verdict, args=(pid, i % 2 == 0))
               for i, pid in enumerate(pids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert rows_per_call == [4]
    assert learner.applied_id == 4
    assert_model_is_the_log(app, tiny_model_dir)


def test_verdicts_commit_and_learn_while_a_checkpoint_scores_and_writes(
        make_app, tiny_model_dir):
    app = make_app(**QUIET)
    learner = app.extensions["learner"]
    honest(learner, 3, seed=7)
    writing, finish = threading.Event(), threading.Event()
    write = learner.store.write

    def slow_write(*args, **kwargs):
        writing.set()
        assert finish.wait(60)
        return write(*args, **kwargs)

    learner.store.write = slow_write
    checkpoint = threading.Thread(target=lambda: setattr(learner, "result", learner.checkpoint()))
    checkpoint.start()
    assert writing.wait(60)
    # Before, the checkpoint held the log's write lock and the learner's lock
    # until its state was on disk: this verdict waited for it.
    done = in_thread(lambda: give(learner, make_review(random.Random(8), 1), 1))
    finish.set()
    checkpoint.join(60)
    assert done.get("result") == 4
    published = learner.result.published
    assert published.last_feedback_id == 3  # the snapshot's, not the verdict's after it
    assert learner.model_version == f"{published.name}+4"
    assert learner.status()["unsaved_verdicts"] == 1
    assert_model_is_the_log(app, tiny_model_dir)


def test_a_due_checkpoint_gives_way_to_one_in_progress(make_app, tiny_model_dir):
    app = make_app(**{**QUIET, "CHECKPOINT_EVERY": 2})
    learner = app.extensions["learner"]
    with other_process_versions_lock(app):  # another process checkpointing
        done = in_thread(lambda: honest(learner, 3, seed=9))
        assert "result" in done  # answered, not queued behind the other checkpoint
        assert learner.version.name == "base" and learner.status()["unsaved_verdicts"] == 3
    learner.sync()  # still due, and now nobody else is checkpointing
    assert learner.version.name == "v000001" and learner.version.last_feedback_id == 3
    assert_model_is_the_log(app, tiny_model_dir)


def test_background_timer_saves_waiting_verdicts(make_app):
    app = make_app(CHECKPOINT_SECONDS=1.0, CHECKPOINT_EVERY=10**6)
    learner = app.extensions["learner"]
    learner.start_background_checkpoints()  # what a serving process does (sentiment.serving)
    client = app.test_client()
    pid = client.post("/api/predict", json={"review": make_review(random.Random(3), 1)}
                      ).get_json()["prediction_id"]
    assert client.post("/api/feedback", json={"prediction_id": pid, "correct": False}
                       ).status_code == 201
    assert learner.version.name == "base"  # nothing due yet on the request itself
    deadline = time.monotonic() + 30
    # The learner takes the new version as its own just after the store has
    # published it: wait for the learner's view, which comes last.
    while learner.version.name == "base" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert learner.store.current_name() == learner.version.name != "base"
    assert learner.version.last_feedback_id == 1


def test_with_the_timer_running_no_request_waits_for_a_checkpoint(make_app, monkeypatch):
    app = make_app(CHECKPOINT_SECONDS=3600.0, CHECKPOINT_EVERY=2)
    learner = app.extensions["learner"]
    learner.start_background_checkpoints()
    slow_scoring = threading.Event()
    checkpointing_threads: list[str] = []
    original = learner.holdout_accuracy

    def scoring(*args, **kwargs):
        checkpointing_threads.append(threading.current_thread().name)
        slow_scoring.wait(30)  # a deep model's holdout takes seconds
        return original(*args, **kwargs)

    monkeypatch.setattr(learner, "holdout_accuracy", scoring)
    started = time.monotonic()
    honest(learner, 2, seed=4)  # the second verdict makes a checkpoint due
    assert time.monotonic() - started < 20  # answered while the scoring still waits
    deadline = time.monotonic() + 30
    while not checkpointing_threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointing_threads and set(checkpointing_threads) == {"checkpoint-timer"}
    slow_scoring.set()
    while learner.version.name == "base" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert learner.version.name == "v000001" and learner.version.last_feedback_id == 2


def test_the_guard_holdout_is_prepared_after_the_first_verdict_not_before(make_app):
    learner = make_app().extensions["learner"]
    rng = random.Random(5)
    ids = [pid for pid, _, _ in learner.predict([make_review(rng, 1) for _ in range(3)])]
    assert not learner.holdout.cached  # predicting alone never pays for it
    learner.verdict(ids[0], True)
    deadline = time.monotonic() + 30
    while not learner.holdout.cached and time.monotonic() < deadline:
        time.sleep(0.05)
    assert learner.holdout.cached


def test_the_holdout_is_vectorised_once_per_folder_and_rebuilt_if_damaged(make_app):
    learner = make_app().extensions["learner"]
    X, y = learner.holdout.features(learner.model)
    cache = learner.holdout.cache
    written = cache.stat().st_mtime_ns
    again = make_app().extensions["learner"]  # another process on the same folder
    X2, y2 = again.holdout.features(again.model)
    assert cache.stat().st_mtime_ns == written  # read, not vectorised again
    assert (X2 != X).nnz == 0 and np.array_equal(y2, y)
    cache.write_bytes(cache.read_bytes()[:1000])  # a torn file
    X3, y3 = learner.holdout.features(learner.model)
    assert (X3 != X).nnz == 0 and np.array_equal(y3, y)
    X4, _ = make_app().extensions["learner"].holdout.features(learner.model)
    assert (X4 != X).nnz == 0


def test_health_hashes_each_model_once_and_reports_the_live_one(make_app, monkeypatch):
    from sentiment.models.state import ModelState

    app = make_app(**QUIET)
    learner = app.extensions["learner"]
    hashed = []
    real = ModelState.digest
    monkeypatch.setattr(ModelState, "digest", lambda self: hashed.append(1) or real(self))
    first = learner.status()
    assert learner.status() == first and len(hashed) == 1  # polling an idle app
    honest(learner, 1, seed=12)
    after = learner.status()
    assert len(hashed) == 2
    assert after["model_digest"] == real(learner.model.state()) != first["model_digest"]
    learner.rollback("base")  # back to the first model: a new generation, hashed again
    assert learner.status()["model_digest"] == first["model_digest"] and len(hashed) == 3


def test_building_an_app_starts_no_thread_and_close_stops_every_one(make_app):
    """The factory has no process-wide effect; a serving process's threads end with close().

    The one exception is PostgreSQL's connection pool, whose maintenance threads
    belong to the log and end when the log is closed.
    """
    before = set(threading.enumerate())
    app = make_app(CHECKPOINT_SECONDS=1.0)
    learner = app.extensions["learner"]
    pools = set(threading.enumerate()) - before
    assert all(t.name.startswith("feedback-log-") for t in pools), pools
    assert bool(pools) == learner.feedback.notifies  # the PostgreSQL log's, and only it
    learner.start_background_checkpoints()
    learner.start_following()
    client = app.test_client()
    pid = client.post("/api/predict", json={"review": make_review(random.Random(4), 1)}
                      ).get_json()["prediction_id"]
    client.post("/api/feedback", json={"prediction_id": pid, "correct": False})  # holdout thread
    assert len(set(threading.enumerate()) - before - pools) >= 1
    learner.close()
    assert set(threading.enumerate()) == before | pools
    assert learner.status()["unsaved_verdicts"] == 0  # close() saved the verdict
    learner.feedback.close()
    assert set(threading.enumerate()) == before



def test_follow_lag_leaves_out_an_own_verdict_learned_before_its_id_was_noted(
        make_app, monkeypatch) -> None:
    """The follower thread can wake between a verdict's commit and the request thread
    noting its id as this process's own: its lag is kept back until then, and dropped."""
    a, b = make_app(**QUIET), make_app(**QUIET)  # two processes on one log
    la, lb = a.extensions["learner"], b.extensions["learner"]
    commit = la.feedback.add_verdict

    def followed_at_once(*args, **kwargs):
        verdict = commit(*args, **kwargs)
        la.sync()  # what the follower does if it wakes right now
        return verdict

    monkeypatch.setattr(la.feedback, "add_verdict", followed_at_once)
    honest(la, 2, seed=1)
    assert la.follow_lag()["verdicts"] == 0  # both its own (it was 2)
    monkeypatch.undo()
    honest(lb, 1, seed=2)  # another process's, learned while none of a's is pending
    la.sync()
    assert la.follow_lag()["verdicts"] == 1


def test_follow_lag_counts_other_processes_verdicts_but_not_what_an_outage_held(
        make_app, monkeypatch) -> None:
    """/api/health's follow_lag_ms: how long after their commit a process learned the
    verdicts another took; its own are not counted, nor those committed while it could
    not read the log (the outage's wait, not the following's)."""
    from sentiment.storage.log import LogUnavailable

    a, b = make_app(**QUIET), make_app(**QUIET)  # two processes on one log
    la, lb = a.extensions["learner"], b.extensions["learner"]
    honest(la, 2, seed=1)
    lb.sync()
    assert lb.follow_lag()["verdicts"] == 2 and la.follow_lag()["verdicts"] == 0

    def out_of_reach(checkpoint_here: bool) -> None:
        raise LogUnavailable("down")

    monkeypatch.setattr(lb, "_catch_up", out_of_reach)
    lb.sync()  # serves on; the log is lost to it
    monkeypatch.undo()
    honest(la, 3, seed=2)  # committed before b reads the log again
    lb.sync()
    assert lb.applied_id == la.applied_id and lb.follow_lag()["verdicts"] == 2
    honest(la, 1, seed=3)  # followed again
    lb.sync()
    lag = lb.follow_lag()
    assert lag["verdicts"] == 3 and 0 <= lag["p50"] <= lag["p99"]
