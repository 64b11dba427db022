"""What every served model offers: the learner, the web app and the CLI use nothing else.

The learner does not care which model it serves. A model turns reviews into
features (stored with each prediction, so that a verdict is learned from them
in any process without reading the text again), predicts and explains from
them, learns labelled features in one deterministic update, and hands out its
learnable state, which versions store and compare bit for bit. So exactly-once
replay, checkpoints, the guard, rollback and ``model rebuild`` are written once,
for the linear model (:mod:`.linear`) and the Keras models (:mod:`.deep`) alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Self

import numpy as np

from sentiment.models.state import Prediction

# A batch of reviews as a model reads them: a sparse matrix for the linear
# model, a padded array of word indices for the deep ones. Opaque to callers.
Features = Any


class State(Protocol):
    """A model's learnable state: all that feedback ever changes."""

    def to_bytes(self) -> bytes: ...

    def digest(self) -> str:
        """sha256 of the whole state: equal digests mean bit-identical models."""
        ...

    def equals(self, other: Any) -> bool:
        """Bit-for-bit equality (what exactly-once promises)."""
        ...


class ServedModel(Protocol):
    manifest: dict[str, Any]

    @property
    def base_id(self) -> str:
        """Identifies the base model, so that state saved on another base is never loaded."""
        ...

    @property
    def learns_in_batches_exactly(self) -> bool:
        """Whether one update on k rows is bit for bit the k single-row updates."""
        ...

    @property
    def replays(self) -> tuple[int, ...]:
        """After each accepted verdict, the learner teaches again the accepted verdicts
        this many places before it (see :mod:`sentiment.learning.learner`). Part of
        what the live model is a function of, so fixed by the model's kind."""
        ...

    # -- features
    def tokenize(self, text: str) -> list[str]: ...

    def transform(self, texts: Sequence[str], chunk: int = ...,
                  pause: float = 0.0) -> Features:
        """Features of ``texts``, ``chunk`` reviews per call: each model chooses its
        default (the linear model's compiled pipeline takes more than a Keras one)."""
        ...

    def transform_tokens(self, token_lists: Sequence[list[str]]) -> Features: ...

    def feature_counts(self, X: Features) -> list[int]:
        """How many features each row has: a review with none is unreadable."""
        ...

    def encode_rows(self, X: Features) -> list[bytes | None]:
        """Each row in a compact form, stored with its prediction (None: not storable)."""
        ...

    def stored_features(self, texts: Sequence[str],
                        stored: Sequence[bytes | None]) -> Features:
        """The features of ``texts`` from their stored rows, or from the texts; the same
        either way."""
        ...

    def features_to_bytes(self, X: Features, y: np.ndarray) -> bytes: ...

    def features_from_bytes(self, data: bytes) -> tuple[Features, np.ndarray]:
        """What :meth:`features_to_bytes` wrote; ValueError if damaged."""
        ...

    # -- predicting and learning
    def predict_features(self, X: Features) -> list[Prediction]: ...

    def explain(self, text: str, k: int = 6, X: Features | None = None,
                tokens: list[str] | None = None) -> list[tuple[str, float]]:
        """The words or phrases that pushed the score most, with their push (positive
        numbers push towards "positive")."""
        ...

    def accuracy(self, X: Features, y: np.ndarray) -> float: ...

    def learn_features(self, X: Features, y: np.ndarray) -> None:
        """One deterministic update; predictions never see half of it."""
        ...

    # -- state
    def state(self, snapshot: bool = True) -> State: ...

    def set_state(self, state: Any) -> None: ...

    def state_from_bytes(self, data: bytes) -> State:
        """A state saved by :meth:`State.to_bytes`; ValueError if it does not fit this model."""
        ...

    def clone(self, state: Any = None) -> Self: ...

    def close(self) -> None:
        """Release what the model holds outside Python objects (nothing, for most)."""
        ...
