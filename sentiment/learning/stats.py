"""How the model is doing, from the log and the versions: what operators and /api/stats see.

Every figure is read from what is stored (the feedback log, the versions'
manifests), so every process and every restart reports the same. The share of
"Incorrect" presses is what users said of the predictions they judged: users who
press only when the model is wrong make it higher than the model's error rate.
Its complement, the live accuracy, is progressive validation: each verdict
judges a prediction the model made before it learned that verdict.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sentiment.learning.learner import Learner
from sentiment.learning.trust import TRUST_REASONS

# Stats are read from the log at most this often (seconds): /api/stats and the
# dashboard cost next to nothing under load.
CACHE_SECONDS = 5.0


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _complement(share: float | None) -> float | None:
    return None if share is None else round(1.0 - share, 4)


def model_stats(learner: Learner) -> dict[str, Any]:
    """The figures, computed now."""
    days = learner.feedback.daily()
    counts = learner.feedback.counts()
    verdicts = sum(d.verdicts for d in days)
    incorrect = sum(d.incorrect for d in days)
    current = learner.store.current_name()
    quarantines = learner.feedback.quarantine_reasons()
    return {
        "model_version": learner.model_version,
        "predictions": counts.get("predictions", 0),
        "verdicts": verdicts,
        "incorrect_share": _share(incorrect, verdicts),
        "live_accuracy": _complement(_share(incorrect, verdicts)),
        "repeats": sum(d.repeats for d in days),
        "accepted": counts.get("accepted", 0),
        "quarantined": counts.get("quarantined", 0),
        "released": counts.get("released", 0),
        "held_by_trust": sum(n for reason, n in quarantines if reason in TRUST_REASONS),
        "days": [{"day": d.day, "predictions": d.predictions, "verdicts": d.verdicts,
                  "incorrect_share": _share(d.incorrect, d.verdicts),
                  "live_accuracy": _complement(_share(d.incorrect, d.verdicts))}
                 for d in days],
        "versions": [{"name": v.name, "parent": v.parent, "created": v.created or None,
                      "holdout_accuracy": v.holdout_accuracy,
                      "last_feedback_id": v.last_feedback_id,
                      "current": v.name == current}
                     for v in learner.store.list()],
        "quarantines": [{"reason": reason, "verdicts": n} for reason, n in quarantines],
    }


class CachedStats:
    """:func:`model_stats`, recomputed at most every :data:`CACHE_SECONDS`."""

    def __init__(self, learner: Learner) -> None:
        self._learner = learner
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= CACHE_SECONDS:
                self._value = model_stats(self._learner)
                self._at = time.monotonic()
            return self._value
