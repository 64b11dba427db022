"""Train a model out-of-core: archive -> CSV -> minibatches -> partial_fit -> pickles.

Stages (each timed in the report):
1. ``csv``: the archive read straight from the tar into a shuffled CSV.
2. ``features``: one streaming pass that vectorizes the training minibatches
   in worker processes, counts n-grams per class for the Naive-Bayes weights
   and spills the raw features to a disk cache (skipped by one-pass presets,
   which learn during this pass instead).
3. ``sgd``: shuffled passes over the cached minibatches with ``partial_fit``.
4. ``evaluate``: accuracy on each evaluation set, streamed the same way.
5. ``save``: pickles, manifest and the holdout, written atomically.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import platform
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import SGDClassifier
from tqdm import tqdm

from model import CLASSES, prepare_for_serving, save_base
from train.data import build_csv, minibatches, resolve_archive, sha256_file, stream_docs
from train.evaluate import evaluate_stream
from train.pipeline import FeatureCache, FeaturePool
from train.presets import EvalSet, Preset
from train.stopwords import stopwords_for
from vectorizer import ReviewVectorizer

CURVE_EVERY = 5  # minibatches between learning-curve points in the first pass


@dataclass
class Stage:
    seconds: float = 0.0
    docs: int = 0

    def as_dict(self) -> dict[str, float]:
        rate = self.docs / self.seconds if self.seconds and self.docs else None
        return {"seconds": round(self.seconds, 3), "docs": self.docs,
                "docs_per_s": round(rate, 1) if rate else None}


@dataclass
class Report:
    preset: str
    stages: dict[str, Stage] = field(default_factory=dict)
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        return self.stages.setdefault(name, Stage())

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "stages": {k: v.as_dict() for k, v in self.stages.items()},
            "accuracy": self.accuracy,
            "learning_curve": self.curve,
            **self.info,
        }


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest worker."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main": round(own, 1), "largest_worker": round(workers, 1)}


def eval_batches(csv_path: Path, es: EvalSet, size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    docs = stream_docs(csv_path, es.split, es.start, es.stop)
    if es.truncate:
        docs = ((text[: es.truncate], label) for text, label in docs)
    return minibatches(docs, size)


def nb_weights(pos: np.ndarray, neg: np.ndarray, smoothing: float, floor: float) -> np.ndarray:
    """Per-feature scale |log-count ratio| + floor (Wang & Manning's NB features).

    The sign of the ratio is dropped: for a linear model with symmetric L2 it
    only flips the sign of the learned weight. The floor keeps features never
    seen in training alive, so feedback can still teach the model new words.
    """
    p = pos + smoothing
    q = neg + smoothing
    ratio = np.log(p / p.sum()) - np.log(q / q.sum())
    return (np.abs(ratio) + floor).astype(np.float32)


def train(
    preset: Preset,
    csv_path: Path,
    stopwords: list[str],
    workers: int | None = None,
    seed: int = 0,
    report: Report | None = None,
    progress: bool = True,
) -> tuple[SGDClassifier, np.ndarray | None, Report]:
    """Fit the preset's classifier on the CSV; returns it, the feature weights and the report."""
    report = report or Report(preset.name)
    spec = preset.vectorizer
    raw_vectorizer = ReviewVectorizer(spec, stopwords)  # weights come after pass 1
    clf = SGDClassifier(**preset.sgd)
    rng = np.random.RandomState(seed)

    train_docs = stream_docs(
        csv_path, preset.train_split, preset.holdout,
        None if preset.train_stop is None else preset.holdout + preset.train_stop,
    )
    def curve_point(vectorizer: ReviewVectorizer, seen: int, epoch: int) -> None:
        X = vectorizer.finish(curve_raw.copy())
        report.curve.append(
            {"docs_seen": seen, "epoch": epoch,
             "accuracy": round(float(np.mean(clf.predict(X) == curve_y)), 4)}
        )

    one_pass = spec.feature_weights is None and preset.epochs == 1
    with FeaturePool(raw_vectorizer, workers) as pool, tempfile.TemporaryDirectory() as tmp:
        # The curve set is small and fixed: vectorize it once, weight it per point.
        curve = list(pool.raw_counts(minibatches(_curve_docs(preset, csv_path), 1000)))
        curve_raw = sp.vstack([X for X, _ in curve]).tocsr()
        curve_y = np.concatenate([y for _, y in curve])
        cache = FeatureCache(Path(tmp))
        pos = np.zeros(spec.n_features)
        neg = np.zeros(spec.n_features)
        stage = report.stage("features")
        start = time.perf_counter()
        batches = pool.raw_counts(minibatches(train_docs, preset.batch_size))
        for i, (X, y) in enumerate(tqdm(batches, desc="features", unit="batch", disable=not progress)):
            stage.docs += X.shape[0]
            if one_pass:
                clf.partial_fit(X, y, classes=CLASSES)
                if (i + 1) % CURVE_EVERY == 0:
                    curve_point(raw_vectorizer, stage.docs, 1)
            else:
                binary = X.astype(bool)
                pos += np.asarray(binary[y == 1].sum(axis=0)).ravel()
                neg += np.asarray(binary[y == 0].sum(axis=0)).ravel()
                cache.append(X, y)
        stage.seconds = time.perf_counter() - start
        if stage.docs == 0:
            raise ValueError("no training reviews in the CSV")

        weights = None
        if spec.feature_weights is not None:
            weights = nb_weights(pos, neg, preset.nb_smoothing, preset.weight_floor)
        model_vectorizer = ReviewVectorizer(spec, stopwords, weights)
        if not one_pass:
            _sgd_passes(preset, clf, cache, model_vectorizer, rng, report, curve_point, progress)
        if one_pass or not report.curve or report.curve[-1]["docs_seen"] != stage.docs * preset.epochs:
            curve_point(model_vectorizer, stage.docs * preset.epochs, preset.epochs)
        report.info["feature_cache_mb"] = round(cache.bytes / 2**20, 1)
    report.info["train_docs"] = report.stages["features"].docs
    return clf, weights, report


def _curve_docs(preset: Preset, csv_path: Path) -> Iterator[tuple[str, int]]:
    """The small fixed set the learning curve is measured on (default: the holdout)."""
    if preset.curve_set is not None:
        es = preset.curve_set
        return stream_docs(csv_path, es.split, es.start, es.stop)
    return stream_docs(csv_path, preset.train_split, 0, preset.holdout)


def _sgd_passes(preset, clf, cache, vectorizer, rng, report, curve_point, progress) -> None:
    """Several passes over the cached minibatches, each in a fresh random order."""
    stage = report.stage("sgd")
    start = time.perf_counter()
    seen = 0
    total = cache.count * preset.epochs
    with tqdm(total=total, desc="sgd", unit="batch", disable=not progress) as bar:
        for epoch in range(1, preset.epochs + 1):
            for n, index in enumerate(rng.permutation(cache.count)):
                X, y = cache.load(index)
                X = vectorizer.finish(X)
                order = rng.permutation(X.shape[0])
                clf.partial_fit(X[order], y[order], classes=CLASSES)
                seen += X.shape[0]
                bar.update()
                if epoch == 1 and (n + 1) % CURVE_EVERY == 0:
                    stage.seconds += time.perf_counter() - start
                    curve_point(vectorizer, seen, epoch)
                    start = time.perf_counter()
            stage.seconds += time.perf_counter() - start
            curve_point(vectorizer, seen, epoch)
            start = time.perf_counter()
    stage.docs = seen


def holdout_csv_gz(csv_path: Path, preset: Preset) -> bytes:
    """The holdout reviews as a gzipped CSV (fixed mtime: same bytes every run)."""
    docs = list(stream_docs(csv_path, preset.train_split, 0, preset.holdout))
    frame = pd.DataFrame(docs, columns=["review", "sentiment"])
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(frame.to_csv(index=False).encode("utf-8"))
    return buf.getvalue()


def run(
    preset: Preset,
    archive: str | Path | None,
    csv_path: Path,
    out_dir: Path | None,
    report_dir: Path | None,
    workers: int | None = None,
    seed: int = 0,
    copies: int = 1,
    skip_csv: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole pipeline; returns the report (also written to ``report_dir``)."""
    wall = time.perf_counter()
    report = Report(preset.name)
    stopwords = stopwords_for(preset.stopwords)
    if not skip_csv:
        archive_path = resolve_archive(archive)
        stage = report.stage("csv")
        start = time.perf_counter()
        counts = build_csv(archive_path, csv_path, seed=seed, copies=copies)
        stage.seconds = time.perf_counter() - start
        stage.docs = sum(counts.values())
        report.info["archive"] = {"path": str(archive_path), "sha256": sha256_file(archive_path)}
        report.info["csv_rows"] = counts
    clf, weights, report = train(preset, csv_path, stopwords, workers, seed, report, progress)

    served = prepare_for_serving(clf, preset.online)
    spec = preset.vectorizer
    vectorizer = ReviewVectorizer(spec, stopwords, weights)
    stage = report.stage("evaluate")
    start = time.perf_counter()
    with FeaturePool(vectorizer, workers) as pool:
        for es in preset.evaluations:
            result = evaluate_stream(served, pool.features(eval_batches(csv_path, es, 1000)))
            report.accuracy[es.name] = {**result, "description": es.description}
            stage.docs += result["n"]
    stage.seconds = time.perf_counter() - start

    if out_dir is not None:
        stage = report.stage("save")
        start = time.perf_counter()
        extra = {"holdout.csv.gz": holdout_csv_gz(csv_path, preset)} if preset.holdout else {}
        manifest = save_base(out_dir, served, stopwords, weights, {
            "preset": preset.name,
            "parameters": preset.to_json(),
            "vectorizer": spec.to_json(),
            "accuracy": {k: v["accuracy"] for k, v in report.accuracy.items()},
            "sizes": {"train": report.info["train_docs"], "holdout": preset.holdout,
                      **{k: v["n"] for k, v in report.accuracy.items()}},
            "versions": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "pandas": pd.__version__},
            "archive_sha256": report.info.get("archive", {}).get("sha256"),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }, extra)
        stage.seconds = time.perf_counter() - start
        report.info["model_size_bytes"] = manifest["size_bytes"]
    report.info["wall_seconds"] = round(time.perf_counter() - wall, 3)
    report.info["peak_rss_mb"] = peak_rss_mb()
    report.info["workers"] = workers
    result = report.as_dict()
    if report_dir is not None:
        write_report(result, Path(report_dir))
    return result


def write_report(result: dict[str, Any], report_dir: Path) -> None:
    """The report as JSON plus the learning curve as a PNG beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    name = f"train-{result['preset']}"
    (report_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    curve = result["learning_curve"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot([p["docs_seen"] for p in curve], [p["accuracy"] for p in curve], marker=".")
    ax.set_xlabel("documents seen (all passes)")
    ax.set_ylabel("accuracy on the curve set")
    ax.set_title(f"Learning curve, preset {result['preset']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(report_dir / f"{name}.png")
    plt.close(fig)
