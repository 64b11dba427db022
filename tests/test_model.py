"""The served model: explanations, state round trips, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sentiment.files import atomic_write
from sentiment.models.linear import SentimentModel, _overlaps_any
from sentiment.models.state import ModelState


def test_explanation_names_the_words_that_pushed_each_way(tiny_model_dir: Path) -> None:
    model = SentimentModel.load(tiny_model_dir)
    pushes = model.explain("The plot was wonderful and brilliant, but the music was awful.")
    grams = [g for g, _ in pushes]
    assert pushes == sorted(pushes, key=lambda p: abs(p[1]), reverse=True)
    assert dict(pushes)["wonderful"] > 0 and dict(pushes)["awful"] < 0
    # No n-gram is listed next to one that contains it.
    assert not any(_overlaps_any(f" {a} ", [f" {b} "])
                   for i, a in enumerate(grams) for b in grams[i + 1:])


def test_overlap_is_by_whole_words_either_way() -> None:
    assert _overlaps_any(" waste ", [" bad ", " waste of time "])
    assert _overlaps_any(" waste of time ", [" of time "])
    assert not _overlaps_any(" bad ", [" badly made "])
    assert not _overlaps_any(" i love this ", [" love this movie "])


def test_state_round_trips_bit_for_bit(tiny_model_dir: Path) -> None:
    model = SentimentModel.load(tiny_model_dir)
    model.learn("A wonderful film with a brilliant cast.", 0)
    state = model.state()
    again = ModelState.from_bytes(state.to_bytes())
    assert again.equals(state) and again.coef.dtype == np.float32
    other = SentimentModel.load(tiny_model_dir)
    assert not other.state().equals(state)
    other.set_state(again)
    assert other.predict(["A wonderful film"])[0] == model.predict(["A wonderful film"])[0]


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_transform_in_chunks_equals_one_pass(tiny_model_dir: Path) -> None:
    model = SentimentModel.load(tiny_model_dir)
    texts = [f"review {i}: a {'great' if i % 2 else 'dull'} film, scene {i * 7}"
             for i in range(150)]
    whole = model.vectorizer.transform(texts)
    chunked = model.transform(texts, chunk=64)
    assert (whole != chunked).nnz == 0
    np.testing.assert_array_equal(whole.indptr, chunked.indptr)


def test_explanation_from_given_features_equals_its_own(tiny_model_dir: Path) -> None:
    model = SentimentModel.load(tiny_model_dir)
    text = "A wonderful, moving film; the ending was not bad at all :)"
    expected = model.explain(text)
    assert model.explain(text, X=model.transform([text])) == expected
    tokens = model.vectorizer.tokenize(text)
    assert model.explain(text, X=model.vectorizer.transform_tokens([tokens]),
                         tokens=tokens) == expected
    assert expected and all(g in model.vectorizer.analyse(text) for g, _ in expected)


def test_learning_equals_partial_fit_on_the_whole_classifier(tiny_model_dir: Path) -> None:
    """The update runs on the reviews' own columns; it must equal sklearn's full call exactly."""
    import copy
    import random

    from tests.fakes import make_review

    model = SentimentModel.load(tiny_model_dir)
    reference = copy.deepcopy(model.classifier)
    rng = random.Random(11)
    # Batches share features across and within calls. A review with no words the
    # model reads ("!!!") is a row with no columns: sklearn still moves the intercept.
    for size, empty in ((1, False), (1, True), (7, False), (1, False), (3, True), (30, False)):
        texts = [make_review(rng, rng.randrange(2)) for _ in range(size)]
        texts = ["!!!" for _ in texts[:1]] + texts[1:] if empty else texts
        labels = np.array([rng.randrange(2) for _ in texts])
        X = model.transform(texts)
        model.learn_features(X, labels)
        reference.partial_fit(X, labels)
    state = model.state()
    assert state.coef.tobytes() == reference.coef_.tobytes()
    assert state.intercept.tobytes() == reference.intercept_.tobytes()
    assert state.t == reference.t_

    # With an L2 penalty every weight decays at each step, so the update must
    # run on the whole classifier: weights of features no review has change too.
    decaying = SentimentModel.load(tiny_model_dir)
    decaying.classifier.set_params(penalty="l2", alpha=1e-3)
    before = decaying.state().coef.copy()
    reference = copy.deepcopy(decaying.classifier)
    X = decaying.transform(texts)
    decaying.learn_features(X, labels)
    reference.partial_fit(X, labels)
    after = decaying.state().coef
    assert after.tobytes() == reference.coef_.tobytes()
    untouched = np.setdiff1d(np.flatnonzero(before[0]), X.indices)
    assert np.all(np.abs(after[0, untouched]) < np.abs(before[0, untouched]))


def test_learning_in_place_waits_for_readers_and_states_are_snapshots(
        tiny_model_dir: Path) -> None:
    """Updates write the live weights in place: under the readers' lock, never under a state."""
    import threading

    model = SentimentModel.load(tiny_model_dir)
    X = model.transform(["A dreadful, boring film with a wooden cast."])
    before = model.state()
    with model._weights:  # a prediction reading the weights
        learning = threading.Thread(target=model.learn_features, args=(X, np.array([1])))
        learning.start()
        learning.join(0.3)
        assert learning.is_alive(), "the update did not wait for the reader"
        assert model.classifier.coef_.tobytes() == before.coef.tobytes()
    learning.join()
    after = model.state()
    assert not after.equals(before)
    assert not np.shares_memory(after.coef, model.classifier.coef_)
    model.learn_features(X, np.array([1]))
    assert not model.state().equals(after)  # the snapshot kept its values


def test_numeric_work_queues_on_one_lock_per_process(tiny_model_dir: Path, monkeypatch) -> None:
    """Request threads take turns at numpy work (see sentiment.models.linear.NUMERIC), a chunk
    at a time."""
    import threading

    from sentiment.models import linear as model_module

    model = SentimentModel.load(tiny_model_dir)
    text = "A dreadful, boring film with a wooden cast."
    X = model.transform([text])
    stored = model.encode_rows(X)
    calls = {
        "transform": lambda: model.transform([text]),
        "transform_tokens": lambda: model.transform_tokens([model.vectorizer.tokenize(text)]),
        "encode_rows": lambda: model.encode_rows(X),
        "stored_features": lambda: model.stored_features([text], stored),
        "predict_features": lambda: model.predict_features(X),
        "explain": lambda: model.explain(text, X=X),
        "learn_features": lambda: model.learn_features(X, np.array([1])),
    }
    for name, call in calls.items():
        with model_module.NUMERIC:  # another thread's numeric work
            worker = threading.Thread(target=call)
            worker.start()
            worker.join(0.2)
            assert worker.is_alive(), f"{name} did not wait for the lock"
        worker.join(10)
        assert not worker.is_alive(), f"{name} did not finish once the lock was free"

    held, between = [], []  # whether the lock was taken: during each chunk, between them
    locked = model_module.NUMERIC.locked
    transform = model.vectorizer.transform
    monkeypatch.setattr(model.vectorizer, "transform",
                        lambda texts: held.append(locked()) or transform(texts))
    monkeypatch.setattr(model_module.time, "sleep", lambda _: between.append(locked()))
    model.transform([text] * 20, chunk=8, pause=0.001)
    assert held == [True] * 3 and between == [False] * 3


def test_predictions_are_made_a_chunk_at_a_time_and_equal_all_at_once(
        tiny_model_dir: Path, monkeypatch) -> None:
    from sentiment.models import linear
    from tests.fakes import make_reviews

    model = SentimentModel.load(tiny_model_dir)
    texts = [text for text, _ in make_reviews(25, seed=4)]
    whole = model.predict_features(model.transform(texts))
    monkeypatch.setattr(linear, "PREDICT_CHUNK", 7)  # 4 chunks, the last one short
    assert model.predict(texts) == whole
    assert model.predict([]) == []


def test_a_batch_shared_among_processes_gives_the_same_predictions(
        tiny_model_dir: Path, monkeypatch) -> None:
    """predict(workers=2) forks two workers that each score spans of the batch: the
    same Predictions, bit for bit, in the same order."""
    from sentiment.models import linear
    from tests.fakes import make_reviews

    model = SentimentModel.load(tiny_model_dir)
    texts = [text for text, _ in make_reviews(60, seed=5)]
    whole = model.predict_features(model.transform(texts))
    monkeypatch.setattr(linear, "PREDICT_CHUNK", 7)  # 9 spans among the workers
    monkeypatch.setattr(linear, "POOL_MIN", 20)
    assert model.predict(texts, workers=2) == whole
    assert model.predict(texts[:19], workers=2) == whole[:19]  # too few: in this process
    assert linear._FORKED is None  # the batch is not kept alive after the call
