"""``python -m bench.loop_offline``: the scenarios played in process, as the app judges them."""

from __future__ import annotations

from pathlib import Path

from bench import loop_offline
from bench.loop import LabelledSet
from sentiment.learning.trust import TrustPolicy
from sentiment.models.linear import REPLAYS, SentimentModel
from tests.fakes import make_reviews


def test_the_policy_holds_a_liar_and_learning_everything_does_not(tiny_model_dir: Path) -> None:
    base = SentimentModel.load(tiny_model_dir)
    rows = make_reviews(120, seed=11)
    data = loop_offline.featurize(base, LabelledSet("demo", rows[:80], rows[80:], 0))
    imdb = data.score
    decoys = [0.99, 0.6]
    liar = loop_offline.play(base, data, imdb, decoys, "liar", TrustPolicy(), REPLAYS)
    unguarded = loop_offline.play(base, data, imdb, decoys, "liar", None, ())
    honest = loop_offline.play(base, data, imdb, decoys, "honest", TrustPolicy(), REPLAYS)
    assert liar["sent"] == unguarded["sent"] == honest["sent"] == 80
    assert unguarded["learned"] == 80 and liar["learned"] < 20  # the easy reviews: sure
    assert honest["learned"] == 80 and honest["set"] >= -1.0
    # Deterministic: the same scenario again gives the same figures.
    assert loop_offline.play(base, data, imdb, decoys, "liar", TrustPolicy(), REPLAYS) == liar


def test_a_gate_holds_only_contradictions_of_confident_predictions() -> None:
    from sentiment.storage.log import Evidence

    gate = loop_offline.gate(0.8)
    many = Evidence(0.95, False, 50, 50, 50, (True,) * 100)  # a record that would distrust
    assert not gate.judge(many).accept
    assert gate.judge(Evidence(0.7, False, 50, 50, 50, (True,) * 100)).accept
    assert gate.judge(Evidence(0.95, True, 50, 50, 50, (True,) * 100)).accept
