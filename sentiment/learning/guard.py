"""The guard's yardstick: held-out reviews shipped with the base model, vectorised once.

Before a version becomes current the learner scores it on these reviews; a
batch of verdicts that costs more than the margin is quarantined (see
:meth:`sentiment.learning.learner.Learner.checkpoint`).
"""

from __future__ import annotations

import gzip
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from sentiment import memory
from sentiment.files import atomic_write
from sentiment.models.protocol import Features, ServedModel

log = logging.getLogger(__name__)

Labelled = tuple[Features, np.ndarray]


def load_holdout(path: Path) -> tuple[list[str], np.ndarray]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        frame = pd.read_csv(fh, dtype={"review": str})
    return frame["review"].tolist(), frame["sentiment"].to_numpy()


class Holdout:
    """The shipped holdout (``holdout.csv.gz``) as features, cached beside the versions.

    Vectorising takes about a second, so it is done once per instance folder
    and saved (prepared in the background after the first verdict, see
    :meth:`prepare_in_background`). Each checkpoint then reads it back, a few
    milliseconds, rather than every serving process holding its ~10 MB between
    checkpoints.
    """

    def __init__(self, path: Path | None, cache: Path) -> None:
        self.path = path if path and path.is_file() else None
        self.cache = cache
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def cached(self) -> bool:
        return self.cache.is_file()

    def features(self, model: ServedModel, pause: float = 0.0) -> Labelled | None:
        """The holdout as ``model`` vectorises it (None: no holdout shipped).

        ``pause``: seconds between chunks when vectorising (see
        :meth:`ServedModel.transform`), so that a background preparation
        leaves the request threads the GIL.
        """
        if self.path is None:
            return None
        with self._lock:
            try:
                return model.features_from_bytes(self.cache.read_bytes())
            except FileNotFoundError:
                pass
            except ValueError:
                log.warning("rebuilding the unreadable holdout cache %s", self.cache)
            texts, y = load_holdout(self.path)
            X = model.transform(texts, pause=pause)
            del texts
            atomic_write(self.cache, model.features_to_bytes(X, y))
            return X, y

    def prepare_in_background(self, model: ServedModel) -> None:
        """Vectorise the holdout in a thread, unless done or under way.

        The first checkpoint needs it (~1 s of CPU); doing it at start would
        slow the start-up and the first requests of an app that may only ever
        predict.
        """
        if self.path is None or self.cached or self._lock.locked() \
                or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._prepare, args=(model,), name="holdout",
                                        daemon=True)
        self._thread.start()

    def _prepare(self, model: ServedModel) -> None:
        try:
            self.features(model, pause=0.002)
        except Exception:  # the checkpoint will try again and report it
            log.exception("could not prepare the guard's holdout")
        memory.release_free_memory()  # the texts and features, saved and dropped

    def close(self) -> None:
        """Wait for a background preparation to finish (it writes the cache atomically)."""
        if self._thread is not None:
            self._thread.join()
