"""Parallel, memory-bounded feature extraction and an on-disk feature cache.

Hashing trigram features costs far more than the SGD updates, so the
minibatches are vectorized in worker processes while the main process
learns. At most ``window`` batches are in flight, so memory stays flat
however long the stream is. Vectorized batches are spilled to disk once, so
later passes over the stream cost a file read instead of re-tokenizing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from vectorizer import ReviewVectorizer

_worker_vectorizer: ReviewVectorizer | None = None


def _init_worker(vectorizer: ReviewVectorizer) -> None:
    global _worker_vectorizer
    _worker_vectorizer = vectorizer


def _raw_counts(texts: list[str]) -> sp.csr_matrix:
    assert _worker_vectorizer is not None
    return _worker_vectorizer.raw_counts(texts)


def _features(texts: list[str]) -> sp.csr_matrix:
    assert _worker_vectorizer is not None
    return _worker_vectorizer.transform(texts)


def bounded_map(
    executor: Executor, fn: Callable[[Any], Any], items: Iterable[Any], window: int
) -> Iterator[Any]:
    """``executor.map`` that reads ``items`` lazily: at most ``window`` pending."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class FeaturePool:
    """Vectorizes minibatches of (texts, labels) in ``workers`` processes."""

    def __init__(self, vectorizer: ReviewVectorizer, workers: int | None = None) -> None:
        self.workers = workers or min(2, os.cpu_count() or 1)
        self._executor = ProcessPoolExecutor(
            self.workers, initializer=_init_worker, initargs=(vectorizer,)
        )

    def __enter__(self) -> FeaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(cancel_futures=True)

    def _map(
        self, fn: Callable, batches: Iterable[tuple[list[str], np.ndarray]]
    ) -> Iterator[tuple[sp.csr_matrix, np.ndarray]]:
        labels: deque[np.ndarray] = deque()

        def texts() -> Iterator[list[str]]:
            for batch_texts, batch_labels in batches:
                labels.append(batch_labels)
                yield batch_texts

        for X in bounded_map(self._executor, fn, texts(), window=2 * self.workers):
            yield X, labels.popleft()

    def raw_counts(self, batches: Iterable) -> Iterator[tuple[sp.csr_matrix, np.ndarray]]:
        """Hashed n-gram features before the per-feature weights."""
        return self._map(_raw_counts, batches)

    def features(self, batches: Iterable) -> Iterator[tuple[sp.csr_matrix, np.ndarray]]:
        """The classifier's final features."""
        return self._map(_features, batches)


class FeatureCache:
    """Minibatches of features kept on disk between passes over the stream."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.docs = 0
        self.bytes = 0

    def append(self, X: sp.csr_matrix, y: np.ndarray) -> None:
        path = self.folder / f"batch{self.count:06d}.npz"
        np.savez(
            path, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape), y=y
        )
        self.count += 1
        self.docs += X.shape[0]
        self.bytes += path.stat().st_size

    def load(self, index: int) -> tuple[sp.csr_matrix, np.ndarray]:
        with np.load(self.folder / f"batch{index:06d}.npz") as npz:
            X = sp.csr_matrix(
                (npz["data"], npz["indices"], npz["indptr"]), shape=tuple(npz["shape"])
            )
            return X, npz["y"]
