"""Train a model out-of-core: archive -> CSV -> minibatches -> partial_fit -> pickles.

Stages (each timed in the report):
1. ``csv``: the archive read straight from the tar into a shuffled CSV.
2. ``features``: one streaming pass that hashes the training minibatches in
   worker processes, counts n-grams per class for the Naive-Bayes weights
   and spills the raw features to a disk cache (one-pass presets learn
   during this pass instead).
3. ``sgd``: shuffled passes over the cached minibatches with ``partial_fit``.
   The first pass finishes each batch (weights, row norm) and writes it back,
   so later passes only read it; with dropout, each pass fits random
   sub-reviews of the finished rows (:func:`drop_ngrams`); with several SGD
   runs, each batch read feeds every run, and their weights are averaged
   (:func:`averaged`). Meanwhile the workers, otherwise idle, hash the
   evaluation sets into a second cache: raw counts need no weights.
4. ``evaluate``: waits for whatever evaluation batches are still being
   hashed, finishes each cached batch with the weights in this process,
   predicts it once and counts it towards every evaluation set its reviews
   belong to.
5. ``save``: pickles, manifest and the holdout, written atomically.

Both presets take this one path; a one-pass preset (the book's) simply has
no ``sgd`` passes to hide the evaluation hashing behind.
"""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import io
import json
import platform
import resource
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import SGDClassifier
from tqdm import tqdm

from sentiment.files import atomic_write
from sentiment.models.saving import prepare_for_serving, save_base
from sentiment.models.state import CLASSES
from sentiment.text.spec import ColumnMap
from sentiment.text.vectorizer import ReviewVectorizer
from train.data import (
    DataError,
    build_csv,
    check_csv_target,
    check_writable_folder,
    given_archive,
    minibatches,
    resolve_archive,
    sha256_file,
    stream_docs,
    stream_rows,
)
from train.evaluate import Metrics
from train.pipeline import BackgroundSpill, FeatureCache, FeaturePool
from train.presets import EvalSet, Preset
from train.stopwords import stopwords_for

CURVE_EVERY = 5  # minibatches between learning-curve points in the first pass
EVAL_BATCH = 1000  # reviews per evaluation minibatch


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


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) of this process and of its finished workers.

    Unlike wall time, this barely depends on what else the machine runs, so
    it is the figure to compare runs on a shared machine.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"main": round(own.ru_utime + own.ru_stime, 2),
            "workers": round(workers.ru_utime + workers.ru_stime, 2)}


def eval_docs(csv_path: Path, es: EvalSet) -> Iterator[tuple[str, int]]:
    """The reviews of one evaluation set, cut to ``es.truncate`` characters if set."""
    docs = stream_docs(csv_path, es.split, es.start, es.stop)
    if es.truncate:
        docs = ((text[: es.truncate], label) for text, label in docs)
    return docs


def eval_jobs(
    csv_path: Path, sets: Sequence[EvalSet], size: int = EVAL_BATCH
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Minibatches covering every review of ``sets`` in one pass over the CSV.

    Evaluation sets overlap (the tutorial's rows 45,000-50,000 are half test
    split), so each distinct text is hashed and predicted once: a batch comes
    with ``member``, one row per review and one column per set, saying which
    sets the review counts for. A set that cuts reviews (``truncate``) sees
    different texts, so it gets batches of its own. Memory: one pending
    batch per distinct ``truncate``.
    """
    cuts = [es.truncate or None for es in sets]
    seen = [0] * len(sets)
    pending: dict[int | None, tuple[list[str], list[int], list[list[bool]]]] = {
        cut: ([], [], []) for cut in dict.fromkeys(cuts)
    }

    def batch(cut: int | None) -> tuple[list[str], np.ndarray, np.ndarray]:
        texts, labels, member = pending[cut]
        pending[cut] = ([], [], [])
        return texts, np.asarray(labels, dtype=np.int64), np.asarray(member, dtype=bool)

    bounded = all(es.stop is not None for es in sets)
    for text, label, split in stream_rows(csv_path):
        inside = []
        for j, es in enumerate(sets):
            if es.split is None or es.split == split:
                inside.append(es.start <= seen[j] and (es.stop is None or seen[j] < es.stop))
                seen[j] += 1
            else:
                inside.append(False)
        for cut, (texts, labels, member) in pending.items():
            row = [hit and c == cut for hit, c in zip(inside, cuts, strict=True)]
            if any(row):
                texts.append(text if cut is None else text[:cut])
                labels.append(label)
                member.append(row)
                if len(texts) == size:
                    yield batch(cut)
        if bounded and all(n >= es.stop for n, es in zip(seen, sets, strict=True)):
            break
    for cut, (texts, _, _) in list(pending.items()):
        if texts:
            yield batch(cut)


def kept_buckets(df: np.ndarray, n_kept: int) -> np.ndarray:
    """The ``n_kept`` buckets in most training reviews, sorted (see vectorizer.ColumnMap).

    Ties at the cut go to the lower bucket, so the choice is reproducible;
    buckets no training review has are never kept.
    """
    n_kept = min(n_kept, int(np.count_nonzero(df)))
    if n_kept == 0:
        raise DataError("no training review has any n-gram")
    # The cut from a histogram of the (small, integer) counts: one linear
    # pass, five times faster than np.partition over 2**24 buckets.
    at_least = np.cumsum(np.bincount(df)[::-1])[::-1]  # at_least[v]: buckets with df >= v
    cut = int(np.flatnonzero(at_least >= n_kept)[-1])
    above = np.flatnonzero(df > cut)
    tied = np.flatnonzero(df == cut)[: n_kept - len(above)]
    return np.sort(np.concatenate([above, tied]))


def serving_weights(weights: np.ndarray, columns: ColumnMap, spare_scale: float,
                    clf: SGDClassifier) -> np.ndarray:
    """The trained feature weights with the spare columns brought to life for feedback.

    Spare columns (n-grams rare or new in training) are inert while training:
    scaled by 0, so their coefficients stay exactly 0 (cross-validated, giving
    them a scale of 1.0 in training costs 0.3 points). Once served they get
    ``spare_scale``, outside the row norm, so honest feedback can teach the
    model a new word; with zero coefficients every prediction is unchanged.
    """
    if clf.coef_[0, columns.n_kept:].any():
        raise ValueError("spare columns learned during training: their scale must be 0 there")
    served = weights.copy()
    served[columns.n_kept:] = spare_scale
    return served


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


def drop_ngrams(X: sp.csr_matrix, rate: float, rng: np.random.RandomState) -> sp.csr_matrix:
    """A random sub-review of each finished row, back at unit length.

    Each stored entry is dropped with probability ``rate`` (to 1/65536), then
    every row is l2-normalised again. Each pass thus trains on other random
    subsets of a review's n-grams, which keeps the classifier from leaning on
    a few strong ones (feature noising; 5-fold figures in the default
    preset's comment). Meant for l2-normalised rows (the preset checks
    row_norm); a row whose entries all drop stays empty. Running sums instead
    of boolean indexing make it about 5 ms per batch of 1,000 reviews, a third
    of the plain version and less than the partial_fit it feeds.
    """
    draws = np.frombuffer(rng.bytes(2 * X.nnz), dtype=np.uint16)
    kept = draws >= round(rate * 65536)
    kept_before = np.zeros(X.nnz + 1, dtype=np.int64)  # kept entries before each one
    np.cumsum(kept, out=kept_before[1:])
    indptr = kept_before[X.indptr]
    kept = np.flatnonzero(kept)
    data = X.data.take(kept)
    squares = np.zeros(len(data) + 1)
    np.cumsum(data * data, dtype=np.float64, out=squares[1:])
    norms = np.sqrt(squares[indptr[1:]] - squares[indptr[:-1]])
    norms[norms == 0] = 1.0
    data *= np.repeat((1.0 / norms).astype(X.dtype), np.diff(indptr))
    return sp.csr_matrix((data, X.indices.take(kept), indptr.astype(X.indptr.dtype)),
                         shape=X.shape)


def count_documents(X: sp.csr_matrix, y: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> None:
    """Add to ``pos``/``neg`` how many reviews of each class contain each feature.

    ``X`` comes canonical from the hasher (one entry per feature and row), so
    counting its non-zero entries per column is the document frequency.
    Counted with ``np.unique``: over 2**24 buckets, a ``bincount`` allocates
    and adds a 128 MB array per class and batch (1.7 times the time) and
    ``np.add.at`` is six times slower.
    """
    nonzero = X.data != 0
    positive = np.repeat(y == 1, np.diff(X.indptr))
    for counts, rows in ((pos, nonzero & positive), (neg, nonzero & ~positive)):
        features, n = np.unique(X.indices[rows], return_counts=True)
        counts[features] += n.astype(counts.dtype)


class LearningCurve:
    """Accuracy on a small fixed set as training goes.

    The set is hashed once; its final features are computed once per
    vectorizer (:meth:`use`), so a point costs one prediction. Without any
    review in the set (no holdout) there is simply no curve.
    """

    def __init__(
        self, batches: list[tuple[sp.csr_matrix, np.ndarray]], points: list[dict[str, Any]]
    ) -> None:
        self.raw = sp.vstack([X for X, _ in batches]).tocsr() if batches else None
        self.y = np.concatenate([y for _, y in batches]) if batches else None
        self.X = self.raw
        self.points = points

    def use(self, vectorizer: ReviewVectorizer) -> None:
        if self.raw is not None:
            self.X = vectorizer.finish(vectorizer.to_columns(self.raw.copy()))

    def point(self, clf: SGDClassifier, seen: int, epoch: int) -> None:
        if self.X is None:
            return
        accuracy = float(np.mean(clf.predict(self.X) == self.y))
        self.points.append({"docs_seen": seen, "epoch": epoch, "accuracy": round(accuracy, 4)})


def train(
    preset: Preset,
    csv_path: Path,
    stopwords: list[str],
    workers: int | None = None,
    seed: int = 0,
    report: Report | None = None,
    progress: bool = True,
) -> tuple[SGDClassifier, np.ndarray | None, ColumnMap | None, Report]:
    """Fit the preset's classifier on the CSV and score it on the preset's evaluation sets.

    Training and evaluation share one worker pool so that the evaluation
    sets are hashed while SGD runs. Returns the classifier as it will be
    served (:func:`model.prepare_for_serving`, what the accuracies are
    measured on), the feature weights and the column map (None for presets
    without) and the report.
    """
    report = report or Report(preset.name)
    spec = preset.vectorizer
    raw_vectorizer = ReviewVectorizer(spec, stopwords)  # weights come after pass 1
    runs = [SGDClassifier(**preset.sgd) for _ in range(preset.sgd_runs)]
    rng = np.random.RandomState(seed)
    curve_set = preset.curve_set
    spilled = [es for es in preset.evaluations if es != curve_set]

    with (
        tempfile.TemporaryDirectory(prefix="sentiment-train-") as tmp,
        FeaturePool(raw_vectorizer, workers) as pool,
    ):
        # The curve set is small and fixed: hash it once, keep it in memory.
        batches = pool.raw_counts(minibatches(_curve_docs(preset, csv_path), EVAL_BATCH))
        curve = LearningCurve(list(batches), report.curve)
        if preset.one_pass:  # points during the first pass, before any weights
            curve.use(raw_vectorizer)
        cache = FeatureCache(Path(tmp) / "train")
        weights, columns = _first_pass(preset, csv_path, pool, runs[0], cache, curve,
                                       raw_vectorizer, report, progress)
        vectorizer = ReviewVectorizer(spec, stopwords, weights, columns)
        curve.use(vectorizer)
        # From here on the workers would idle: give them the evaluation sets.
        spill = pool.spill(eval_jobs(csv_path, spilled), FeatureCache(Path(tmp) / "eval"))
        try:
            train_docs = report.stages["features"].docs
            if not preset.one_pass:
                _sgd_passes(preset, runs, cache, vectorizer, rng, report, curve, progress)
            clf = averaged(runs)
            total = train_docs * preset.epochs
            if not report.curve or report.curve[-1]["docs_seen"] != total:
                curve.point(clf, total, preset.epochs)
            served = prepare_for_serving(clf, preset.online)
            if columns is not None:  # (the curve's features need no update: same scores)
                weights = serving_weights(weights, columns, preset.spare_scale, served)
                vectorizer = ReviewVectorizer(spec, stopwords, weights, columns)
            _evaluate(preset, served, vectorizer, curve, spilled, spill, report, progress)
        finally:
            spill.close()
        report.info["feature_cache_mb"] = round(cache.bytes / 2**20, 1)
        report.info["eval_cache_mb"] = round(spill.cache.bytes / 2**20, 1)
    report.info["train_docs"] = train_docs
    return served, weights, columns, report


def _curve_docs(preset: Preset, csv_path: Path) -> Iterator[tuple[str, int]]:
    """The small fixed set the learning curve is measured on (default: the holdout)."""
    if preset.curve_set is not None:
        return eval_docs(csv_path, preset.curve_set)
    return stream_docs(csv_path, preset.train_split, 0, preset.holdout)


def _first_pass(
    preset: Preset,
    csv_path: Path,
    pool: FeaturePool,
    clf: SGDClassifier,
    cache: FeatureCache,
    curve: LearningCurve,
    vectorizer: ReviewVectorizer,
    report: Report,
    progress: bool,
) -> tuple[np.ndarray | None, ColumnMap | None]:
    """Stream the training reviews once: learn (one-pass presets) or count and cache.

    Returns the Naive-Bayes feature weights and the column map, each None
    for presets without.
    """
    spec = preset.vectorizer
    learn_now = preset.one_pass
    train_docs = stream_docs(
        csv_path, preset.train_split, preset.holdout,
        None if preset.train_stop is None else preset.holdout + preset.train_stop,
    )
    pos = np.zeros(vectorizer.n_buckets, dtype=np.int32)
    neg = np.zeros(vectorizer.n_buckets, dtype=np.int32)
    stage = report.stage("features")
    start = time.perf_counter()
    batches = pool.raw_counts(minibatches(train_docs, preset.batch_size))
    for i, (X, y) in enumerate(tqdm(batches, desc="features", unit="batch", disable=not progress)):
        stage.docs += X.shape[0]
        if learn_now:
            clf.partial_fit(vectorizer.finish(X), y, classes=CLASSES)
            if (i + 1) % CURVE_EVERY == 0:
                curve.point(clf, stage.docs, 1)
        else:
            count_documents(X, y, pos, neg)
            cache.append(X, y)
    stage.seconds = time.perf_counter() - start
    if stage.docs == 0:
        raise DataError(f"no training reviews in {csv_path}")
    if spec.feature_weights is None:
        return None, None
    if spec.columns is None:
        return nb_weights(pos, neg, preset.nb_smoothing, preset.weight_floor), None
    kept = kept_buckets(pos + neg, round(preset.kept_share * spec.n_features))
    columns = ColumnMap(kept, spec.n_features, vectorizer.n_buckets)
    weights = nb_weights(pos[kept], neg[kept], preset.nb_smoothing, preset.weight_floor)
    spare = np.zeros(spec.n_features - len(kept), dtype=np.float32)  # see serving_weights
    return np.concatenate([weights, spare]), columns


def averaged(runs: Sequence[SGDClassifier]) -> SGDClassifier:
    """One linear classifier scoring the mean of the runs' scores.

    Runs that differ only in their shuffles and dropout draws err on
    different reviews; the mean of their weights keeps what they agree on.
    In cross-validation two runs of 5 passes beat one of 10 (the default
    preset's comment). A single run comes back as it is.
    """
    if len(runs) == 1:
        return runs[0]
    mean = copy.deepcopy(runs[0])
    mean.coef_ = np.mean([run.coef_ for run in runs], axis=0)
    mean.intercept_ = np.mean([run.intercept_ for run in runs], axis=0)
    return mean


def _sgd_passes(
    preset: Preset,
    runs: Sequence[SGDClassifier],
    cache: FeatureCache,
    vectorizer: ReviewVectorizer,
    rng: np.random.RandomState,
    report: Report,
    curve: LearningCurve,
    progress: bool,
) -> None:
    """Several passes over the cached minibatches, each in a fresh random order.

    The first pass finishes each raw batch and writes it back, so the other
    passes skip the weighting and normalising (same bytes, same result).
    Each batch read feeds every run, in its own row order and dropout draws.
    """
    stage = report.stage("sgd")
    start = time.perf_counter()
    seen = 0  # reviews each run has seen
    with tqdm(total=cache.count * preset.epochs, desc="sgd", unit="batch",
              disable=not progress) as bar:
        for epoch in range(1, preset.epochs + 1):
            for n, index in enumerate(rng.permutation(cache.count)):
                X, y = cache.load(index)
                if epoch == 1:
                    X = vectorizer.finish(vectorizer.to_columns(X))
                    # Inert spare columns (see serving_weights) are a quarter of
                    # the entries: dropping their zeros saves the SGD that time.
                    X.eliminate_zeros()
                    cache.replace(index, X, y)
                for clf in runs:
                    order = rng.permutation(X.shape[0])
                    X_run = drop_ngrams(X, preset.dropout, rng) if preset.dropout else X
                    clf.partial_fit(X_run[order], y[order], classes=CLASSES)
                seen += X.shape[0]
                bar.update()
                if epoch == 1 and (n + 1) % CURVE_EVERY == 0:
                    curve.point(averaged(runs), seen, epoch)
            curve.point(averaged(runs), seen, epoch)
    stage.seconds = time.perf_counter() - start
    stage.docs = seen * len(runs)


def _evaluate(
    preset: Preset,
    clf: SGDClassifier,
    vectorizer: ReviewVectorizer,
    curve: LearningCurve,
    spilled: Sequence[EvalSet],
    spill: BackgroundSpill,
    report: Report,
    progress: bool,
) -> None:
    """Accuracy on each evaluation set, from the batches the workers spilled.

    Batches are taken as soon as they are on disk, so predicting overlaps
    with the hashing that is still going on. A set equal to the curve set is
    scored on the curve's features, already in memory.
    """
    stage = report.stage("evaluate")
    start = time.perf_counter()
    report.info["eval_docs_hashed_before_evaluate"] = spill.cache.docs
    metrics = {es.name: Metrics() for es in preset.evaluations}
    for es in preset.evaluations:
        if es == preset.curve_set and curve.X is not None:
            metrics[es.name].update(clf.predict_proba(curve.X)[:, 1], curve.y)
    with tqdm(desc="evaluate", unit="doc", disable=not progress) as bar:
        for index in spill.finished():
            X, y, member = spill.cache.load_with_member(index)
            proba = clf.predict_proba(vectorizer.finish(vectorizer.to_columns(X)))[:, 1]
            for j, es in enumerate(spilled):
                rows = member[:, j]
                if rows.all():
                    metrics[es.name].update(proba, y)
                elif rows.any():
                    metrics[es.name].update(proba[rows], y[rows])
            bar.update(len(y))
    for es in preset.evaluations:
        if metrics[es.name].n == 0:
            raise DataError(f"evaluation set {es.name!r} ({es.description}) has no reviews")
        report.accuracy[es.name] = {**metrics[es.name].result(), "description": es.description}
        stage.docs += metrics[es.name].n
    stage.seconds = time.perf_counter() - start
    report.info["eval_docs_hashed"] = spill.cache.docs


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
    check_outputs(archive, csv_path, out_dir, report_dir, skip_csv)
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
    served, weights, columns, report = train(preset, csv_path, stopwords, workers, seed, report,
                                             progress)
    spec = preset.vectorizer

    if out_dir is not None:
        stage = report.stage("save")
        start = time.perf_counter()
        extra = {"holdout.csv.gz": holdout_csv_gz(csv_path, preset)} if preset.holdout else {}
        manifest = save_base(out_dir, served, stopwords, weights, columns, {
            "preset": preset.name,
            "parameters": preset.to_json(),
            "vectorizer": spec.to_json(),
            "accuracy": {k: v["accuracy"] for k, v in report.accuracy.items()},
            "sizes": {"train": report.info["train_docs"], "holdout": preset.holdout,
                      **{k: v["n"] for k, v in report.accuracy.items()}},
            "versions": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                         "scipy": scipy.__version__, "numpy": np.__version__,
                         "pandas": pd.__version__},
            "archive_sha256": report.info.get("archive", {}).get("sha256"),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }, extra)
        stage.seconds = time.perf_counter() - start
        report.info["model_size_bytes"] = manifest["size_bytes"]
    report.info["wall_seconds"] = round(time.perf_counter() - wall, 3)
    report.info["peak_rss_mb"] = peak_rss_mb()
    report.info["cpu_seconds"] = cpu_seconds()
    report.info["workers"] = workers
    result = report.as_dict()
    if report_dir is not None:
        write_report(result, Path(report_dir))
    return result


def check_outputs(
    archive: str | Path | None,
    csv_path: Path,
    out_dir: Path | None,
    report_dir: Path | None,
    skip_csv: bool = False,
) -> None:
    """Raise :class:`DataError` now if an output of :func:`run` cannot be written.

    Otherwise a wrong path would only show after minutes of training, or, for
    a CSV pointed at the archive, destroy the archive.
    """
    if not skip_csv:
        check_csv_target(csv_path, given_archive(archive))
    for folder, what in ((out_dir, "model folder"), (report_dir, "report folder")):
        if folder is not None:
            check_writable_folder(folder, what)


def write_report(result: dict[str, Any], report_dir: Path) -> None:
    """The report as JSON plus the learning curve as a PNG beside it, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    name = f"train-{result['preset']}"
    atomic_write(report_dir / f"{name}.json", (json.dumps(result, indent=2) + "\n").encode())
    curve = result["learning_curve"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot([p["docs_seen"] for p in curve], [p["accuracy"] for p in curve], marker=".")
    ax.set_xlabel("documents seen (all passes)")
    ax.set_ylabel("accuracy on the curve set")
    ax.set_title(f"Learning curve, preset {result['preset']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write(report_dir / f"{name}.png", png.getvalue())
