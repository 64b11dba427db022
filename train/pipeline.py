"""Parallel, memory-bounded feature hashing and an on-disk feature cache.

Hashing trigram features costs far more than the SGD updates, so minibatches
are hashed in worker processes while the main process learns. At most
``window`` batches are in flight, so memory stays flat however long the
stream is. Hashed batches are spilled to disk once, so later passes over the
stream cost a file read instead of re-tokenizing.

Workers only ever compute *raw* hashed counts (the vectorizer they were
started with needs no feature weights), which is why they can start on the
evaluation sets while the weights-dependent work happens in the main
process: :class:`BackgroundSpill` feeds them from a thread and has them write
the batches straight to a :class:`FeatureCache`, so the main process never
holds more than a window of texts and never unpickles those matrices.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sentiment.text.feature_files import read_features, write_features
from sentiment.text.vectorizer import ReviewVectorizer

_worker_vectorizer: ReviewVectorizer | None = None

# One batch as it travels: texts, labels and an optional per-row payload that
# is stored beside the features (the evaluation sets a row belongs to).
Job = tuple[list[str], np.ndarray, np.ndarray | None]


def _init_worker(vectorizer: ReviewVectorizer) -> None:
    global _worker_vectorizer
    _worker_vectorizer = vectorizer


def _raw_counts(texts: list[str]) -> sp.csr_matrix:
    assert _worker_vectorizer is not None
    return _worker_vectorizer.raw_counts(texts)


def _spill_raw(task: tuple[list[str], np.ndarray, np.ndarray | None, str]) -> tuple[int, int]:
    """Hash one batch and write it to ``path`` in the worker: only two ints travel back."""
    texts, labels, member, path = task
    return len(texts), save_batch(Path(path), _raw_counts(texts), labels, member)


def bounded_map(
    executor: Executor, fn: Callable[[Any], Any], items: Iterable[Any], window: int
) -> Iterator[Any]:
    """``executor.map`` that reads ``items`` lazily: at most ``window`` pending."""
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # abandoned early (error, close): drop queued work
            future.cancel()


# -- the on-disk cache --------------------------------------------------------

def save_batch(
    path: Path, X: sp.csr_matrix, y: np.ndarray, member: np.ndarray | None = None
) -> int:
    """Write one batch (see :func:`vectorizer.write_features`); returns the bytes written."""
    with open(path, "wb") as fh:
        write_features(fh, X, y, member)
        return fh.tell()


def load_batch(path: Path) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
    """Read back what :func:`save_batch` wrote: (features, labels, member or None)."""
    with open(path, "rb") as fh:
        return read_features(fh)


class FeatureCache:
    """Minibatches of features kept on disk, numbered in the order they were written.

    Only counters live in memory, whatever the number of batches.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.docs = 0
        self.bytes = 0

    def path(self, index: int) -> Path:
        """Where batch ``index`` lives (workers write there directly)."""
        return self.folder / f"batch{index:06d}.npy"

    def reserve(self) -> int:
        """Number the next batch before it is written (a worker may write it)."""
        self.count += 1
        return self.count - 1

    def written(self, docs: int, nbytes: int) -> None:
        """Account for a batch written elsewhere (by a worker)."""
        self.docs += docs
        self.bytes += nbytes

    def append(self, X: sp.csr_matrix, y: np.ndarray, member: np.ndarray | None = None) -> int:
        index = self.reserve()
        self.written(X.shape[0], save_batch(self.path(index), X, y, member))
        return index

    def replace(self, index: int, X: sp.csr_matrix, y: np.ndarray) -> None:
        """Overwrite a batch (with its finished features, so later passes skip that work)."""
        old = self.path(index).stat().st_size
        self.bytes += save_batch(self.path(index), X, y) - old

    def load(self, index: int) -> tuple[sp.csr_matrix, np.ndarray]:
        """(features, labels) of batch ``index``."""
        X, y, _ = load_batch(self.path(index))
        return X, y

    def load_with_member(self, index: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
        """(features, labels, member table or None) of batch ``index``."""
        return load_batch(self.path(index))


# -- workers ------------------------------------------------------------------

class FeaturePool:
    """Hashes minibatches of (texts, labels) into raw counts in ``workers`` processes."""

    def __init__(self, vectorizer: ReviewVectorizer, workers: int | None = None) -> None:
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.window = 2 * self.workers
        self._executor = ProcessPoolExecutor(
            self.workers, initializer=_init_worker, initargs=(vectorizer,)
        )

    def __enter__(self) -> FeaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(cancel_futures=True)

    def raw_counts(
        self, batches: Iterable[tuple[list[str], np.ndarray]]
    ) -> Iterator[tuple[sp.csr_matrix, np.ndarray]]:
        """Hashed n-gram features before the per-feature weights, in stream order."""
        labels: deque[np.ndarray] = deque()

        def texts() -> Iterator[list[str]]:
            for batch_texts, batch_labels in batches:
                labels.append(batch_labels)
                yield batch_texts

        for X in bounded_map(self._executor, _raw_counts, texts(), self.window):
            yield X, labels.popleft()

    def spill(self, jobs: Iterable[Job], cache: FeatureCache) -> BackgroundSpill:
        """Start hashing ``jobs`` into ``cache`` in the background (see BackgroundSpill)."""
        return BackgroundSpill(self._executor, self.window, jobs, cache)


_DONE = object()


class BackgroundSpill:
    """Hash a stream of batches into an on-disk cache while the caller does other work.

    A feeder thread pulls batches lazily from ``jobs`` (e.g. straight from the
    CSV), keeps at most ``window`` of them in the workers, and the workers
    write each result to ``cache`` themselves. The caller picks up finished
    batch numbers with :meth:`finished`, in order, as soon as they exist. The
    thread mostly waits on the workers, so it barely competes with the main
    thread's SGD (whose inner loop runs without the GIL).
    """

    def __init__(
        self, executor: Executor, window: int, jobs: Iterable[Job], cache: FeatureCache
    ) -> None:
        self.cache = cache
        self._executor = executor
        self._window = window
        self._jobs = jobs
        self._stop = threading.Event()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()  # batch numbers, then _DONE
        self._thread = threading.Thread(target=self._feed, name="spill", daemon=True)
        self._thread.start()

    def _tasks(self, numbers: deque[int]) -> Iterator[tuple]:
        for texts, labels, member in self._jobs:
            if self._stop.is_set():
                return
            index = self.cache.reserve()
            numbers.append(index)
            yield texts, labels, member, str(self.cache.path(index))

    def _feed(self) -> None:
        numbers: deque[int] = deque()
        results = bounded_map(self._executor, _spill_raw, self._tasks(numbers), self._window)
        try:
            with closing(results):  # on close(): queued batches are cancelled
                for docs, nbytes in results:
                    self.cache.written(docs, nbytes)
                    self._done.put(numbers.popleft())
                    if self._stop.is_set():
                        break
            self._done.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._done.put(exc)

    def finished(self) -> Iterator[int]:
        """Numbers of the spilled batches, in order, waiting for each; raises feeder errors.

        Read it once. Batches finished before anyone reads wait as numbers
        only (the features are on disk), so a long SGD costs no memory here.
        """
        while True:
            item = self._done.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop feeding and wait for the thread (batches already being hashed finish first)."""
        self._stop.set()
        self._thread.join()
