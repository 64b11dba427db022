"""Training end to end on a generated archive, its building blocks, and the real data."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier

from sentiment.models.saving import prepare_for_serving
from sentiment.text.spec import ColumnMap, VectorizerSpec
from sentiment.text.vectorizer import ReviewVectorizer, load_vectorizer
from tests.fakes import make_reviews
from tests.tiny_aclimdb import (
    REAL_ARCHIVE,
    TrainedRun,
    tiny_preset,
    train_tiny,
)
from train.data import DataError, stream_docs
from train.evaluate import Metrics
from train.pipeline import FeatureCache, FeaturePool, bounded_map, load_batch, save_batch
from train.presets import BOOK, DEFAULT, OFFICIAL_TEST, TUTORIAL_5K, EvalSet
from train.train import (
    averaged,
    count_documents,
    drop_ngrams,
    eval_docs,
    eval_jobs,
    kept_buckets,
    nb_weights,
    serving_weights,
)

pytest_plugins = ["tests.train_fixtures"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- building blocks --------------------------------------------------------------

def test_count_documents_is_the_per_class_document_frequency() -> None:
    rng = np.random.default_rng(0)
    X = sp.random(50, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    X.data[::7] = 0.0  # explicit zeros are not occurrences
    y = rng.integers(0, 2, 50)
    pos, neg = np.zeros(300), np.zeros(300)
    count_documents(X, y, pos, neg)
    present = X.toarray() != 0
    np.testing.assert_array_equal(pos, present[y == 1].sum(axis=0))
    np.testing.assert_array_equal(neg, present[y == 0].sum(axis=0))


def test_kept_buckets_are_the_most_frequent_ties_to_the_lower_bucket() -> None:
    df = np.array([0, 5, 2, 7, 2, 0, 2, 1, 9], dtype=np.int32)
    np.testing.assert_array_equal(kept_buckets(df, 4), [1, 2, 3, 8])  # 2 of three tied 2s
    np.testing.assert_array_equal(kept_buckets(df, 5), [1, 2, 3, 4, 8])
    np.testing.assert_array_equal(kept_buckets(df, 100), np.flatnonzero(df))  # never df 0
    rng = np.random.default_rng(3)
    for _ in range(50):
        df = rng.poisson(rng.uniform(0.2, 4.0), int(rng.integers(1, 400))).astype(np.int32)
        n = int(rng.integers(1, len(df) + 1))
        if not df.any():
            continue
        by_rank = np.lexsort((np.arange(len(df)), -df))[:min(n, np.count_nonzero(df))]
        np.testing.assert_array_equal(kept_buckets(df, n), np.sort(by_rank))
    with pytest.raises(DataError):
        kept_buckets(np.zeros(8, dtype=np.int32), 3)


def test_spare_columns_come_alive_only_once_served() -> None:
    columns = ColumnMap(np.array([1, 4, 6]), n_columns=5, n_buckets=8)
    weights = np.array([0.3, 0.7, 0.2, 0.0, 0.0], dtype=np.float32)  # as trained
    clf = SGDClassifier().fit(np.eye(5)[:2], [0, 1])
    clf.coef_[0, 3:] = 0.0
    served = serving_weights(weights, columns, 1.0, clf)
    np.testing.assert_array_equal(served, np.float32([0.3, 0.7, 0.2, 1.0, 1.0]))
    assert weights[3] == 0.0  # the trained weights are left alone
    clf.coef_[0, 4] = 0.01
    with pytest.raises(ValueError, match="spare columns learned"):
        serving_weights(weights, columns, 1.0, clf)


def test_column_selection_needs_feature_weights() -> None:
    with pytest.raises(ValueError, match="needs feature weights"):
        replace(DEFAULT, vectorizer=replace(DEFAULT.vectorizer, feature_weights=None))


def test_drop_ngrams_keeps_a_random_subset_of_each_row_at_unit_length() -> None:
    X = sp.random(400, 500, density=0.1, format="csr", random_state=2, dtype=np.float32)
    X.data += 0.1  # no explicit zeros
    X = sp.csr_matrix(X.multiply(1 / np.sqrt(X.multiply(X).sum(axis=1))), dtype=np.float32)
    X.data[X.indptr[7]:X.indptr[8]] = 0.0  # an empty review stays empty
    X.eliminate_zeros()
    rng = np.random.RandomState(0)
    dropped = drop_ngrams(X, 0.6, rng)
    assert dropped.dtype == np.float32 and dropped.shape == X.shape and dropped.has_sorted_indices
    assert 0.55 < 1 - dropped.nnz / X.nnz < 0.65
    dense, kept = X.toarray(), dropped.toarray()
    assert not (kept[dense == 0]).any()  # nothing added
    norms = np.linalg.norm(kept, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)
    assert np.count_nonzero(norms) == 399  # only the empty review: ~50 entries a row
    for i in range(0, 400, 37):  # what survives keeps its proportions
        on = kept[i] != 0
        np.testing.assert_allclose(kept[i, on] * np.linalg.norm(dense[i, on]), dense[i, on],
                                   rtol=1e-5)
    np.testing.assert_allclose(drop_ngrams(X, 0.0, rng).toarray(), dense, rtol=1e-6)
    again = drop_ngrams(X, 0.6, np.random.RandomState(0))
    np.testing.assert_array_equal(again.toarray(), kept)  # seeded: reproducible
    assert ((drop_ngrams(X, 0.6, rng).toarray() != 0) != (kept != 0)).any()  # next pass


def test_dropout_is_checked_against_the_preset() -> None:
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        replace(DEFAULT, dropout=1.0)
    with pytest.raises(ValueError, match="needs row_norm"):
        replace(DEFAULT, vectorizer=replace(DEFAULT.vectorizer, row_norm=False))
    with pytest.raises(ValueError, match="one-pass preset"):
        replace(BOOK, dropout=0.5)
    with pytest.raises(ValueError, match="at least 1"):
        replace(DEFAULT, sgd_runs=0)
    with pytest.raises(ValueError, match="one-pass preset"):
        replace(BOOK, sgd_runs=2)


def test_averaged_runs_score_the_mean_of_their_scores() -> None:
    rng = np.random.RandomState(0)
    X = sp.random(300, 50, density=0.2, format="csr", random_state=1)
    y = (X @ rng.normal(size=50) > 0).astype(int)
    runs = []
    for seed in (1, 2):
        clf = SGDClassifier(loss="log_loss", alpha=1e-4, average=True, random_state=seed)
        for start in range(0, 300, 100):
            clf.partial_fit(X[start:start + 100], y[start:start + 100], classes=[0, 1])
        runs.append(clf)
    before = [run.coef_.copy() for run in runs]
    mean = averaged(runs)
    assert not np.array_equal(runs[0].coef_, runs[1].coef_)
    np.testing.assert_allclose(mean.decision_function(X),
                               (runs[0].decision_function(X) + runs[1].decision_function(X)) / 2)
    for run, coef in zip(runs, before, strict=True):
        np.testing.assert_array_equal(run.coef_, coef)  # the runs are left as they were
    assert averaged(runs[:1]) is runs[0]
    served = prepare_for_serving(mean, {"learning_rate": "constant", "eta0": 1.0})
    np.testing.assert_array_equal(served.coef_, mean.coef_)
    served.partial_fit(X[:1], y[:1])  # and it keeps learning once served


def test_nb_weights_favour_features_that_separate_the_classes() -> None:
    pos = np.array([10.0, 0.0, 5.0, 0.0])
    neg = np.array([0.0, 10.0, 5.0, 0.0])
    w = nb_weights(pos, neg, smoothing=1.0, floor=0.1)
    assert w.dtype == np.float32
    assert w[0] == pytest.approx(w[1]) and w[0] > w[2] > 0
    assert w[3] == pytest.approx(0.1)  # unseen feature: the floor keeps it learnable


def test_feature_cache_round_trip(tmp_path: Path) -> None:
    X = sp.random(20, 100, density=0.1, format="csr", random_state=0, dtype=np.float32)
    y = np.arange(20) % 2
    member = np.eye(20, 3, dtype=bool)
    cache = FeatureCache(tmp_path)
    assert cache.append(X, y) == 0
    assert cache.append(X[:5], y[:5], member[:5]) == 1
    assert (cache.count, cache.docs) == (2, 25)
    X0, y0 = cache.load(0)
    assert (X0 != X).nnz == 0 and X0.dtype == X.dtype and np.array_equal(y0, y)
    X1, y1, m1 = cache.load_with_member(1)
    assert X1.shape == (5, 100) and np.array_equal(m1, member[:5])
    assert load_batch(cache.path(0))[2] is None
    size = cache.bytes
    cache.replace(0, X * 2, y)
    assert cache.bytes == size
    assert np.allclose(cache.load(0)[0].toarray(), 2 * X.toarray())
    assert save_batch(tmp_path / "x.npy", X, y) == (tmp_path / "x.npy").stat().st_size


def _slow_square(n: int) -> int:
    time.sleep(0.01 * (n % 3))
    return n * n


def test_bounded_map_keeps_order_and_reads_lazily() -> None:
    pulled = []

    def items() -> Iterator[int]:
        for n in range(20):
            pulled.append(n)
            yield n

    with ProcessPoolExecutor(2) as executor:
        results = bounded_map(executor, _slow_square, items(), window=3)
        assert next(results) == 0
        assert len(pulled) <= 3
        assert [0, *results] == [n * n for n in range(20)]


def test_eval_jobs_cover_each_set_once_and_hash_shared_reviews_once(tmp_path: Path) -> None:
    csv_path = tmp_path / "m.csv"
    rows = [f"review {i} " + "x" * (i % 7) for i in range(60)]
    with open(csv_path, "w", encoding="utf-8") as fh:
        fh.write("review,sentiment,split,id\n")
        for i, text in enumerate(rows):
            fh.write(f"{text},{i % 2},{'test' if i % 3 else 'train'},{i}\n")
    sets = [OFFICIAL_TEST, EvalSet("rows", "rows 30-45", start=30, stop=45),
            EvalSet("cut", "test cut to 8 chars", split="test", truncate=8)]
    batches = list(eval_jobs(csv_path, sets, size=7))
    assert all(len(texts) <= 7 for texts, _, _ in batches)
    for j, es in enumerate(sets):
        got = [(t, int(y)) for texts, ys, member in batches
               for t, y, m in zip(texts, ys, member[:, j], strict=True) if m]
        assert sorted(got) == sorted(eval_docs(csv_path, es)), es.name
    full_texts = [t for texts, _, member in batches for t, m in zip(texts, member, strict=True)
                  if not m[2]]
    assert len(full_texts) == len(set(full_texts))  # shared reviews hashed once
    both = sum(int(m[0] and m[1]) for _, _, member in batches for m in member)
    assert both > 0


def test_metrics_accumulate_over_batches() -> None:
    proba = np.array([0.9, 0.2, 0.6, 0.4])
    y = np.array([1, 0, 0, 1])
    metrics = Metrics()
    metrics.update(proba[:2], y[:2])
    metrics.update(proba[2:], y[2:])
    result = metrics.result()
    assert result["accuracy"] == 0.5 and result["n"] == 4
    assert result["confusion"] == {"tp": 1, "tn": 1, "fp": 1, "fn": 1}
    with pytest.raises(ValueError):
        Metrics().result()


def test_a_broken_worker_batch_reaches_the_caller(tmp_path: Path) -> None:
    vect = ReviewVectorizer(VectorizerSpec(n_features=2**10))
    with FeaturePool(vect, 1) as pool:
        spill = pool.spill(iter([(["fine"], np.array([1]), None), ([None], np.array([0]), None)]),
                           FeatureCache(tmp_path))
        try:
            with pytest.raises(TypeError):  # raised in the worker, re-raised here
                list(spill.finished())
        finally:
            spill.close()


# -- the whole pipeline on the generated archive -----------------------------------

@pytest.mark.parametrize("name", ["default", "book"])
def test_training_writes_pickles_manifest_and_report(trained: dict[str, TrainedRun],
                                                     name: str) -> None:
    run = trained[name]
    files = {p.name for p in run.out.iterdir()}
    expected = {"classifier.pkl", "stopwords.pkl", "manifest.json"}
    if name == "default":
        expected |= {"feature_weights.npy", "columns.npy", "holdout.csv.gz"}
        kept = np.load(run.out / "columns.npy")
        assert kept.dtype == np.int32 and (np.diff(kept) > 0).all()
        assert len(kept) <= round(run.preset.kept_share * run.preset.vectorizer.n_features)
    assert files == expected
    manifest = json.loads((run.out / "manifest.json").read_text())
    assert set(manifest["files"]) == expected - {"manifest.json"}
    for file, digest in manifest["files"].items():
        assert sha256(run.out / file) == digest, file
    assert manifest["preset"] == name
    assert manifest["vectorizer"] == run.preset.vectorizer.to_json()
    assert manifest["accuracy"] == {k: v["accuracy"] for k, v in run.report["accuracy"].items()}
    assert manifest["sizes"]["test"] == 80 and manifest["sizes"]["tutorial_5k"] == 40
    assert manifest["archive_sha256"] and manifest["created"]
    assert manifest["versions"]["scipy"] == scipy.__version__  # it moves the timings

    report = json.loads((run.reports / f"train-{name}.json").read_text())
    assert report == json.loads(json.dumps(run.report))
    png = (run.reports / f"train-{name}.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert {"csv", "features", "evaluate", "save"} <= set(report["stages"])
    assert ("sgd" in report["stages"]) == (name == "default")
    if name == "default":  # every run sees every training review in every pass
        preset = tiny_preset(name)
        assert report["stages"]["sgd"]["docs"] == (
            report["stages"]["features"]["docs"] * preset.epochs * preset.sgd_runs)
    for stage in report["stages"].values():
        assert set(stage) == {"seconds", "docs", "docs_per_s"}
    assert report["peak_rss_mb"]["main"] > 0 and report["peak_rss_mb"]["largest_worker"] > 0
    assert report["learning_curve"] and report["learning_curve"][-1]["accuracy"] > 0.9
    assert set(report["accuracy"]) == {"test", "tutorial_5k", "short_test"}


@pytest.mark.parametrize("name", ["default", "book"])
def test_trained_model_classifies_unseen_generated_reviews(trained: dict[str, TrainedRun],
                                                           name: str) -> None:
    run = trained[name]
    assert run.report["accuracy"]["test"]["accuracy"] > 0.9
    vect = load_vectorizer(run.out)
    with open(run.out / "classifier.pkl", "rb") as fh:
        clf = pickle.load(fh)
    reviews = make_reviews(200, seed=12345)  # never seen: another seed than the archive
    texts = [t for t, _ in reviews]
    labels = np.array([y for _, y in reviews])
    accuracy = float(np.mean(clf.predict(vect.transform(texts)) == labels))
    print(f"{name}: accuracy on 200 unseen generated reviews {accuracy:.3f}")
    assert accuracy > 0.9


def test_evaluation_sets_are_scored_on_the_right_reviews(trained: dict[str, TrainedRun]) -> None:
    run = trained["default"]
    vect = load_vectorizer(run.out)
    with open(run.out / "classifier.pkl", "rb") as fh:
        clf = pickle.load(fh)
    for es in run.preset.evaluations:
        docs = list(eval_docs(run.csv, es))
        X = vect.transform([t for t, _ in docs])
        y = np.array([label for _, label in docs])
        metrics = Metrics()
        metrics.update(clf.predict_proba(X)[:, 1], y)
        expected = metrics.result()
        got = run.report["accuracy"][es.name]
        assert (got["n"], got["confusion"]) == (expected["n"], expected["confusion"]), es.name


def test_same_seed_same_pickles(trained: dict[str, TrainedRun], tiny_archive: Path,
                                tmp_path: Path) -> None:
    first = trained["default"]
    again = train_tiny("default", tiny_archive, tmp_path / "again")
    for name in ("classifier.pkl", "feature_weights.npy", "holdout.csv.gz", "stopwords.pkl"):
        assert sha256(again.out / name) == sha256(first.out / name), name
    assert again.report["accuracy"] == first.report["accuracy"]
    assert again.report["learning_curve"] == first.report["learning_curve"]


def test_the_holdout_is_left_out_of_training(trained: dict[str, TrainedRun]) -> None:
    run = trained["default"]
    holdout = list(stream_docs(run.csv, "train", 0, run.preset.holdout))
    assert run.report["train_docs"] == 2 * 40 - run.preset.holdout
    assert json.loads((run.out / "manifest.json").read_text())["sizes"]["holdout"] == len(holdout)


def test_an_evaluation_set_without_reviews_is_a_data_error(tiny_archive: Path,
                                                           tmp_path: Path) -> None:
    from train.train import run as run_training

    preset = replace(tiny_preset("default"), evaluations=(TUTORIAL_5K,))  # rows 45,000+
    with pytest.raises(DataError, match="tutorial_5k"):
        run_training(preset, tiny_archive, tmp_path / "m.csv", None, None, workers=1,
                     progress=False)


@pytest.mark.parametrize("case", ["out is a file", "out under a file", "report-dir is a file",
                                  "csv under a file", "csv is a folder"])
def test_output_paths_are_checked_before_any_work(tiny_archive: Path, tmp_path: Path,
                                                  case: str) -> None:
    from train.train import run as run_training

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    (tmp_path / "folder.csv").mkdir()
    paths = {"csv_path": tmp_path / "m.csv", "out_dir": tmp_path / "pkl",
             "report_dir": tmp_path / "rep"}
    name, bad = {"out is a file": ("out_dir", blocker),
                 "out under a file": ("out_dir", blocker / "pkl"),
                 "report-dir is a file": ("report_dir", blocker),
                 "csv under a file": ("csv_path", blocker / "m.csv"),
                 "csv is a folder": ("csv_path", tmp_path / "folder.csv")}[case]
    paths[name] = bad
    with pytest.raises(DataError, match="folder"):
        run_training(tiny_preset("default"), tiny_archive, workers=1, progress=False, **paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder.csv"]
    assert list((tmp_path / "folder.csv").iterdir()) == []


def test_a_reused_csv_broken_near_its_end_is_a_data_error(tiny_archive: Path,
                                                          tmp_path: Path) -> None:
    """Training reads only the start; the evaluation, in a background thread, meets the end."""
    from train.data import build_csv
    from train.train import run as run_training

    csv_path = tmp_path / "m.csv"
    build_csv(tiny_archive, csv_path, copies=30)  # 4,800 rows: the cut is past the 1st chunk
    with open(csv_path, "a", encoding="utf-8") as fh:
        fh.write("a review cut off")
    preset = replace(tiny_preset("default"), train_stop=16)
    with pytest.raises(DataError, match="without --reuse-csv"):
        run_training(preset, None, csv_path, tmp_path / "pkl", tmp_path / "rep", workers=1,
                     skip_csv=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


# -- the real data -----------------------------------------------------------------

@pytest.mark.slow
def test_book_preset_on_the_real_archive(tmp_path: Path) -> None:
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"the real aclImdb archive is not at {REAL_ARCHIVE}")
    from train.stopwords import MissingStopwordsError, nltk_english

    try:
        nltk_english()
    except MissingStopwordsError as exc:
        pytest.skip(str(exc))
    from train.train import run

    report = run(BOOK, REAL_ARCHIVE, tmp_path / "movie_data.csv", tmp_path / "pkl",
                 tmp_path / "reports", workers=2, progress=False)
    accuracy = {name: result["accuracy"] for name, result in report["accuracy"].items()}
    print(f"book preset: test {accuracy['test']:.4f}, tutorial_5k {accuracy['tutorial_5k']:.4f}")
    assert report["train_docs"] == 45_000
    assert accuracy["tutorial_5k"] >= 0.86
