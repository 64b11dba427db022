"""Named training recipes: the tutorial's baseline and our default.

A preset is data, not code, so the manifest can record exactly what made a
model and the benchmark can run both recipes through the same pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sentiment.text.spec import VectorizerSpec


@dataclass(frozen=True)
class EvalSet:
    """A labelled slice of the shuffled CSV to measure accuracy on."""

    name: str
    description: str
    split: str | None = None
    start: int = 0
    stop: int | None = None
    truncate: int | None = None  # keep only the first N characters of each review


TUTORIAL_5K = EvalSet(
    "tutorial_5k", "the tutorial's test set: reviews 45,000-50,000 of the shuffled CSV",
    start=45_000, stop=50_000,
)
OFFICIAL_TEST = EvalSet("test", "the official 25,000-review test split", split="test")
SHORT_TEST = EvalSet(
    "short_test", "the official test split cut to its first 200 characters",
    split="test", truncate=200,
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    vectorizer: VectorizerSpec
    stopwords: str  # "nltk", "nltk-keep-negations" or "none"
    train_split: str | None  # None: every review, as the tutorial does
    train_stop: int | None  # how many reviews (after the holdout) to train on
    holdout: int  # first N train-split reviews kept out of training, shipped with the model
    batch_size: int
    epochs: int
    sgd: dict[str, Any]
    online: dict[str, Any]  # how the served model keeps learning from feedback
    nb_smoothing: float = 1.0
    weight_floor: float = 0.0
    # With column selection (vectorizer.columns): the share of the columns
    # kept for the most frequent buckets, and the fixed scale of the spare ones
    # once served (0 while training: see train.serving_weights).
    kept_share: float = 0.75
    spare_scale: float = 1.0
    # Share of a review's n-grams dropped at random from each row in each SGD
    # pass, the rest re-normalised (train.drop_ngrams); needs row_norm.
    dropout: float = 0.0
    # Independent SGD runs over the same batches (own row orders and dropout
    # draws), their weights averaged into the served model (train.averaged).
    sgd_runs: int = 1
    curve_set: EvalSet | None = None  # learning curve measured here (default: the holdout)
    evaluations: tuple[EvalSet, ...] = (OFFICIAL_TEST, TUTORIAL_5K, SHORT_TEST)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectorizer.columns and not self.vectorizer.feature_weights:
            raise ValueError("column selection needs feature weights: they keep the spare "
                             "columns inert in training (train.serving_weights)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dropout and self.one_pass:
            raise ValueError("dropout applies to the SGD passes over cached batches, which a "
                             "one-pass preset does not make")
        if self.sgd_runs < 1:
            raise ValueError(f"sgd_runs must be at least 1, got {self.sgd_runs}")
        if self.sgd_runs > 1 and self.one_pass:
            raise ValueError("several SGD runs share the passes over cached batches, which a "
                             "one-pass preset does not make")
        if self.dropout and not self.vectorizer.row_norm:
            raise ValueError("dropout re-normalises each row (train.drop_ngrams): it needs "
                             "row_norm")

    @property
    def one_pass(self) -> bool:
        """Whether the preset learns while streaming (no weights to compute first, one epoch)."""
        return self.vectorizer.feature_weights is None and self.epochs == 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["vectorizer"] = self.vectorizer.to_json()
        return data


BOOK = Preset(
    name="book",
    description=(
        "Raschka & Mirjalili's tutorial: unigrams hashed into 2**21 features, NLTK "
        "stopwords, SGD logistic regression, 45 minibatches of 1,000 from all 50,000 "
        "shuffled reviews, tested on the next 5,000"
    ),
    vectorizer=VectorizerSpec(n_features=2**21),
    stopwords="nltk",
    train_split=None,
    train_stop=45_000,
    holdout=0,
    batch_size=1_000,
    epochs=1,
    sgd={"loss": "log_loss", "random_state": 1, "max_iter": 1},
    online={},
    curve_set=TUTORIAL_5K,
)

DEFAULT = Preset(
    name="default",
    description=(
        "uni-, bi- and trigrams of words and punctuation marks (negations kept) hashed "
        "into 2**24 buckets, the 786,432 most frequent in training kept as columns of "
        "their own and the rest folded into 262,144 spare columns; binary features "
        "scaled by Naive-Bayes log-count ratios from one streaming pass, l2-normalised, "
        "averaged SGD logistic regression over several shuffled passes; official train "
        "split only, minus a 2,000-review holdout shipped for the feedback guard"
    ),
    vectorizer=VectorizerSpec(
        n_features=2**20,
        ngram_range=(1, 3),
        binary=True,
        alternate_sign=False,
        hasher_norm=None,
        punctuation=True,
        ngram_hashing="token_mix",
        hashed_features=2**24,
        columns="columns.npy",
        feature_weights="feature_weights.npy",
        row_norm=True,
        dtype="float32",
    ),
    stopwords="none",
    train_split="train",
    train_stop=None,
    holdout=2_000,
    batch_size=1_000,
    # 5 passes of each of 2 runs (see dropout and sgd_runs).
    epochs=5,
    sgd={"loss": "log_loss", "alpha": 3e-6, "average": True, "random_state": 1},
    # Feedback: a constant step big enough for ~50 corrections to teach a new
    # word; no L2 decay and no shuffling, which makes a batch of pending
    # verdicts bit-identical to one partial_fit each (see model.py).
    online={"learning_rate": "constant", "eta0": 1.0, "penalty": None, "shuffle": False},
    nb_smoothing=1.0,
    # Kept columns: scale = |NB ratio| + 0.1. Spare columns (n-grams rare or
    # new in training): 0 while training, 1.5 outside the row norm once
    # served, so that feedback can teach new words (tests/test_guard.py).
    # Chosen on 5 folds of the train split: docs/measurements.md, "Preset
    # choices".
    weight_floor=0.1,
    kept_share=0.75,
    spare_scale=1.5,
    # Each pass drops 60% of each review's n-grams at random (same section).
    dropout=0.6,
    # Two runs of 5 passes, averaged (same section).
    sgd_runs=2,
)

PRESETS = {p.name: p for p in (DEFAULT, BOOK)}
