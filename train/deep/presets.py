"""The Keras presets: ``python -m train --preset rnn|cnn|rcnn``.

Data like the linear presets (:mod:`train.presets`), so the manifest records
exactly what made a model. The figures behind each choice are in
docs/deep-models.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from train.presets import OFFICIAL_TEST, SHORT_TEST, TUTORIAL_5K, EvalSet


@dataclass(frozen=True)
class DeepPreset:
    name: str
    description: str
    architecture: str  # sentiment.models.deep.architectures.ARCHITECTURES
    hyper_parameters: dict[str, Any]  # overrides of the architecture's defaults
    stopwords: str = "nltk-keep-negations"  # "nltk", "nltk-keep-negations" or "none"
    vocabulary: int = 20_000  # most frequent training words kept (reports/explore)
    seq_len: int = 350  # words per review; longer ones are cut (reports/explore)
    keep: str = "first"  # which words of a longer review: "first" or "last"
    dropout: float = 0.5
    optimizer: dict[str, Any] = field(
        default_factory=lambda: {"name": "adam", "learning_rate": 1e-3})
    batch_size: int = 64
    # The schedule below is every preset's, measured (docs/deep-models.md).
    epochs: int = 3  # at most: early stopping on the validation slice ends sooner
    # Validation accuracy measured this many times per epoch (the models peak early).
    checks_per_epoch: int = 2
    # On a check without a better validation accuracy: back to the best weights with the
    # learning rate times ``anneal``; after ``patience`` such checks in a row, stop.
    anneal: float = 0.1
    patience: int = 2
    train_split: str = "train"
    holdout: int = 2_000  # first N train-split reviews: shipped for the guard, never trained on
    validation: int = 2_000  # about N more: early stopping (never the test split)
    # "movies": the train reviews of the lowest review numbers. aclImdb numbers a
    # movie's reviews consecutively, so these are other movies than the fitted
    # ones, as the test split's are; "random": the next N of the shuffled CSV,
    # which share movies (and their names) with the fitted reviews.
    validation_split: str = "movies"
    # Feedback: plain SGD, one verdict per step, on the dropout-free model.
    online: dict[str, Any] = field(
        default_factory=lambda: {"optimizer": "sgd", "learning_rate": 0.003,
                                 "layers": "embedding"})
    evaluations: tuple[EvalSet, ...] = (OFFICIAL_TEST, TUTORIAL_5K, SHORT_TEST)

    def __post_init__(self) -> None:
        if self.keep not in ("first", "last"):
            raise ValueError(f"keep must be 'first' or 'last', got {self.keep!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.validation_split not in ("movies", "random"):
            raise ValueError(f"validation_split must be 'movies' or 'random', got "
                             f"{self.validation_split!r}")
        if self.checks_per_epoch < 1 or self.patience < 1 or not 0.0 < self.anneal <= 1.0:
            raise ValueError("checks_per_epoch and patience must be at least 1, anneal in (0, 1]")
        if self.online.get("optimizer") != "sgd":
            raise ValueError("online learning is plain SGD (the served model's optimizer)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# A recurrent model's prediction moves far more per embedding step than the cnn's
# (docs/deep-models.md, "Learning from verdicts"): a thirtieth of its rate.
RECURRENT_ONLINE = {"optimizer": "sgd", "learning_rate": 0.0001, "layers": "embedding"}

RNN = DeepPreset(
    name="rnn",
    description=(
        "bidirectional GRU over 128-dim word embeddings, its states max- and mean-pooled "
        "over time, dropout, a logistic output; Adam"
    ),
    architecture="rnn",
    hyper_parameters={"embedding_dim": 128, "cell": "gru", "units": 64},
    online=RECURRENT_ONLINE,
)

CNN = DeepPreset(
    name="cnn",
    description=(
        "Kim (2014): 200 convolutions of each width 3, 4 and 5 over 128-dim word "
        "embeddings of every word (the first 600), ReLU, max-over-time pooling, dropout "
        "0.5, a logistic output; Adam"
    ),
    architecture="cnn",
    hyper_parameters={"embedding_dim": 128, "widths": [3, 4, 5], "filters": 200},
    stopwords="none",
    seq_len=600,
)

RCNN = DeepPreset(
    name="rcnn",
    description=(
        "Lai et al. (2015): each word's embedding between its left and right recurrent "
        "contexts (bidirectional GRU), a tanh projection, max-pooling over time, dropout, "
        "a logistic output, over every word (the first 600); Adam"
    ),
    architecture="rcnn",
    hyper_parameters={"embedding_dim": 128, "cell": "gru", "units": 64, "hidden": 100},
    online=RECURRENT_ONLINE,
    stopwords="none",  # the cnn's words: the cnn+rcnn ensemble needs one vocabulary
    seq_len=600,
)

DEEP_PRESETS = {p.name: p for p in (RNN, CNN, RCNN)}
