"""Accuracy and related figures of a model on a labelled stream of features."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier


def evaluate_stream(
    clf: SGDClassifier, batches: Iterable[tuple[sp.csr_matrix, np.ndarray]]
) -> dict[str, Any]:
    """Accuracy, confusion counts and log loss, accumulated minibatch by minibatch."""
    n = correct = tp = tn = fp = fn = 0
    log_loss = 0.0
    for X, y in batches:
        proba = clf.predict_proba(X)[:, 1]
        pred = (proba >= 0.5).astype(y.dtype)
        n += len(y)
        correct += int(np.sum(pred == y))
        tp += int(np.sum((pred == 1) & (y == 1)))
        tn += int(np.sum((pred == 0) & (y == 0)))
        fp += int(np.sum((pred == 1) & (y == 0)))
        fn += int(np.sum((pred == 0) & (y == 1)))
        p_true = np.clip(np.where(y == 1, proba, 1 - proba), 1e-15, 1.0)
        log_loss -= float(np.sum(np.log(p_true)))
    if n == 0:
        raise ValueError("no reviews to evaluate on")
    return {
        "accuracy": round(correct / n, 5),
        "n": n,
        "confusion": {"tp": tp, "tn": tn, "fp": fp, "fn": fn},
        "log_loss": round(log_loss / n, 5),
    }
