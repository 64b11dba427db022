"""Where a verdict's server time goes, measured in-process on the committed model.

``python -m bench.learning`` prints:

* one-row ``partial_fit`` on the served classifier, passing ``classes`` (as a
  first fit must) and not;
* the app's update, :meth:`SentimentModel.learn_features`: ``partial_fit``
  on the review's own columns only, written back in place;
* vectorising the review the verdict is about; storing its columns with the
  prediction, and reading them back (what the learner does instead of
  vectorising);
* ``Learner.verdict`` end to end (commit, fsync, learn, checkpoints every 200),
  from 1 and from 4 threads, with how many verdicts each ``partial_fit`` learned;
* a full garbage collection of the built app, before and after ``gc.freeze()``.

Medians of repeated runs; compare within one run, the machine is shared.
"""

from __future__ import annotations

import argparse
import collections
import copy
import gc
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bench import versions_line
from bench.serving import REVIEW
from sentiment import memory as heap
from sentiment.learning.learner import Learner
from sentiment.models.linear import SentimentModel
from sentiment.models.state import CLASSES
from sentiment.storage.sqlite import SQLiteFeedbackLog as FeedbackLog
from sentiment.text.vectorizer import PKL_DIR


def median_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def verdict_rate(model: SentimentModel, stored: bytes | None, threads: int,
                 seconds: float) -> dict[str, object]:
    """Verdicts/s through a Learner on a fresh log, and the rows each partial_fit learned.

    ``stored``: the review's columns, stored with each prediction as the app does.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        feedback = FeedbackLog(folder / "reviews.sqlite")
        learner = Learner(model.clone(), feedback, folder / "models",
                          holdout_path=PKL_DIR / "holdout.csv.gz")
        learner.holdout()  # as a running app has it by its first checkpoint
        batches: collections.Counter[int] = collections.Counter()
        learn = learner.model.learn_features

        def counting(X, y) -> None:
            batches[X.shape[0]] += 1
            learn(X, y)

        learner.model.learn_features = counting
        ids = iter(feedback.add_predictions([(REVIEW, 1, 0.9, stored)] * 20_000, "bench"))
        lock = threading.Lock()
        deadline = time.perf_counter() + seconds
        done = [0] * threads

        def work(i: int) -> None:
            while time.perf_counter() < deadline:
                with lock:
                    pid = next(ids, None)
                if pid is None:
                    return
                learner.verdict(pid, pid % 3 != 0)
                done[i] += 1

        started = time.perf_counter()
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        feedback.close()
    calls = sum(batches.values())
    return {"threads": threads, "verdicts_per_s": sum(done) / elapsed,
            "partial_fit_calls": calls, "single_row_calls": batches[1],
            "rows_per_call": sum(k * n for k, n in batches.items()) / max(calls, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.learning",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(versions_line())
    threadpool_limits(limits=1, user_api="blas")  # as the app does
    heap.configure()  # as app.py does: a fixed mmap threshold

    model = SentimentModel.load()
    X = model.transform([REVIEW])
    y = np.array([1])
    stored = model.vectorizer.encode_rows(X)
    with_classes, without = copy.deepcopy(model.classifier), copy.deepcopy(model.classifier)
    learning = model.clone()
    timings = {
        "one-row partial_fit, classes passed": lambda: with_classes.partial_fit(
            X, y, classes=CLASSES),
        "one-row partial_fit, classes omitted": lambda: without.partial_fit(X, y),
        "the app's update (review's columns, in place)": lambda: learning.learn_features(X, y),
        "vectorising the review": lambda: model.transform([REVIEW]),
        "storing its columns (with the prediction)": lambda: model.vectorizer.encode_rows(X),
        "its stored columns read back": lambda: model.stored_features([REVIEW], stored),
    }
    for name, call in timings.items():
        print(f"{name:<46}{median_ms(call, args.repeat):6.2f} ms")
    print(f"the review's stored columns: {len(stored[0]):,} bytes "
          f"(the review: {len(REVIEW):,} characters)")

    for threads in (1, 4):
        r = verdict_rate(model, stored[0], threads, args.seconds)
        print(f"Learner.verdict, {threads} thread{'s' if threads > 1 else ' '}: "
              f"{r['verdicts_per_s']:5.0f}/s; {r['partial_fit_calls']} partial_fit calls, "
              f"{r['single_row_calls']} of one row, {r['rows_per_call']:.2f} rows per call")

    from app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"INSTANCE_PATH": tmp, "BACKGROUND_CHECKPOINTS": False})
        gc.collect()
        full = median_ms(gc.collect, 5)
        objects = len(gc.get_objects())
        gc.freeze()
        frozen = median_ms(gc.collect, 5)
        gc.unfreeze()
        app.extensions["learner"].feedback.close()
    print(f"full garbage collection of the built app ({objects:,} objects): {full:.1f} ms; "
          f"after gc.freeze(): {frozen:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
