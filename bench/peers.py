"""The systems a user would pick instead, trained and measured in one run on the same data.

``python -m bench.peers`` trains, each in a process of its own started from the
raw archive (reading and formatting included, so every system pays for the same
work), this project's default and book presets and the peers: Vowpal Wabbit
(logistic loss, 2-grams and 3-grams, 5 passes through its Python bindings),
fastText (supervised, word bigrams) and scikit-learn (TF-IDF of 1- and 2-grams
and a logistic regression whose C is chosen on a validation part of the train
split, never on test). Then, in the same process, it loads the saved model as a
user would and measures: accuracy on the official 25,000-review test split,
batch predictions per second from raw text (this project's on every core, as
``predict(workers=N)`` offers, and every system's in one process),
single-prediction p50/p99, size on disk. Peak memory is the process tree's,
sampled. Every figure is also given as a ratio to the best peer's. Peers need
``requirements-bench.txt``; a peer whose package is missing is reported as such.
Written to ``reports/peers.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import add_archive_argument, archive_or_none, command_line, versions_line
from bench.architectures import TreeMemory
from train.data import iter_archive

ROOT = Path(__file__).resolve().parent.parent
SINGLE = 1_000  # single predictions timed for p50/p99
VALIDATION = 0.2  # the share of train reviews held out to choose scikit-learn's C
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)

Data = tuple[list[str], np.ndarray]
Predict = Callable[[Sequence[str]], np.ndarray]  # texts -> labels (0/1)


def read_archive(archive: Path) -> tuple[Data, Data]:
    """(train, test) texts and labels, in archive order."""
    train: tuple[list[str], list[int]] = ([], [])
    test: tuple[list[str], list[int]] = ([], [])
    for review in iter_archive(archive):
        part = train if review.split == "train" else test
        part[0].append(review.review)
        part[1].append(review.sentiment)
    return (train[0], np.array(train[1])), (test[0], np.array(test[1]))


# -- the peers' own text formats ---------------------------------------------------
TOKEN = re.compile(r"\w+|[^\w\s]")
TAG = re.compile(r"<[^>]*>")


def plain_tokens(text: str) -> list[str]:
    """Lowercased words and punctuation marks, HTML tags dropped: what the peers are fed.
    VW reads ``|`` and ``:`` as syntax, so they are spelt out."""
    tokens = TOKEN.findall(TAG.sub(" ", text).lower())
    return [{"|": "PIPE", ":": "COLON"}.get(t, t) for t in tokens]


def vw_line(text: str, label: int | None = None) -> str:
    return f"{'' if label is None else (1 if label else -1)} |w {' '.join(plain_tokens(text))}"


def fasttext_line(text: str, label: int | None = None) -> str:
    prefix = "" if label is None else f"__label__{label} "
    return prefix + " ".join(plain_tokens(text))


# -- training and loading, one function pair per system -----------------------------
def train_project(preset: str, archive: Path, work: Path) -> Path:
    """``python -m train --preset PRESET`` from the archive (its CSV included)."""
    out = work / "model"
    command = [sys.executable, "-m", "train", "--preset", preset, "--archive", str(archive),
               "--csv", str(work / "reviews.csv"), "--out", str(out),
               "--report-dir", str(work / "report"), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    (work / "reviews.csv").unlink(missing_ok=True)  # not part of the model
    return out


def load_project(folder: Path) -> Predict:
    return _project_predict(folder, workers=1)


def load_project_on_all_cores(folder: Path) -> Predict:
    """What a script scoring a data set uses: ``predict(workers=N)``, a process per
    usable core for batches of ``POOL_MIN`` reviews or more."""
    from sentiment.serving.process import usable_cores

    return _project_predict(folder, workers=usable_cores())


def _project_predict(folder: Path, workers: int) -> Predict:
    from sentiment.models import load_model

    model = load_model(folder)

    def predict(texts: Sequence[str]) -> np.ndarray:
        return np.array([p.label == "positive" for p in model.predict(texts, workers=workers)],
                        dtype=int)

    return predict


def train_vw(ngram: int, archive: Path, work: Path) -> Path:
    from vowpalwabbit import Workspace

    (texts, y), _ = read_archive(archive)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)  # the archive is sorted by label
    lines = [vw_line(texts[i], int(y[i])) for i in order]
    del texts
    out = work / "model"
    out.mkdir()
    workspace = Workspace(f"--loss_function logistic --ngram w{ngram} -b 24 --quiet "
                          f"-f {out / 'model.vw'}")
    for _ in range(5):
        for line in lines:
            workspace.learn(line)
    workspace.finish()
    return out


def load_vw(folder: Path) -> Predict:
    from vowpalwabbit import Workspace

    workspace = Workspace(f"-i {folder / 'model.vw'} -t --quiet")

    def predict(texts: Sequence[str]) -> np.ndarray:
        return np.array([workspace.predict(vw_line(t)) > 0 for t in texts], dtype=int)

    return predict


def train_fasttext(archive: Path, work: Path) -> Path:
    import fasttext

    (texts, y), _ = read_archive(archive)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)  # the archive is sorted by label
    data = work / "train.txt"
    data.write_text("\n".join(fasttext_line(texts[i], int(y[i])) for i in order))
    del texts
    model = fasttext.train_supervised(str(data), wordNgrams=2, epoch=10, verbose=0, seed=0)
    data.unlink()
    out = work / "model"
    out.mkdir()
    model.save_model(str(out / "model.bin"))
    return out


def load_fasttext(folder: Path) -> Predict:
    import fasttext

    model = fasttext.load_model(str(folder / "model.bin"))

    def predict(texts: Sequence[str]) -> np.ndarray:
        labels, _ = model.predict([fasttext_line(t) for t in texts])
        return np.array([label[0] == "__label__1" for label in labels], dtype=int)

    return predict


def train_sklearn(archive: Path, work: Path) -> Path:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    (texts, y), _ = read_archive(archive)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    cut = int(len(order) * VALIDATION)
    fit, held = order[cut:], order[:cut]

    def pipeline(c: float) -> Any:
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                             LogisticRegression(C=c, max_iter=1000))

    scores = {}
    for c in C_GRID:
        candidate = pipeline(c).fit([texts[i] for i in fit], y[fit])
        scores[c] = float(np.mean(candidate.predict([texts[i] for i in held]) == y[held]))
    best = max(C_GRID, key=lambda c: (scores[c], -c))
    model = pipeline(best).fit(texts, y)
    out = work / "model"
    out.mkdir()
    with open(out / "model.pkl", "wb") as fh:
        pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
    (work / "chosen.json").write_text(json.dumps({"C": best, "validation": scores}))
    return out


def load_sklearn(folder: Path) -> Predict:
    with open(folder / "model.pkl", "rb") as fh:
        model = pickle.load(fh)

    def predict(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.predict(list(texts)), dtype=int)

    return predict


SYSTEMS: dict[str, tuple[str, Callable[[Path, Path], Path], Callable[[Path], Predict]]] = {
    "default": ("this project, default preset",
                lambda a, w: train_project("default", a, w), load_project),
    "book": ("this project, book preset (the tutorial)",
             lambda a, w: train_project("book", a, w), load_project),
    "vw-2": ("Vowpal Wabbit, logistic, 2-grams, 5 passes",
             lambda a, w: train_vw(2, a, w), load_vw),
    "vw-3": ("Vowpal Wabbit, logistic, 3-grams, 5 passes",
             lambda a, w: train_vw(3, a, w), load_vw),
    "fasttext": ("fastText, supervised, bigrams, 10 epochs", train_fasttext, load_fasttext),
    "sklearn": ("scikit-learn TF-IDF 1-2-grams + LogisticRegression (C on validation)",
                train_sklearn, load_sklearn),
}
PEERS = ("vw-2", "vw-3", "fasttext", "sklearn")
# Systems that score a batch on every core out of the box (the peers' Python
# bindings predict in one thread).
ON_ALL_CORES = frozenset({"default", "book"})
PACKAGES = {"vw-2": "vowpalwabbit", "vw-3": "vowpalwabbit", "fasttext": "fasttext"}


def missing_package(name: str) -> str | None:
    """The package a system needs and this environment lacks (None: it has it)."""
    package = PACKAGES.get(name)
    if package is None:
        return None
    import importlib.util

    return None if importlib.util.find_spec(package) else package


# -- one system, in its own process ----------------------------------------------
def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def run_one(name: str, archive: Path, work: Path, single: int) -> dict[str, Any]:
    """Train ``name`` from the archive, then load it and measure it (this process)."""
    _, train, load = SYSTEMS[name]
    started, cpu = time.perf_counter(), cpu_seconds()
    folder = train(archive, work)
    figures: dict[str, Any] = {"train_wall_s": time.perf_counter() - started,
                               "train_cpu_s": cpu_seconds() - cpu}
    figures["size_mb"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    _, (texts, y) = read_archive(archive)
    predict = load(folder)
    predict(texts[:100])  # first calls load and warm what each system loads lazily
    started = time.perf_counter()
    labels = predict(texts)
    figures["batch_one_process_per_s"] = len(texts) / (time.perf_counter() - started)
    figures["accuracy_test"] = float(np.mean(labels == y))
    if name in ON_ALL_CORES:
        on_all_cores = load_project_on_all_cores(folder)
        started = time.perf_counter()
        same = on_all_cores(texts)
        figures["batch_per_s"] = len(texts) / (time.perf_counter() - started)
        assert (same == labels).all(), "predict(workers=N) changed a prediction"
    else:
        figures["batch_per_s"] = figures["batch_one_process_per_s"]
    times = []
    for text in texts[:single + 20]:
        begun = time.perf_counter()
        predict([text])
        times.append((time.perf_counter() - begun) * 1000)
    times = times[20:]  # the first calls warm caches
    figures["p50_ms"] = float(np.percentile(times, 50))
    figures["p99_ms"] = float(np.percentile(times, 99))
    chosen = work / "chosen.json"
    if chosen.is_file():
        figures["chosen"] = json.loads(chosen.read_text())
    return figures


def run_in_subprocess(name: str, archive: Path, work: Path, single: int) -> dict[str, Any]:
    """:func:`run_one` in a process of its own, with the peak memory of its process tree."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.peers", "--run", name, "--archive", str(archive),
               "--work", str(folder), "--single", str(single)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    memory = TreeMemory(proc.pid)
    stdout, stderr = proc.communicate()
    peak = memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    figures["peak_rss_mb"] = peak
    return figures


# -- the table ---------------------------------------------------------------------
COLUMNS = (  # key, heading, format, higher is better
    ("accuracy_test", "test accuracy", "{:.4f}", True),
    ("train_wall_s", "train wall s", "{:.1f}", False),
    ("train_cpu_s", "train CPU s", "{:.1f}", False),
    ("batch_per_s", "batch predictions/s", "{:,.0f}", True),
    ("batch_one_process_per_s", "batch/s, one process", "{:,.0f}", True),
    ("p50_ms", "one prediction p50 ms", "{:.3f}", False),
    ("p99_ms", "p99 ms", "{:.3f}", False),
    ("peak_rss_mb", "peak RSS MB", "{:,.0f}", False),
    ("size_mb", "size on disk MB", "{:.1f}", False),
)


def table(results: dict[str, dict[str, Any]]) -> str:
    """One row per system; under each figure its ratio to the best peer's (x1.00 = as good)."""
    peers = [results[n] for n in PEERS if n in results and "error" not in results[n]]
    best = {key: (max if higher else min)(r[key] for r in peers) if peers else None
            for key, _, _, higher in COLUMNS}
    lines = ["| system | " + " | ".join(head for _, head, _, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, figures in results.items():
        label = SYSTEMS[name][0]
        if "error" in figures:
            lines.append(f"| {label} | {figures['error']} |" + " |" * (len(COLUMNS) - 1))
            continue
        cells = []
        for key, _, fmt, _ in COLUMNS:
            cell = fmt.format(figures[key])
            if best[key]:
                cell += f" (x{figures[key] / best[key]:.2f})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers",
                                     description=__doc__.splitlines()[0])
    add_archive_argument(parser)
    parser.add_argument("--only", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS),
                        help="systems to run (default: all)")
    parser.add_argument("--single", type=int, default=SINGLE, help="single predictions timed")
    parser.add_argument("--work", type=Path, help="keep the models here (default: a "
                                                  "temporary folder)")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "peers.md")
    parser.add_argument("--run", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    archive = archive_or_none(args.archive)
    if archive is None:
        return 2
    if args.run:  # one system, in the process bench.peers started for it
        print(json.dumps(run_one(args.run, archive, args.work, args.single)))
        return 0
    print(versions_line(), flush=True)
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.only:
            package = missing_package(name)
            if package:
                results[name] = {"error": f"not run: `pip install -r requirements-bench.txt` "
                                          f"({package} missing)"}
            else:
                results[name] = run_in_subprocess(name, archive, work, args.single)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    text = table(results)
    print("\n" + text)
    command = command_line("bench.peers", argv)
    chosen = results.get("sklearn", {}).get("chosen")
    args.report.write_text(
        f"# Peers in one run (`{command}`)\n\n{versions_line()}; "
        f"{(time.perf_counter() - began) / 60:.1f} minutes on {os.cpu_count()} cores.\n\n"
        "Each system in a process of its own, from the raw archive (reading and formatting "
        "in its training time), then loaded from disk as a user would; the official 25,000 "
        "test reviews for accuracy and batch predictions, the first "
        f"{args.single:,} of them one at a time for p50/p99. In brackets: the ratio to the "
        "best peer's figure (Vowpal Wabbit, fastText, scikit-learn). Batch predictions "
        "as each system offers them: this project's on every core "
        "(`predict(workers=N)`), the peers' Python bindings in one thread; the next "
        "column gives every system in one process.\n\n" + text + "\n"
        + (f"\nscikit-learn's C, chosen on {VALIDATION:.0%} of the train reviews held out: "
           f"{chosen['C']} (validation accuracy per C: {chosen['validation']}).\n"
           if chosen else ""))
    print(f"\nwritten: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
