"""Train a Keras preset: CSV -> vocabulary -> int32 rows -> ``fit`` -> evaluate -> model folder.

Stages (each timed in the report, like the linear pipeline's):
1. ``csv``: the archive read into the same shuffled CSV (:func:`train.data.build_csv`).
2. ``encode``: the official train split read from the CSV; its first
   ``holdout`` reviews are shipped for the guard and never trained on; a
   validation slice decides when to stop (by default the reviews of other
   movies than the fitted ones, see :func:`train_split`); the rest are fitted.
   The vocabulary comes from the fitted reviews only. Encoded rows are held in
   memory (21,000 x 600 int32 is 50 MB): nothing needs streaming.
3. ``fit``: Keras ``fit`` with Adam, seeded (``keras.utils.set_random_seed``),
   at most ``epochs``, the validation accuracy checked ``checks_per_epoch``
   times an epoch; a check that is no better goes back to the best weights
   with a smaller learning rate (``anneal``), and ``patience`` of them in a
   row stop training. The best check's weights are the model.
4. ``evaluate``: each evaluation set read from the CSV in batches, encoded
   and predicted (the official test split is never seen before this).
5. ``save``: weights, vocabulary, holdout and manifest, each written atomically,
   manifest last.
6. ``online``: in fresh processes pinned to one CPU, as the app runs: the same
   verdicts replayed twice must give the same digest, and how many "incorrect"
   verdicts flip a review (``python -m train.deep.online``).

Training uses every core the process may use: a run is reproducible on the
same machine with the same CPUs (seeded shuffles, dropout and initial
weights), not across CPU counts (XLA's reductions split by thread).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment.files import atomic_write, sha256_bytes
from sentiment.models import KERAS
from sentiment.models.deep import backend
from sentiment.models.deep.architectures import build, hyper_parameters
from sentiment.models.deep.served import VOCABULARY, WEIGHTS
from sentiment.models.deep.state import DeepState
from sentiment.models.deep.text import Vocabulary
from train.data import DataError, build_csv, resolve_archive, sha256_file
from train.deep.presets import DeepPreset
from train.evaluate import Metrics
from train.presets import EvalSet
from train.stopwords import stopwords_for
from train.train import (
    Report,
    Stage,
    check_outputs,
    cpu_seconds,
    eval_jobs,
    holdout_csv_gz,
    peak_rss_mb,
)

ROOT = Path(__file__).resolve().parent.parent.parent
PREDICT_BATCH = 250


def train_split(preset: DeepPreset, csv_path: Path
                ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(fitted, validation) reviews of the train split, the holdout left out.

    The holdout is the first ``preset.holdout`` train reviews of the CSV, as for
    the linear model. Validation by "movies" takes the reviews numbered lowest
    (``train/pos/12_8`` is number 12) until it has ``preset.validation``: a
    movie's reviews are numbered consecutively, so few movies are on both sides.
    """
    try:
        frame = pd.read_csv(csv_path, usecols=["review", "sentiment", "split", "id"],
                            dtype={"review": str, "sentiment": np.int8, "split": str, "id": str},
                            na_filter=False, index_col=False, compression=None)
    except ValueError as exc:
        raise DataError(f"{csv_path} is not a training CSV ({exc})") from exc
    frame = frame[frame["split"] == preset.train_split].iloc[preset.holdout:]
    if len(frame) <= preset.validation:
        raise DataError(f"{csv_path}: too few {preset.train_split} reviews for a holdout of "
                        f"{preset.holdout} and a validation slice of {preset.validation}")
    if preset.validation_split == "random":
        held = np.arange(len(frame)) < preset.validation
    else:
        number = frame["id"].str.rsplit("/", n=1).str[-1].str.split("_").str[0].astype(int)
        cut = np.sort(number.to_numpy())[preset.validation - 1]
        held = (number <= cut).to_numpy()
    docs = list(zip(frame["review"], frame["sentiment"].astype(int), strict=True))
    return ([d for d, h in zip(docs, held, strict=True) if not h],
            [d for d, h in zip(docs, held, strict=True) if h])


def encode_train_split(preset: DeepPreset, csv_path: Path, stopwords: list[str]
                       ) -> tuple[Vocabulary, tuple[np.ndarray, np.ndarray],
                                  tuple[np.ndarray, np.ndarray]]:
    """The vocabulary, the fitted rows and labels, and the validation rows and labels.

    Reviews are tokenized twice (to count, then to encode) rather than kept as
    token lists: 3 million short strings would cost some 200 MB for 5 s saved.
    The vocabulary comes from the fitted reviews only.
    """
    fitted, held = train_split(preset, csv_path)
    stop = frozenset(stopwords)
    probe = Vocabulary((), preset.seq_len, stop, preset.keep)  # tokenizes; no words yet
    vocabulary = Vocabulary.build((probe.tokenize(text) for text, _ in fitted),
                                  preset.vocabulary, preset.seq_len, stop,
                                  preset.keep)  # type: ignore[arg-type]

    def encoded(docs: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
        X = np.concatenate([vocabulary.transform([text for text, _ in docs[i:i + 1000]])
                            for i in range(0, len(docs), 1000)])
        return X, np.array([label for _, label in docs], dtype=np.float32)

    return vocabulary, encoded(fitted), encoded(held)


def fit(preset: DeepPreset, keras: Any, vocabulary: Vocabulary,
        train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
        seed: int, progress: bool) -> tuple[Any, list[dict[str, Any]], float]:
    """The trained model (best validation check), the history, and when that check was
    (in epochs)."""
    keras.utils.set_random_seed(seed)
    model = build(preset.architecture, vocabulary.size, vocabulary.seq_len, preset.dropout,
                  preset.hyper_parameters)
    opt = preset.optimizer
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
                  "sgd": keras.optimizers.SGD}
    model.compile(optimizer=optimizers[opt["name"]](learning_rate=opt["learning_rate"]),
                  loss="binary_crossentropy", metrics=["accuracy"])
    keeper = _best_keeper(keras, preset)
    batches = -(-len(train[0]) // preset.batch_size)
    steps = -(-batches // preset.checks_per_epoch)
    history = model.fit(*train, validation_data=validation, batch_size=preset.batch_size,
                        epochs=preset.epochs * preset.checks_per_epoch, steps_per_epoch=steps,
                        shuffle=True, callbacks=[keeper], verbose=1 if progress else 0)
    checks = [{"epoch": round((i + 1) / preset.checks_per_epoch, 3),
               **{k: round(float(v[i]), 5) for k, v in history.history.items()}}
              for i in range(len(history.history["loss"]))]
    return model, checks, checks[keeper.best]["epoch"]


def _best_keeper(keras: Any, preset: DeepPreset) -> Any:
    """A callback keeping the weights of the best validation accuracy (restored at the end).

    On a check that is not better it goes back to the best weights with the
    learning rate times ``preset.anneal`` (1: unchanged), and stops after
    ``preset.patience`` such checks in a row.
    """

    class BestKeeper(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best, self.accuracy, self.weights, self.misses = -1, -1.0, None, 0

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            accuracy = float((logs or {})["val_accuracy"])
            if accuracy > self.accuracy:
                self.best, self.accuracy, self.misses = epoch, accuracy, 0
                self.weights = self.model.get_weights()
                return
            self.misses += 1
            if self.misses >= preset.patience:
                self.model.stop_training = True
            elif preset.anneal < 1.0:
                self.model.set_weights(self.weights)
                rate = self.model.optimizer.learning_rate
                rate.assign(rate * preset.anneal)

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return BestKeeper()


def evaluate(preset: DeepPreset, model: Any, vocabulary: Vocabulary, csv_path: Path,
             report: Report) -> None:
    """The trained Keras model's accuracy on each of the preset's evaluation sets."""
    report.accuracy.update(accuracies(
        csv_path, preset.evaluations,
        lambda texts: model.predict(vocabulary.transform(texts), batch_size=PREDICT_BATCH,
                                    verbose=0)[:, 0]))


def accuracies(csv_path: Path, sets: Sequence[EvalSet],
               positive: Callable[[list[str]], np.ndarray]) -> dict[str, dict[str, Any]]:
    """Accuracy on each evaluation set, one pass over the CSV (shared reviews predicted
    once); ``positive`` gives P(positive) of each review of a batch."""
    metrics = {es.name: Metrics() for es in sets}
    for texts, y, member in eval_jobs(csv_path, sets):
        proba = positive(texts)
        for j, es in enumerate(sets):
            rows = member[:, j]
            if rows.any():
                metrics[es.name].update(proba[rows], y[rows])
    for es in sets:
        if metrics[es.name].n == 0:
            raise DataError(f"evaluation set {es.name!r} ({es.description}) has no reviews")
    return {es.name: {**metrics[es.name].result(), "description": es.description}
            for es in sets}


def save(out_dir: Path, files: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, Any]:
    """Each file atomically, then the manifest with their sha256 (what ``load`` checks)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(out_dir / name, data)
    manifest = {**manifest, "files": {n: sha256_bytes(d) for n, d in files.items()},
                "size_bytes": sum(len(d) for d in files.values())}
    atomic_write(out_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def online_check(out_dir: Path, verdicts: int = 20) -> dict[str, Any]:
    """Replay verdicts in two fresh one-CPU processes (same digest?) and count flips."""
    def child(*args: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "train.deep.online", str(out_dir), *args],
                              capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode:
            raise RuntimeError(f"online check failed:\n{done.stderr[-3000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    first, second = child("--replay", str(verdicts)), child("--replay", str(verdicts))
    flips = child("--reviews", "10")
    return {"replayed_verdicts": verdicts, "bit_identical_in_two_processes":
            first["digest"] == second["digest"], "digest": first["digest"], **flips}


def run(preset: DeepPreset, archive: str | Path | None, csv_path: Path, out_dir: Path | None,
        report_dir: Path | None, seed: int = 0, skip_csv: bool = False,
        progress: bool = True, check_online: bool = True) -> dict[str, Any]:
    """The whole pipeline; returns the report (also written to ``report_dir``)."""
    wall, cpu_start = time.perf_counter(), time.process_time()
    check_outputs(archive, csv_path, out_dir, report_dir, skip_csv)
    report = Report(preset.name)
    stopwords = stopwords_for(preset.stopwords)
    if not skip_csv:
        archive_path = resolve_archive(archive)
        with _stage(report, "csv") as stage:
            counts = build_csv(archive_path, csv_path, seed=seed)
            stage.docs = sum(counts.values())
        report.info["archive"] = {"path": str(archive_path), "sha256": sha256_file(archive_path)}
    keras = backend.prepare(one_cpu=False)
    with _stage(report, "encode") as stage:
        vocabulary, train, validation = encode_train_split(preset, csv_path, stopwords)
        stage.docs = len(train[0]) + len(validation[0])
    with _stage(report, "fit") as stage:
        model, epochs, best = fit(preset, keras, vocabulary, train, validation, seed, progress)
        stage.docs = round(len(train[0]) * len(epochs) / preset.checks_per_epoch)
    with _stage(report, "evaluate") as stage:
        evaluate(preset, model, vocabulary, csv_path, report)
        stage.docs = sum(v["n"] for v in report.accuracy.values())
    report.info.update({
        "train_docs": len(train[0]), "validation_docs": len(validation[0]),
        "epochs": epochs, "best_epoch": best, "parameters": int(model.count_params()),
        "vocabulary_size": vocabulary.size,
        "oov_rate_train": round(float(np.mean(train[0][train[0] > 0] == 1)), 5),
        "cut_share_train": round(float(np.mean(train[0][:, -1] > 0)), 5),
    })
    if out_dir is not None:
        with _stage(report, "save"):
            weights = DeepState.of([v.path for v in model.trainable_variables],
                                   [np.asarray(v.value) for v in model.trainable_variables])
            files = {WEIGHTS: weights.to_bytes(), VOCABULARY: vocabulary.to_json_bytes(),
                     "holdout.csv.gz": holdout_csv_gz(csv_path, preset)}  # type: ignore[arg-type]
            manifest = save(Path(out_dir), files, _manifest(preset, vocabulary, report, keras,
                                                            stopwords, wall, cpu_start))
        report.info["model_size_bytes"] = manifest["size_bytes"]
        if check_online:
            with _stage(report, "online"):
                report.info["online"] = online_check(Path(out_dir))
    report.info["wall_seconds"] = round(time.perf_counter() - wall, 3)
    report.info["peak_rss_mb"] = peak_rss_mb()
    report.info["cpu_seconds"] = cpu_seconds()
    report.info["threads"] = len(os.sched_getaffinity(0))
    result = report.as_dict()
    result.pop("learning_curve")
    if report_dir is not None:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(report_dir) / f"train-{preset.name}.json",
                     (json.dumps(result, indent=2) + "\n").encode())
    return result


def _manifest(preset: DeepPreset, vocabulary: Vocabulary, report: Report, keras: Any,
              stopwords: list[str], wall: float, cpu_start: float) -> dict[str, Any]:
    import jax

    return {
        "kind": KERAS,
        "preset": preset.name,
        "description": preset.description,
        "architecture": preset.architecture,
        "hyper_parameters": hyper_parameters(preset.architecture, preset.hyper_parameters),
        "parameters": preset.to_json(),
        "vocabulary": {"size": vocabulary.size, "limit": preset.vocabulary,
                       "seq_len": vocabulary.seq_len, "keep": vocabulary.keep,
                       "stopwords": preset.stopwords, "stopword_count": len(stopwords)},
        "online": preset.online,
        "training": {"epochs": report.info["epochs"], "best_epoch": report.info["best_epoch"],
                     "train_wall_seconds": round(time.perf_counter() - wall, 1),
                     "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
                     "peak_rss_mb": peak_rss_mb()["main"],
                     "threads": len(os.sched_getaffinity(0))},
        "accuracy": {k: v["accuracy"] for k, v in report.accuracy.items()},
        "sizes": {"train": report.info["train_docs"], "validation": preset.validation,
                  "holdout": preset.holdout, **{k: v["n"] for k, v in report.accuracy.items()}},
        "backend": keras.backend.backend(),
        "versions": {"python": platform.python_version(), "keras": keras.__version__,
                     "jax": jax.__version__, "jaxlib": _version("jaxlib"),
                     "numpy": np.__version__},
        "archive_sha256": report.info.get("archive", {}).get("sha256"),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


@contextmanager
def _stage(report: Report, name: str) -> Iterator[Stage]:
    """Times a stage of the report."""
    stage = report.stage(name)
    start = time.perf_counter()
    try:
        yield stage
    finally:
        stage.seconds = time.perf_counter() - start
