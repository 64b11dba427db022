"""Accuracy and related figures of a model, accumulated over a labelled stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Metrics:
    """Accuracy, confusion counts and log loss, accumulated minibatch by minibatch.

    Accumulating counts (not predictions) keeps memory flat, and lets one
    batch of predictions feed several evaluation sets that share reviews.
    """

    n: int = 0
    correct: int = 0
    tp: int = 0
    tn: int = 0
    fp: int = 0
    fn: int = 0
    log_loss: float = 0.0

    def update(self, proba: np.ndarray, y: np.ndarray) -> None:
        """Add a batch: ``proba`` is P(positive) for each review, ``y`` its 0/1 label."""
        pred = (proba >= 0.5).astype(y.dtype)
        self.n += len(y)
        self.correct += int(np.sum(pred == y))
        self.tp += int(np.sum((pred == 1) & (y == 1)))
        self.tn += int(np.sum((pred == 0) & (y == 0)))
        self.fp += int(np.sum((pred == 1) & (y == 0)))
        self.fn += int(np.sum((pred == 0) & (y == 1)))
        p_true = np.clip(np.where(y == 1, proba, 1 - proba), 1e-15, 1.0)
        self.log_loss -= float(np.sum(np.log(p_true)))

    def result(self) -> dict[str, Any]:
        """The figures as the report and manifest store them (rounded to 5 places)."""
        if self.n == 0:
            raise ValueError("no reviews to evaluate on")
        return {
            "accuracy": round(self.correct / self.n, 5),
            "n": self.n,
            "confusion": {"tp": self.tp, "tn": self.tn, "fp": self.fp, "fn": self.fn},
            "log_loss": round(self.log_loss / self.n, 5),
        }

