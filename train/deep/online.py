"""How a trained Keras model learns from verdicts, measured as the app would run it.

``python -m train.deep.online MODEL_DIR`` (pinned to one CPU, like a server's
worker) prints one JSON line:

* ``--replay N``: the digest after N verdicts on holdout reviews, learned one
  at a time between predictions. Two processes must print the same digest
  (training runs it twice: ``online_check``).
* otherwise, for each learning rate of ``--rates`` (default: the model's):
  how many "incorrect" verdicts in a row flip each of ``--reviews`` holdout
  reviews, and the holdout accuracy after each flip; honest feedback (the true
  label of every misclassified review of the first half, once each) and
  wrong feedback (200 verdicts against the truth, what one checkpoint of a
  prankster looks like to the guard). Accuracy is scored on the second half
  of the holdout, never on a review that was taught.

docs/deep-models.md has the figures that chose the presets' online rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.learning.guard import load_holdout
from sentiment.models.deep import backend


def with_learning_rate(model: Any, rate: float) -> Any:
    """A clone of ``model`` whose online SGD steps by ``rate`` (an optimizer variable)."""
    from sentiment.models.deep.state import DeepState

    state = model.state()
    arrays = [np.asarray(rate, dtype=a.dtype) if name.endswith("/learning_rate") else a
              for name, a in zip(state.names, state.arrays, strict=True)]
    return model.clone(DeepState(state.names, tuple(arrays)))


def with_layers(model: Any, layers: str) -> Any:
    """``model`` learning feedback in ``layers`` ("all" or "embedding")."""
    from sentiment.models.deep.engine import engine_for
    from sentiment.models.deep.served import DeepModel

    online = {**model.manifest["online"], "layers": layers}
    manifest = {**model.manifest, "online": online}
    engine = engine_for(manifest["architecture"], model.vocabulary.size,
                        model.vocabulary.seq_len, manifest["hyper_parameters"], online)
    twin = DeepModel(engine, model.vocabulary, manifest, model.engine.to_device(
        model.state().arrays))
    return twin


def replay(model: Any, X: np.ndarray, y: np.ndarray, n: int) -> dict[str, Any]:
    """N verdicts (true labels, every other one flipped), each between two predictions."""
    live = model.clone()
    start = time.perf_counter()
    for i in range(n):
        live.predict_features(X[i:i + 1])
        live.learn_features(X[i:i + 1], np.array([int(y[i]) ^ (i % 2)]))
    return {"digest": live.state().digest(),
            "ms_per_verdict": round((time.perf_counter() - start) * 1e3 / max(n, 1), 2)}


def flips(model: Any, X: np.ndarray, y: np.ndarray, reviews: int, max_steps: int
          ) -> dict[str, Any]:
    """"Incorrect" verdicts in a row until each review's label flips (capped at max_steps)."""
    half = len(X) // 2
    pool, score = (X[:half], y[:half]), (X[half:], y[half:])
    base_accuracy = model.accuracy(*score)
    steps, after, start, done = [], [], time.perf_counter(), 0
    for i in range(min(reviews, half)):
        live = model.clone()
        row = pool[0][i:i + 1]
        label = int(live.probabilities(row)[0] >= 0.5)
        n = 0
        while n < max_steps and int(live.probabilities(row)[0] >= 0.5) == label:
            live.learn_features(row, np.array([1 - label]))
            n += 1
        done += n
        steps.append(n if int(live.probabilities(row)[0] >= 0.5) != label else None)
        after.append(live.accuracy(*score))
    flipped = [s for s in steps if s is not None]
    honest = model.clone()
    wrong = np.flatnonzero((model.probabilities(pool[0]) >= 0.5).astype(int) != pool[1])
    for i in wrong:
        honest.learn_features(pool[0][i:i + 1], pool[1][i:i + 1])
    fixed = int(np.sum((honest.probabilities(pool[0][wrong]) >= 0.5) == pool[1][wrong]))
    prank = model.clone()
    for i in range(min(200, half)):
        prank.learn_features(pool[0][i:i + 1], 1 - pool[1][i:i + 1])
    return {
        "scoring_reviews": len(score[1]), "accuracy": round(base_accuracy, 4),
        "flip_steps": steps,
        "flip_steps_median": statistics.median(flipped) if flipped else None,
        "flip_steps_max": max(flipped) if flipped else None,
        "not_flipped": len(steps) - len(flipped),
        "accuracy_after_flip_mean": round(float(np.mean(after)), 4),
        "accuracy_after_flip_min": round(float(np.min(after)), 4),
        "honest": {"verdicts": len(wrong), "now_right": fixed,
                   "accuracy": round(honest.accuracy(*score), 4)},
        "wrong_200": {"accuracy": round(prank.accuracy(*score), 4)},
        "seconds": round(time.perf_counter() - start, 1), "flip_verdicts": done,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.deep.online", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--replay", type=int, metavar="N")
    parser.add_argument("--reviews", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--rates", help="comma-separated learning rates (default: the model's)")
    parser.add_argument("--layers", choices=("all", "embedding"),
                        help="what feedback moves (default: the model's online setting)")
    args = parser.parse_args(argv)
    backend.prepare()  # one CPU, before the model makes its first array
    from sentiment.models.deep.served import DeepModel

    model = DeepModel.load(args.model_dir)
    if args.layers:
        model = with_layers(model, args.layers)
    texts, y = load_holdout(args.model_dir / "holdout.csv.gz")
    X = model.transform(texts)
    if args.replay is not None:
        print(json.dumps(replay(model, X, y, args.replay)))
        return 0
    rates = ([float(r) for r in args.rates.split(",")] if args.rates
             else [float(model.manifest["online"]["learning_rate"])])
    results = {}
    for rate in rates:
        results[str(rate)] = flips(with_learning_rate(model, rate), X, y, args.reviews,
                                   args.max_steps)
        print(f"rate {rate}: {json.dumps(results[str(rate)])}", flush=True)
    only = str(rates[0])
    print(json.dumps({"learning_rate": rates[0], **results[only]} if len(rates) == 1
                     else results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
