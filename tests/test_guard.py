"""The guard (issue 4): bad feedback never reaches a published version; honest feedback does.

(a) 500 deliberately wrong verdicts: no published version falls more than
    GUARD_MARGIN below the base model's holdout accuracy; the culprits are
    quarantined (flagged with a reason, kept), and the model is still the
    base plus the accepted log.
(b) honest corrections teach a word of praise the model has never seen
    ("zorptastic"): accuracy on *new* reviews of that kind rises clearly,
    the holdout stays within the margin and versions are published.

Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import NEGATIVE, NEUTRAL, make_review
from tests.reference import log_of, reference_state

MARGIN = 0.01
SLANG = "zorptastic"

pytestmark = pytest.mark.both_backends


def published(learner) -> list:
    return [v for v in learner.store.list() if v.name != "base"]


def assert_model_is_the_log(app, model_dir: Path) -> None:
    learner = app.extensions["learner"]
    live = learner.model.state()
    assert live.equals(learner.rebuild().state())
    assert live.equals(reference_state(model_dir, log_of(app)))


def assert_versions_within_margin(learner, base: float) -> None:
    for info in published(learner):
        assert info.holdout_accuracy is not None
        assert info.holdout_accuracy >= base - MARGIN - 1e-9, info
        # The manifest tells the truth about the state it describes.
        state = learner.store.load(info.name)[1]
        assert learner.holdout_accuracy(state) == info.holdout_accuracy, info.name


# -- (a) ----------------------------------------------------------------------------
def test_wrong_verdicts_never_reach_a_published_version(make_app, tiny_model_dir):
    app = make_app(CHECKPOINT_EVERY=50, CHECKPOINT_SECONDS=1e9, GUARD_MARGIN=MARGIN,
                   DURABLE_COMMITS=False)
    learner = app.extensions["learner"]
    client = app.test_client()
    base = learner.base_accuracy()
    rng = random.Random(5)
    live_before_checkpoint = []
    for i in range(500):
        label = rng.randrange(2)
        body = client.post("/api/predict", json={"review": make_review(rng, label)}).get_json()
        honest = (body["label"] == "positive") == bool(label)
        if i % 50 == 49:
            live_before_checkpoint.append(learner.holdout_accuracy())
        r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                              "correct": not honest})
        assert r.status_code == 201

    versions = published(learner)
    quarantined = learner.feedback.verdicts("quarantined")
    counts = learner.feedback.counts()
    guard_accuracies = [float(re.search(r"accuracy (\S+) <", v.reason).group(1))
                        for v in quarantined]
    print(f"\n(a) base holdout {base:.3f}; live holdout just before each checkpoint "
          f"{[round(a, 3) for a in live_before_checkpoint]}; published "
          f"{[(v.name, v.holdout_accuracy) for v in versions]}; counts {counts}; "
          f"quarantined batches scored {sorted(set(guard_accuracies))}")

    assert_versions_within_margin(learner, base)
    assert learner.holdout_accuracy() >= base - MARGIN
    # The guard did act, on batches that really were below the line, and kept them.
    assert len(quarantined) >= 300
    assert all(v.reason.startswith("guard: holdout accuracy") for v in quarantined)
    assert max(guard_accuracies) < base - MARGIN
    assert counts.get("accepted", 0) + counts["quarantined"] == 500
    assert_model_is_the_log(app, tiny_model_dir)
    # A restart agrees.
    restarted = make_app(CHECKPOINT_EVERY=50, CHECKPOINT_SECONDS=1e9, GUARD_MARGIN=MARGIN)
    assert restarted.extensions["learner"].model.state().equals(learner.model.state())


# -- (b) ----------------------------------------------------------------------------
def slang_review(rng: random.Random, slang: bool = True) -> str:
    """Neutral words, one negative word, and (twice) the new word of praise."""
    sentences = [rng.sample(NEUTRAL, 5) for _ in range(3)]
    for _ in range(2 if slang else 0):
        rng.choice(sentences).insert(rng.randrange(6), SLANG)
    rng.choice(sentences).insert(rng.randrange(6), rng.choice(NEGATIVE))
    return " ".join(" ".join(s).capitalize() + "." for s in sentences)


def slang_experiment(app, corrections: int = 50, seed: int = 1,
                     contrast: int = 0) -> dict[str, Any]:
    """Honest verdicts on ``corrections`` slang reviews (all positive); accuracy before/after.

    ``contrast``: after each, that many honest verdicts on reviews of the same
    kind without the slang word (negative), as real traffic would also bring.
    """
    learner = app.extensions["learner"]
    fresh = random.Random(999)  # reviews never shown to the model
    new = [slang_review(fresh) for _ in range(300)]
    without = [slang_review(fresh, slang=False) for _ in range(300)]

    def measure() -> dict[str, float]:
        model = learner.model
        return {
            "new_slang_reviews": sum(p.label == "positive" for p in model.predict(new)) / 300,
            # Collateral: the same reviews without the slang word are still negative?
            "same_without_slang": sum(p.label == "negative" for p in model.predict(without))
            / 300,
            "holdout": learner.holdout_accuracy(),
        }

    before = measure()
    client = app.test_client()
    rng = random.Random(seed)
    wrong = 0
    for _ in range(corrections):
        body = client.post("/api/predict", json={"review": slang_review(rng)}).get_json()
        wrong += body["label"] != "positive"
        r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                              "correct": body["label"] == "positive"})
        assert r.status_code == 201
        for _ in range(contrast):
            body = client.post("/api/predict",
                               json={"review": slang_review(rng, slang=False)}).get_json()
            r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                                  "correct": body["label"] == "negative"})
            assert r.status_code == 201
    learner.checkpoint()
    return {"before": before, "after": measure(), "model_was_wrong": wrong,
            "base_holdout": learner.base_accuracy(),
            "published": [(v.name, v.holdout_accuracy) for v in published(learner)],
            "counts": learner.feedback.counts()}


def check_slang_result(result: dict[str, Any]) -> None:
    before, after = result["before"], result["after"]
    assert result["model_was_wrong"] >= 25, "the tiny model should get these wrong at first"
    assert before["new_slang_reviews"] <= 0.2
    assert result["published"], "honest corrections should be published"
    assert all(acc >= result["base_holdout"] - MARGIN for _, acc in result["published"])
    assert after["holdout"] >= result["base_holdout"] - MARGIN
    assert after["new_slang_reviews"] >= before["new_slang_reviews"] + 0.4, (
        f"50 honest corrections did not teach {SLANG!r}: {before} -> {after}")


# The served recipe (train/presets.py DEFAULT) must learn an unseen word: its
# spare columns give unseen n-grams a usable feature value once served and its
# constant online step moves them. With floor 0.1 and eta0 0.5 (no spare
# columns) this measured 0.00 -> 0.00; spare columns at 0.2 or 0.5 in
# training and serving, 0.00 -> 0.28 or 0.32. Since training drops n-grams
# (dropout), spare columns served at 1.0, 1.25 and 1.5 gave 0.35, 0.46 and
# 0.56, and the same reviews without the word all stayed negative (before
# dropout, at 1.0: 0.61 learned, and 0.83 of those stayed negative).
def test_honest_corrections_teach_a_new_word(make_app, tiny_model_dir):
    app = make_app(CHECKPOINT_EVERY=10, CHECKPOINT_SECONDS=1e9, GUARD_MARGIN=MARGIN,
                   DURABLE_COMMITS=False)
    result = slang_experiment(app)
    print(f"\n(b) served preset: {result}")
    assert_model_is_the_log(app, tiny_model_dir)
    check_slang_result(result)


ALTERNATIVE = {"online": {"learning_rate": "constant", "eta0": 1.0}, "weight_floor": 1.0}


@pytest.fixture(scope="module")
def alternative_model_dir(tmp_path_factory) -> Path:
    """The tiny model of conftest, trained with another online rate and weight floor."""
    from tests.fakes import write_csv
    from train.presets import DEFAULT, OFFICIAL_TEST
    from train.train import run

    folder = tmp_path_factory.mktemp("alternative_model")
    preset = replace(DEFAULT, holdout=100, batch_size=100, epochs=3,
                     evaluations=(OFFICIAL_TEST,),
                     vectorizer=replace(DEFAULT.vectorizer, n_features=2**16), **ALTERNATIVE)
    run(preset, None, write_csv(folder / "reviews.csv"), folder / "pkl", None, workers=1,
        skip_csv=True, progress=False)
    return folder / "pkl"


def test_honest_corrections_teach_a_new_word_with_alternative_preset(
        make_app, alternative_model_dir):
    """Same experiment with eta0=1.0, weight_floor=1.0: the mechanism works end to end."""
    app = make_app(MODEL_DIR=str(alternative_model_dir), CHECKPOINT_EVERY=10,
                   CHECKPOINT_SECONDS=1e9, GUARD_MARGIN=MARGIN, DURABLE_COMMITS=False)
    result = slang_experiment(app)
    print(f"\n(b) alternative {ALTERNATIVE}: {result}")
    assert_model_is_the_log(app, alternative_model_dir)
    check_slang_result(result)
