"""The text pipeline and the results page, step by step, in this process.

``python -m bench.pipeline`` times, on :data:`bench.serving.REVIEW` (best of
three ``timeit`` rounds), each step the results page takes: tokenizing,
vectorising, explaining ten phrases, marking the review's words, rendering;
then the page's whole CPU cost through the app's test client (CSRF on), and
without each thing it does that the tutorial's page does not, beside the
tutorial's page with ``--tutorial-model DIR`` (:func:`page_costs`); then
batch predictions on official test reviews: reviews per second, and what
predicting all 25,000 adds to the process's peak memory; that the committed
model's features and predictions for all 25,000 are the bits they were before
the compiled kernels (exit 1 if not); last, what a batch request costs besides
the model (counting its body's values, storing its predictions).
Run it from another checkout's folder (``cd TREE && python -m bench.pipeline``) to
compare two commits: the current folder comes first on the import path.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import resource
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from bench import add_archive_argument, archive_or_none, versions_line
from bench.serving import REVIEW
from train.data import iter_archive

MARKED = 10  # phrases the results page explains


def best_us(step: Callable[[], object], number: int = 2000) -> float:
    return min(timeit.repeat(step, number=number, repeat=3)) / number * 1e6


def steps() -> dict[str, float]:
    """Microseconds of each step of the results page on the benchmark's review."""
    from sentiment.models import load_model
    from sentiment.text.vectorizer import PKL_DIR
    from sentiment.web.highlight import as_html, highlighted

    model = load_model(PKL_DIR)
    tokens = model.tokenize(REVIEW)
    X = model.transform_tokens([tokens])
    explanation = model.explain(REVIEW, MARKED, X=X, tokens=tokens)
    segments = highlighted(REVIEW, explanation)
    return {
        "tokenize": best_us(lambda: model.tokenize(REVIEW)),
        "transform_tokens": best_us(lambda: model.transform_tokens([tokens])),
        "predict_features": best_us(lambda: model.predict_features(X)),
        f"explain ({MARKED} phrases)": best_us(
            lambda: model.explain(REVIEW, MARKED, X=X, tokens=tokens)),
        "highlighted": best_us(lambda: highlighted(REVIEW, explanation)),
        "as_html": best_us(lambda: as_html(segments)),
    }


def page_costs(tutorial_model: Path | None = None, blocks: int = 7,
               per_block: int = 300) -> dict[str, float]:
    """CPU microseconds of one results page through the test client (CSRF on): the
    whole page; the page without each thing it does that the tutorial's does not
    (explaining the prediction and marking its words; storing it, as the page runs
    when the log is out of reach); without both; and the tutorial's page
    (:mod:`bench.tutorial_app`) when ``tutorial_model`` (the book preset's folder)
    is given.

    One app serves all of ours, the part left out replaced for its blocks: two
    apps of the same code differed by up to a tenth, from where their model
    landed in memory. The blocks take turns, so that the machine's drift falls
    on every figure alike; each figure is its best block.
    """
    from app import create_app
    from bench.tutorial_app import create_app as create_tutorial_app

    app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(), "RATE_LIMITS": False,
                      "DURABLE_COMMITS": False})
    learner = app.extensions["learner"]
    client = app.test_client()
    html = client.get("/").data
    found = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert found is not None, "the form has no CSRF token"
    form = {"review": REVIEW, "csrf_token": found.group(1).decode()}

    def unrecorded(reviews: list[str], client: str | None = None, features: Any = None,
                   browser: str | None = None) -> list[tuple[None, Any, str]]:
        return [(None, p, learner.model_version)
                for p in learner.model.predict_features(features)]

    def without(*parts: str) -> Callable[[], contextlib.ExitStack]:
        def patched() -> contextlib.ExitStack:
            stack = contextlib.ExitStack()
            if "explanation" in parts:
                stack.enter_context(mock.patch.object(learner.model, "explain",
                                                      lambda *args, **kwargs: []))
            if "storing" in parts:
                stack.enter_context(mock.patch.object(learner, "predict", unrecorded))
            return stack
        return patched

    def ours(explained: bool, stored: bool) -> Callable[[], None]:
        def page() -> None:
            response = client.post("/results", data=form)
            assert response.status_code == 200, response.status_code
            assert (b'class="pushes"' in response.data) == explained, "explanation"
            assert (b'id="permalink"' in response.data) == stored, "storing"
        return page

    variants: dict[str, tuple[Callable[[], None], Callable[[], contextlib.ExitStack]]] = {
        "whole page": (ours(True, True), without()),
        "without the explanation": (ours(False, True), without("explanation")),
        "without storing the prediction": (ours(True, False), without("storing")),
        "without either": (ours(False, False), without("explanation", "storing")),
    }
    if tutorial_model is not None:
        tutorial = create_tutorial_app(tutorial_model, Path(tempfile.mkdtemp()) / "reviews.sqlite")
        tutorial_client = tutorial.test_client()

        def tutorial_page() -> None:
            response = tutorial_client.post("/results", data={"moviereview": REVIEW})
            assert b"This review reads" in response.data, response.status_code
        variants["the tutorial's page"] = (tutorial_page, contextlib.ExitStack)

    def block(name: str, n: int) -> float:
        page, patched = variants[name]
        with patched():
            started = time.process_time()
            for _ in range(n):
                page()
            return (time.process_time() - started) / n * 1e6

    for name in variants:
        block(name, 100)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(blocks):
        for name in variants:
            best[name] = min(best[name], block(name, per_block))
    return best


# The committed model's features and predictions for the official test
# reviews, taken with the numpy pipeline before the kernels replaced it:
# SHA-256 of indptr (<i8), indices (<i4), values (<f4), then P(positive) (<f8).
COMMITTED_DIGESTS = {
    2000: "683f3e472d65214681de152c1facb66fa9058d015f5a0c96fa68f5b6573182bb",
    25000: "ef94d83280c57ff406735c8ca540e02dd39814875b759c073e303fac7ef34fef",
}


def committed_digest(texts: list[str]) -> str:
    """The digest of :data:`COMMITTED_DIGESTS` for these reviews (the tests check the
    first 2,000, :func:`batch` all 25,000)."""
    from sentiment.models import load_model
    from sentiment.text.vectorizer import PKL_DIR

    model = load_model(PKL_DIR)
    X = model.transform(texts, chunk=1000)
    # Each row's score is its own dot product: predict() gives these bits too.
    positive = np.array([p.positive for p in model.predict_features(X)])
    digest = hashlib.sha256()
    for part in (X.indptr.astype("<i8"), X.indices.astype("<i4"), X.data.astype("<f4"),
                 positive.astype("<f8")):
        digest.update(part.tobytes())
    return digest.hexdigest()


def batch(archive: Path, n: int, rounds: int = 3) -> dict[str, Any]:
    """Batch predictions: reviews/s on ``n`` test reviews from one process and from one
    per usable core (``predict(workers=N)``), best of ``rounds`` alternating; vectorising
    them 8 reviews per call against ``BATCH_CHUNK`` (the requests' and ``predict``'s),
    alternating too; and the peak-memory growth of predicting the whole test split in
    this process."""
    from sentiment.models.linear import BATCH_CHUNK, SentimentModel
    from sentiment.serving.process import usable_cores
    from sentiment.text.vectorizer import PKL_DIR

    texts = [r.review for r in iter_archive(archive) if r.split == "test"]
    sample = random.Random(0).sample(texts, min(n, len(texts)))
    model = SentimentModel.load(PKL_DIR)
    cores = usable_cores()
    model.predict(sample[:200])  # warm caches
    one, many = [], []
    for _ in range(rounds):
        for workers, times in ((1, one), (cores, many)):
            started = time.perf_counter()
            model.predict(sample, workers=workers)
            times.append(len(sample) / (time.perf_counter() - started))
    vectorised: dict[int, list[float]] = {8: [], BATCH_CHUNK: []}
    for _ in range(rounds):
        for chunk, times in vectorised.items():
            started = time.perf_counter()
            model.transform(sample, chunk=chunk)
            times.append(len(sample) / (time.perf_counter() - started))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.predict(texts)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest = COMMITTED_DIGESTS.get(len(texts))
    return {"same_bits": None if digest is None else committed_digest(texts) == digest,
            "reviews_per_s": max(one), "reviews_per_s_all_cores": max(many),
            "cores": cores, "vectorised_per_s_by_8": max(vectorised[8]),
            "batch_chunk": BATCH_CHUNK, "vectorised_per_s_by_batch_chunk":
                max(vectorised[BATCH_CHUNK]),
            "peak_growth_mb": after - before, "reviews": len(texts)}


def batch_request(archive: Path, rounds: int = 5, stored: int = 20_000,
                  timed: int = 30_000, store_rounds: int = 3) -> dict[str, float]:
    """What a 1,000-review batch request costs besides the model, on the official test
    reviews: counting its JSON body's values before parsing, by hops between quotes and
    by the regular expression (ms per body, every body of the split, best of
    ``rounds``); storing its predictions with their features in a SQLite log that
    already holds ``stored`` of them, with checkpoints by the commits and by an
    upkeep thread (:func:`storing_cost`, over the next ``timed``; the median of
    ``store_rounds`` rounds of each, taking turns)."""
    from sentiment.models import load_model
    from sentiment.text.vectorizer import PKL_DIR
    from sentiment.web.body import too_many_values, too_many_values_by_expression

    texts = [r.review for r in iter_archive(archive) if r.split == "test"]
    bodies = [json.dumps({"reviews": texts[i:i + 1000]}).encode()
              for i in range(0, len(texts), 1000)]
    counted = {}
    for count in (too_many_values, too_many_values_by_expression):
        assert not any(count(body) for body in bodies), "a valid batch counted as a flood"
        counted[count.__name__] = min(timeit.repeat(
            lambda count=count: [count(body) for body in bodies], number=1,
            repeat=rounds)) / len(bodies) * 1000
    model = load_model(PKL_DIR)
    first = texts[:1000]
    X = model.transform(first)  # vectorised once, for the predictions and what is stored
    rows = [(text, int(p.label == "positive"), p.probability, features)
            for text, p, features in zip(first, model.predict_features(X),
                                         model.encode_rows(X), strict=True)]
    runs: dict[str, list[dict[str, float]]] = {"commits": [], "upkeep": []}
    with tempfile.TemporaryDirectory() as folder:
        for turn in range(store_rounds):  # taking turns, first one way then the other
            for how in sorted(runs, reverse=turn % 2 == 1):
                runs[how].append(storing_cost(Path(folder) / f"{how}-{turn}.sqlite", rows,
                                              stored, timed, upkeep=how == "upkeep"))
    store = {how: {key: statistics.median(run[key] for run in results)
                   for key in ("cpu_us", "wall_us")} for how, results in runs.items()}
    return {"count_ms": counted["too_many_values"],
            "count_by_expression_ms": counted["too_many_values_by_expression"],
            "bodies": len(bodies), "stored": stored, "timed": timed,
            "store_us": store["commits"]["cpu_us"], "store_wait_us": store["commits"]["wall_us"],
            "upkeep_store_us": store["upkeep"]["cpu_us"],
            "upkeep_store_wait_us": store["upkeep"]["wall_us"]}


def storing_cost(path: Path, rows: list[tuple[str, int, float, bytes | None]], stored: int,
                 timed: int, upkeep: bool) -> dict[str, float]:
    """Microseconds per row of storing ``timed`` rows, a batch at a time, in a new SQLite
    log at ``path`` that already holds ``stored``: the process's CPU, and the time the
    writer waited (a request's). ``upkeep``: the log's checkpoints handed to a thread
    as a server does (:meth:`~sentiment.learning.learner.Learner.start_log_upkeep`;
    its last call, after the writes, counts in the CPU), else made by the commits."""
    from sentiment.learning.learner import LOG_UPKEEP_SECONDS
    from sentiment.learning.timer import PeriodicThread
    from sentiment.storage.sqlite import SQLiteFeedbackLog

    log = SQLiteFeedbackLog(path)
    try:
        checkpoint = log.hand_over_upkeep() if upkeep else None
        for _ in range(stored // len(rows)):
            log.add_predictions(rows, "base+0", "a client")
        thread = None
        if checkpoint is not None:
            checkpoint()  # the timed writes start from a copied log, as the commits leave it
            thread = PeriodicThread(checkpoint, LOG_UPKEEP_SECONDS, "log-upkeep")
            thread.start()
        cpu, started = time.process_time(), time.perf_counter()
        for _ in range(timed // len(rows)):
            log.add_predictions(rows, "base+0", "a client")
        wall = time.perf_counter() - started
        if thread is not None:
            thread.stop()
        if checkpoint is not None:
            checkpoint()  # what the thread had yet to copy, counted
        return {"cpu_us": (time.process_time() - cpu) / timed * 1e6,
                "wall_us": wall / timed * 1e6}
    finally:
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline",
                                     description=__doc__.splitlines()[0])
    add_archive_argument(parser)
    parser.add_argument("--n", type=int, default=3_000, help="test reviews timed in batch")
    parser.add_argument("--tutorial-model", type=Path, metavar="DIR",
                        help="the book preset's folder (python -m train --preset book --out "
                             "DIR): also time the tutorial's results page")
    args = parser.parse_args(argv)
    archive = archive_or_none(args.archive)
    if archive is None:
        return 2
    print(versions_line(), flush=True)
    print(f"\nthe results page's steps, on the benchmark's review ({len(REVIEW):,} characters):")
    for name, us in steps().items():
        print(f"  {name:<22}{us:8.1f} us")
    costs = page_costs(args.tutorial_model)
    whole = costs["whole page"]
    print("\nthe results page through the app's test client, CPU per page (best of 7 blocks "
          "of 300, taking turns):")
    for name, us in costs.items():
        note = {"without the explanation": f"  (it costs {whole - us:.0f} us)",
                "without storing the prediction": f"  (it costs {whole - us:.0f} us)",
                "the tutorial's page": f"  (ours costs {whole / us:.1f}x)"}.get(name, "")
        print(f"  {name:<32}{us:6.0f} us{note}")
    print("  (a prediction not stored gets no verdict buttons and no permalink: the page as "
          "it is while the log is out of reach)")
    figures = batch(archive, args.n)
    print(f"\nbatch predictions on {args.n:,} test reviews: {figures['reviews_per_s']:,.0f} "
          f"reviews/s in one process, {figures['reviews_per_s_all_cores']:,.0f} in "
          f"{figures['cores']:.0f} (predict(workers={figures['cores']:.0f}), "
          f"{figures['reviews_per_s_all_cores'] / figures['reviews_per_s']:.2f}x); predicting "
          f"all {figures['reviews']:,} in one process raised the peak RSS by "
          f"{figures['peak_growth_mb']:.0f} MB")
    print(f"vectorising them, best of 3 alternating: {figures['vectorised_per_s_by_8']:,.0f} "
          f"reviews/s 8 per call, "
          f"{figures['vectorised_per_s_by_batch_chunk']:,.0f} "
          f"{figures['batch_chunk']:.0f} per call (BATCH_CHUNK: requests' and predict's)")
    if figures["same_bits"] is not None:
        print(f"the committed model's features and predictions for all {figures['reviews']:,} "
              "test reviews, against their digest before the compiled kernels: "
              + ("the same bits" if figures["same_bits"] else "CHANGED"))
    request = batch_request(archive)
    print(f"\na batch request's other costs, on the {request['bodies']} bodies of 1,000 test "
          f"reviews: counting a body's JSON values {request['count_ms']:.2f} ms (by the "
          f"regular expression: {request['count_by_expression_ms']:.2f} ms, "
          f"{request['count_by_expression_ms'] / request['count_ms']:.1f}x)")
    print(f"storing the predictions with their features in a SQLite log of "
          f"{request['stored']:,}, per row over the next {request['timed']:,}: "
          f"{request['store_us']:.1f} us of CPU, {request['store_wait_us']:.1f} us "
          f"waited with the commits checkpointing (SQLite's default); "
          f"{request['upkeep_store_us']:.1f} us of CPU, {request['upkeep_store_wait_us']:.1f} "
          f"us waited with a thread checkpointing (a server's log upkeep)")
    return 0 if figures["same_bits"] is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
