"""Every architecture in one run, in one table: the linear presets and the Keras ones.

``python -m bench.architectures`` trains each preset from the archive with
``python -m train`` in a process of its own (CSV included, so every training
time is like for like), then measures each saved model in a fresh process
pinned to one CPU, as a server worker runs it: accuracy on the official test
split, on the tutorial's 5,000-review split and on short out-of-domain
sentences; single-review latency; batch predictions per second; size on disk.
Every figure is also printed as a ratio to the default linear model measured in
the same run, and the table is written to ``reports/architectures.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import add_archive_argument, archive_or_none, command_line, versions_line
from bench.labelled import SENTENCES, read_labelled, set_name
from train.data import stream_rows

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("book", "default", "rnn", "cnn", "rcnn")
BASELINE = "default"
TUTORIAL_5K = (45_000, 50_000)  # rows of the shuffled CSV the tutorial tests on
BATCH = 1_000
# Ensembles scored from their members' probabilities (the mean), members measured above.
ENSEMBLES = {"default+cnn": ("default", "cnn"), "cnn+rcnn": ("cnn", "rcnn"),
             "rnn+cnn+rcnn": ("rnn", "cnn", "rcnn")}


# -- training -------------------------------------------------------------------
class TreeMemory:
    """Peak resident memory of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.peak_mb = 0.0
        self._pid = pid
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            try:
                root = psutil.Process(self._pid)
                procs = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
            except psutil.Error:
                continue
            self.peak_mb = max(self.peak_mb, rss / 2**20)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak_mb


def train(preset: str, archive: Path, work: Path) -> dict[str, Any]:
    """``python -m train --preset PRESET`` from the archive; its wall, CPU and memory."""
    out = work / preset
    command = [sys.executable, "-m", "train", "--preset", preset, "--archive", str(archive),
               "--csv", str(work / f"{preset}.csv"), "--out", str(out / "model"),
               "--report-dir", str(out), "--quiet"]
    before = os.times()
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    memory = TreeMemory(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    peak = memory.stop()
    after = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{stderr[-3000:]}")
    return {"command": shlex.join(command[1:]), "wall_s": wall,
            "cpu_s": (after.children_user - before.children_user)
            + (after.children_system - before.children_system),
            "peak_rss_mb": peak, "model_dir": str(out / "model"),
            "csv": str(work / f"{preset}.csv")}


# -- measuring a saved model (in its own process) ---------------------------------
def labelled_sentences(folder: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each ``NAME_labelled.txt`` of ``folder``: ``sentence<TAB>label`` lines."""
    sets = {}
    for path in sorted(folder.glob("*_labelled.txt")):
        rows = read_labelled(path)
        sets[set_name(path)] = ([text for text, _ in rows],
                                np.array([label for _, label in rows]))
    return sets


def measure(model_dir: Path, csv_path: Path, sentences: Path, latency_n: int) -> dict[str, Any]:
    """The figures of one saved model, measured in this process (pinned to one CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    from threadpoolctl import threadpool_limits

    from sentiment.models import load_model

    threadpool_limits(1)
    started = time.perf_counter()
    model = load_model(model_dir)
    load_s = time.perf_counter() - started
    test_texts, test_y, tutorial_texts, tutorial_y = [], [], [], []
    for row, (text, label, split) in enumerate(stream_rows(csv_path)):
        if split == "test":
            test_texts.append(text)
            test_y.append(label)
        if TUTORIAL_5K[0] <= row < TUTORIAL_5K[1]:
            tutorial_texts.append(text)
            tutorial_y.append(label)

    positive: dict[str, list[float]] = {}  # each set's P(positive) per review, for ensembles

    def accuracy(key: str, texts: list[str], y: Any) -> float | None:
        if not texts:
            return None  # a CSV too small for the split
        probabilities: list[float] = []
        for start in range(0, len(texts), BATCH):
            X = model.transform(texts[start:start + BATCH])
            probabilities += [p.probability if p.label == "positive" else 1.0 - p.probability
                              for p in model.predict_features(X)]
        positive[key] = probabilities
        return float(np.mean((np.array(probabilities) > 0.5) == np.asarray(y)))

    started = time.perf_counter()
    test_accuracy = accuracy("accuracy_test", test_texts, test_y) or 0.0
    batch_per_s = len(test_texts) / (time.perf_counter() - started)
    figures: dict[str, Any] = {
        "accuracy_test": test_accuracy,
        "accuracy_tutorial_5k": accuracy("accuracy_tutorial_5k", tutorial_texts, tutorial_y),
        "batch_predictions_per_s": batch_per_s,
        "load_s": load_s,
    }
    labels = {"accuracy_test": test_y, "accuracy_tutorial_5k": tutorial_y}
    for name, (texts, y) in labelled_sentences(sentences).items():
        figures[f"accuracy_{name}"] = accuracy(f"accuracy_{name}", texts, y)
        labels[f"accuracy_{name}"] = list(y)
    times = []
    for i, text in enumerate(test_texts[:latency_n + 20]):
        started = time.perf_counter()
        model.predict_features(model.transform([text]))
        if i >= 20:  # the first calls compile and warm caches
            times.append((time.perf_counter() - started) * 1000)
    figures["predict_p50_ms"] = float(np.percentile(times, 50))
    figures["predict_p99_ms"] = float(np.percentile(times, 99))
    figures["size_mb"] = sum(p.stat().st_size for p in model_dir.iterdir()
                             if p.is_file()) / 2**20
    figures["manifest"] = {k: v for k, v in model.manifest.items()
                           if k in ("preset", "kind", "description", "architecture")}
    figures["positive"] = positive
    figures["labels"] = {key: [int(v) for v in y] for key, y in labels.items() if len(y)}
    return figures


def ensemble(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of the members' mean probability on every set they all scored.

    Costs add up (each member runs), so training time, size and one prediction's
    latency are the members' sums; batch throughput is not summed (it is not
    additive) and left out.
    """
    figures: dict[str, Any] = {}
    for key in members[0]["positive"]:
        if all(key in m["positive"] for m in members):
            mean = np.mean([m["positive"][key] for m in members], axis=0)
            figures[key] = float(np.mean((mean > 0.5) == np.array(members[0]["labels"][key])))
    for key in ("wall_s", "cpu_s", "size_mb", "load_s", "predict_p50_ms", "predict_p99_ms"):
        if all(m.get(key) is not None for m in members):
            figures[key] = sum(m[key] for m in members)
    return figures


def measure_in_subprocess(trained: dict[str, Any], sentences: Path,
                          latency_n: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.architectures", "--measure", trained["model_dir"],
               "--csv", trained["csv"], "--sentences", str(sentences),
               "--latency-n", str(latency_n)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the table ----------------------------------------------------------------------
ROWS = (  # (key, label, format, higher is better)
    ("accuracy_test", "accuracy, official test (25k)", "{:.4f}", True),
    ("accuracy_tutorial_5k", "accuracy, tutorial's 5k split *", "{:.4f}", True),
    ("accuracy_yelp", "accuracy, Yelp sentences", "{:.4f}", True),
    ("accuracy_amazon_cells", "accuracy, Amazon phone sentences", "{:.4f}", True),
    ("wall_s", "training wall s (archive -> model)", "{:.1f}", False),
    ("cpu_s", "training CPU s", "{:.1f}", False),
    ("peak_rss_mb", "training peak RSS MB (process tree)", "{:.0f}", False),
    ("size_mb", "model size on disk MB", "{:.1f}", False),
    ("load_s", "model load s (one CPU)", "{:.2f}", False),
    ("predict_p50_ms", "one prediction p50 ms (one CPU)", "{:.2f}", False),
    ("predict_p99_ms", "one prediction p99 ms (one CPU)", "{:.2f}", False),
    ("batch_predictions_per_s", "batch predictions/s (one CPU)", "{:,.0f}", True),
)


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    base = results.get(BASELINE)
    head = "| figure | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for key, label, fmt, _ in ROWS:
        cells = []
        for name in names:
            value = results[name].get(key)
            if value is None:
                cells.append("-")
                continue
            cell = fmt.format(value)
            if base is not None and name != BASELINE and base.get(key):
                cell += f" ({value / base[key]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict[str, dict[str, Any]], command: str, seconds: float) -> str:
    return f"""# Architectures compared (`python -m bench.architectures`)

Command: `{command}`, {seconds / 60:.0f} minutes on this 2-core machine.
{versions_line()}

Each preset trained from the archive by `python -m train --preset NAME` in its own
process (shuffled CSV included), then measured in a fresh process pinned to one CPU, as
a server worker runs it. In brackets: the ratio to the default linear model in this run.

{table(results)}

Ensembles (the last columns) answer with the mean of their members' probabilities; their
accuracies are computed from the members' answers above, and their costs are the
members' sums (one prediction runs every member in turn). cnn+rcnn is also served as a
model (`python -m train.deep.ensemble`, `make run MODEL=cnn+rcnn`); the others are
figures only.

\\* The tutorial's split is rows 45,000-50,000 of the shuffled CSV of all 50,000 reviews:
the book preset never trains on it; the other presets train on the official train split,
which holds about half of it, so their figure there is optimistic.

Training commands (relative to the repository):

""" + "\n".join(f"- {name}: `python {r['command']}`" for name, r in results.items()
            if "command" in r) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.architectures",
                                     description=__doc__.splitlines()[0])
    add_archive_argument(parser)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--sentences", type=Path, default=SENTENCES,
                        help="folder of NAME_labelled.txt files (sentence<TAB>label)")
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "architectures.md")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "architectures.json")
    parser.add_argument("--work", type=Path, help="folder for CSVs and models (default: "
                                                  "a temporary one)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.csv, args.sentences, args.latency_n)))
        return 0
    archive = archive_or_none(args.archive)
    if archive is None:
        return 2
    command = command_line("bench.architectures", argv)
    print(versions_line(), flush=True)
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.presets:
            print(f"training {name} ...", flush=True)
            trained = train(name, archive, work)
            print(f"  {trained['wall_s']:.1f} s; measuring ...", flush=True)
            results[name] = {**trained, **measure_in_subprocess(trained, args.sentences,
                                                                  args.latency_n)}
            print(f"  accuracy on the test split {results[name]['accuracy_test']:.4f}",
                  flush=True)
    for name, members in ENSEMBLES.items():
        if all(m in results for m in members):
            results[name] = ensemble([results[m] for m in members])
    for figures in results.values():
        figures.pop("positive", None)
        figures.pop("labels", None)
    text = report(results, command, time.perf_counter() - began)
    print("\n" + table(results))
    args.report.write_text(text)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten: {args.report}, {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
