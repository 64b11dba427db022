"""The served model: the vectorizer plus the classifier, and how its state is kept.

Training writes a base model with :func:`save_base`; the app loads it with
:meth:`SentimentModel.load` and then only ever changes the classifier's
learnable state (coefficients, intercept, step count). That state is small
and deterministic, so it is what model versions store: a version is the base
model plus a :class:`ModelState`, written atomically with its checksum.

"""

from __future__ import annotations

import copy
import io
import json
import multiprocessing
import pickle
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
import sklearn
from scipy.special import expit
from sklearn.linear_model import SGDClassifier

from sentiment.files import sha256_bytes
from sentiment.models.state import CLASSES, LABELS, ModelState, Prediction
from sentiment.text.feature_files import read_features, write_features
from sentiment.text.vectorizer import PKL_DIR, ReviewVectorizer, load_vectorizer

# One thread of a process at a time vectorises, scores, explains or learns
# reviews. numpy lets go of the GIL around each operation on more than 500
# elements, and a review has some 600 features: with several request threads,
# each numpy call handed the GIL to another thread and waited to get it back,
# which cost several times the CPU of one thread (docs/measurements.md,
# "The numeric lock"). Threads that queue on this lock wait asleep instead. It
# is held for one call at a time. The guard's scoring of the holdout does not
# take it: a few large operations, in the background. Never taken while
# holding a model's ``_weights`` lock.
NUMERIC = threading.Lock()


# Reviews whose features predict() holds at once (about 10 MB for average reviews).
PREDICT_CHUNK = 1_000
# Reviews vectorised per call, by requests and by predict(): about 1 ms for
# reviews of average length; at 8 the fixed cost per call showed
# (bench.pipeline prints both).
BATCH_CHUNK = 32
# predict(workers=N) shares a batch among processes from this many reviews on.
POOL_MIN = 2 * PREDICT_CHUNK

# What a forked worker of predict(workers=N) reads: inherited from its parent
# at the fork, so that neither the model nor the texts are pickled.
_FORKED: tuple[SentimentModel, Sequence[str]] | None = None

# Each accepted verdict is learned again after this many more accepted ones, so
# that it counts three times, like three passes over the verdicts but in one, as
# they come, spaced so that the model has moved in between (python -m bench.loop:
# docs/learning-loop.md). Changing it changes every replay of the log.
REPLAYS = (20, 60)


class SentimentModel:
    """Vectorizer + classifier, safe to share between threads.

    No prediction ever sees half an update. With the served settings an
    update touches only the weights of the review's own n-grams, so
    :meth:`learn_features` computes them aside and writes them in place under
    ``_weights``, the lock predictions hold for their few-microsecond dot
    product; any other update runs on a copy that is swapped in. Callers
    serialise :meth:`learn` themselves (the learner holds a lock) because the
    order of updates matters.
    """

    def __init__(
        self, vectorizer: ReviewVectorizer, classifier: SGDClassifier, manifest: dict[str, Any]
    ) -> None:
        self.vectorizer = vectorizer
        self._clf = classifier
        self.manifest = manifest
        self._weights = threading.Lock()
        self._rng = np.random.RandomState(0)

    @classmethod
    def load(cls, pkl_dir: Path = PKL_DIR) -> SentimentModel:
        pkl_dir = Path(pkl_dir)
        manifest = json.loads((pkl_dir / "manifest.json").read_text())
        for name, digest in manifest.get("files", {}).items():
            if sha256_bytes((pkl_dir / name).read_bytes()) != digest:
                raise ValueError(f"{pkl_dir / name} does not match its sha256 in manifest.json")
        with open(pkl_dir / "classifier.pkl", "rb") as fh:
            classifier = pickle.load(fh)
        return cls(load_vectorizer(pkl_dir), classifier, manifest)

    @property
    def classifier(self) -> SGDClassifier:
        return self._clf

    @property
    def base_id(self) -> str:
        """Identifies the base model, so state saved on another base is never loaded."""
        return cast(str, self.manifest["files"]["classifier.pkl"][:16])

    # -- features ---------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The review's tokens: what :meth:`transform_tokens` takes (the results page
        tokenizes once, for the prediction and its explanation)."""
        return self.vectorizer.tokenize(text)

    def feature_counts(self, X: sp.csr_matrix) -> list[int]:
        return [int(n) for n in np.diff(X.indptr)]

    def features_to_bytes(self, X: sp.csr_matrix, y: np.ndarray) -> bytes:
        buf = io.BytesIO()
        write_features(buf, X, y)
        return buf.getvalue()

    def features_from_bytes(self, data: bytes) -> tuple[sp.csr_matrix, np.ndarray]:
        try:
            X, y, _ = read_features(io.BytesIO(data))
            X.check_format(full_check=True)
        except (EOFError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        if X.shape[0] != len(y):
            raise ValueError(f"{X.shape[0]} rows but {len(y)} labels")
        return X, y

    def transform(self, texts: Sequence[str], chunk: int = BATCH_CHUNK,
                  pause: float = 0.0) -> sp.csr_matrix:
        """Features of ``texts``, vectorised ``chunk`` reviews at a time.

        Each chunk holds :data:`NUMERIC` for about 1 ms with reviews of
        average length (the GIL's own switch interval is 5 ms), so that other
        requests get their turn during a batch request. Chunks also bound
        the memory a thousand reviews at once (a batch request, the holdout)
        would take for a moment, which the allocator then keeps. ``pause``:
        sleep this long between chunks, so that work in a background thread
        leaves request threads more room.
        """
        if len(texts) <= chunk:
            with NUMERIC:
                return self.vectorizer.transform(texts)
        parts = []
        for start in range(0, len(texts), chunk):
            with NUMERIC:
                parts.append(self.vectorizer.transform(texts[start:start + chunk]))
            if pause:
                time.sleep(pause)
        return sp.vstack(parts, format="csr")

    def transform_tokens(self, token_lists: Sequence[list[str]]) -> sp.csr_matrix:
        """:meth:`transform` of reviews already split by ``vectorizer.tokenize``."""
        with NUMERIC:
            return self.vectorizer.transform_tokens(token_lists)

    def encode_rows(self, X: sp.csr_matrix) -> list[bytes | None]:
        """``vectorizer.encode_rows``: each row's columns, to store with its prediction."""
        with NUMERIC:
            return self.vectorizer.encode_rows(X)

    def stored_features(self, texts: Sequence[str],
                        stored: Sequence[bytes | None]) -> sp.csr_matrix:
        """Features of ``texts`` from their stored columns (``vectorizer.encode_rows``).

        Vectorises the texts instead when any row has none usable (stored by
        an earlier release or another base, or damaged). Either way the
        result is bit for bit the same.
        """
        with NUMERIC:
            X = self.vectorizer.decode_rows(stored)
        return X if X is not None else self.transform(texts)

    def predict(self, texts: Sequence[str], workers: int = 1) -> list[Prediction]:
        """Predictions for ``texts``, :data:`PREDICT_CHUNK` reviews' features at a time,
        so that memory stays flat however many are asked for.

        ``workers``: processes sharing a batch of :data:`POOL_MIN` reviews or more
        (forked, so they share the model's memory). For scoring a data set from a
        script, not inside a server: a fork copies the locks other threads hold,
        and a server already runs a process per core. The predictions are the
        same bits either way (each row's score is its own dot product).
        """
        if workers > 1 and len(texts) >= POOL_MIN:
            return _predictions(self._positive_in_processes(texts, workers))
        return _predictions(self._positive(texts))

    def _positive(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) of each review, :data:`PREDICT_CHUNK` reviews' features at a time."""
        parts = [self._positive_of(self.transform(texts[start:start + PREDICT_CHUNK]))
                 for start in range(0, len(texts), PREDICT_CHUNK)]
        # In the scores' own dtype: predictions are made of these very bits.
        return np.concatenate(parts) if parts else np.empty(0)

    def _positive_in_processes(self, texts: Sequence[str], workers: int) -> np.ndarray:
        global _FORKED
        spans = [(start, min(start + PREDICT_CHUNK, len(texts)))
                 for start in range(0, len(texts), PREDICT_CHUNK)]
        # This process takes its share (the last spans) while workers - 1 forked
        # children score the others: one fork fewer, and a share scored warm.
        mine = len(spans) // workers
        _FORKED = (self, texts)
        try:
            with multiprocessing.get_context("fork").Pool(workers - 1) as pool:
                theirs = pool.map_async(_positive_in_child, spans[:len(spans) - mine],
                                        chunksize=1)
                here = [self._positive(texts[start:stop]) for start, stop in
                        spans[len(spans) - mine:]]
                return np.concatenate([*theirs.get(), *here])
        finally:
            _FORKED = None

    def _positive_of(self, X: sp.csr_matrix) -> np.ndarray:
        # Logistic regression's probability is the sigmoid of the linear score.
        # Computed here rather than by predict_proba, whose input validation
        # costs ten times the arithmetic for one review.
        clf = self._clf
        with NUMERIC, self._weights:
            return cast(np.ndarray, expit(X @ clf.coef_[0] + clf.intercept_[0]))

    def predict_features(self, X: sp.csr_matrix) -> list[Prediction]:
        return _predictions(self._positive_of(X))

    def accuracy(self, X: sp.csr_matrix, y: np.ndarray) -> float:
        """Accuracy on labelled features; not to be called while this model learns.

        (The learner scores the live model under the lock it learns under.)
        """
        return float(np.mean(self._clf.predict(X) == y))

    def explain(self, text: str, k: int = 6, X: sp.csr_matrix | None = None,
                tokens: list[str] | None = None) -> list[tuple[str, float]]:
        """The n-grams that pushed this review's score most, with their push.

        Positive numbers push towards "positive". N-grams that share a hash
        bucket share its weight; each bucket is reported once. ``X`` and
        ``tokens``: the review's features and ``vectorizer.tokenize(text)``,
        if the caller already has them (the results page).
        """
        if tokens is None:
            tokens = self.vectorizer.tokenize(text)
        if X is None:
            X = self.transform_tokens([tokens])
        with NUMERIC:
            with self._weights:
                weights = self._clf.coef_[0, X.indices]
            contribution = X.data * weights  # per column of X (sorted)
            # Each column is told by the first n-gram hashed into it.
            columns, first = np.unique(self.vectorizer.gram_columns(tokens), return_index=True)
            at = np.searchsorted(X.indices, columns).clip(max=len(X.indices) - 1)
            shown = X.indices[at] == columns if len(X.indices) else np.zeros(len(columns), bool)
            first, pushes = first[shown], contribution[at[shown]]
            # Strongest first; equal pushes in the order their n-grams appear.
            ranked = np.lexsort((first, -np.abs(pushes)))
            first, pushes = first[ranked].tolist(), pushes[ranked].tolist()
        # "waste", "waste of" and "waste of time" tell the same story: keep the
        # strongest of n-grams that contain one another. Punctuation is dropped
        # from what people read ("brilliant ." and ". brilliant" are "brilliant";
        # "!" alone is left out: its push is real, but it is no word to point at).
        chosen: list[tuple[str, float]] = []
        spaced: list[str] = []  # each chosen phrase between spaces: " waste of "
        for position, push in zip(first, pushes, strict=True):
            if push == 0.0:
                continue
            gram = _readable(self.vectorizer.gram(tokens, position))  # as in gram_columns
            if not gram or _overlaps_any(f" {gram} ", spaced):
                continue
            chosen.append((gram, push))
            spaced.append(f" {gram} ")
            if len(chosen) == k:
                break
        return chosen

    # -- learning ---------------------------------------------------------
    def learn(self, text: str, label: int) -> None:
        self.learn_features(self.transform([text]), np.array([label]))

    @property
    def learns_in_batches_exactly(self) -> bool:
        """Whether one ``partial_fit`` on k rows gives bit for bit the k single-row updates.

        SGD updates row by row either way; what differs is bookkeeping. With
        an L2 penalty the decay is folded into a scale factor that is rounded
        back into the weights at the end of each call, and ``shuffle``
        reorders rows. Without both, the arithmetic is the same, and applying
        pending verdicts together is ~7x cheaper than one call each.
        """
        clf = self._clf
        return clf.penalty is None and not clf.shuffle and not clf.average

    @property
    def replays(self) -> tuple[int, ...]:
        """:data:`REPLAYS`: three steps per verdict (docs/learning-loop.md)."""
        return REPLAYS

    def learn_features(self, X: sp.csr_matrix, y: np.ndarray) -> None:
        """``partial_fit(X, y)``, applied so that readers never see half an update."""
        with NUMERIC:
            if self._learns_touched_weights_only:
                self._partial_fit_touched(X, y)
                return
            clf = copy.copy(self._clf)
            clf.coef_ = self._clf.coef_.copy()
            clf.intercept_ = self._clf.intercept_.copy()
            # ``classes`` only on a first fit: on later calls sklearn re-derives
            # and compares them every time.
            clf.partial_fit(X, y, classes=None if hasattr(clf, "classes_") else CLASSES)
            self._clf = clf

    @property
    def _learns_touched_weights_only(self) -> bool:
        """Whether an update changes only the weights of the reviews' own features.

        True for the served settings once fitted: without a penalty there is no
        decay of every weight, and without averaging no running mean over all.
        """
        clf = self._clf
        return clf.penalty is None and not clf.average and hasattr(clf, "classes_")

    def _partial_fit_touched(self, X: sp.csr_matrix, y: np.ndarray) -> None:
        """``partial_fit(X, y)`` run on the columns ``X`` uses, written back in place.

        A one-review ``partial_fit`` on 2**20 features spends its time on
        passes over all the weights (sklearn's finiteness check and weight-vector
        set-up) and on input validation, not on the SGD step over the review's
        few hundred features. The same call on a classifier holding only those
        columns does the same arithmetic in the same order (each row keeps its
        entries in order, so every dot product sums alike): the result is bit
        for bit what the full call gives (tested). Writing those columns back
        in place, rather than into a fresh copy of all 2**20 weights, saves a
        4 MB copy per update (``python -m bench.learning``).
        """
        clf = self._clf
        X = sp.csr_matrix(X)
        columns, position = np.unique(X.indices, return_inverse=True)
        if not len(columns):
            # Only reviews with no features ("!!!"): sklearn needs a column to
            # exist. Any one will do, since a column no row has is never changed.
            columns = np.zeros(1, dtype=X.indices.dtype)
        narrow = copy.copy(clf)
        narrow.coef_ = clf.coef_[:, columns]
        narrow.intercept_ = clf.intercept_.copy()
        narrow.n_features_in_ = len(columns)
        if not clf.shuffle:
            # An int seed makes sklearn build a fresh RandomState twice per call;
            # a generator is used as is. Without shuffling, the seed it draws
            # changes nothing (bit-for-bit tests).
            narrow.random_state = self._rng
        X_narrow = sp.csr_matrix((X.data, position.reshape(-1), X.indptr),
                                 shape=(X.shape[0], len(columns)))
        # The inputs are our own finite features and fitted parameters.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            narrow.partial_fit(X_narrow, y)
        with self._weights:
            clf.coef_[:, columns] = narrow.coef_
            clf.intercept_ = narrow.intercept_
            clf.t_ = narrow.t_

    def state(self, snapshot: bool = True) -> ModelState:
        """The learnable state: a copy, since learning changes the weights in place.

        ``snapshot=False``: the arrays themselves, for a model that never
        learns (a base model), so that holding its state costs no memory.
        """
        clf = self._clf
        if not snapshot:
            return ModelState(clf.coef_, clf.intercept_, float(clf.t_))
        with self._weights:
            return ModelState(clf.coef_.copy(), clf.intercept_.copy(), float(clf.t_))

    def state_from_bytes(self, data: bytes) -> ModelState:
        try:
            state = ModelState.from_bytes(data)
        except (OSError, KeyError) as exc:
            raise ValueError(str(exc)) from exc
        if state.coef.shape != self._clf.coef_.shape:
            raise ValueError("the state does not fit the base model")
        return state

    def close(self) -> None:
        """Nothing to release: the model is numpy arrays."""

    def set_state(self, state: ModelState) -> None:
        if state.coef.shape != self._clf.coef_.shape or state.coef.dtype != self._clf.coef_.dtype:
            raise ValueError("model state does not fit this model")
        clf = copy.copy(self._clf)
        clf.coef_ = state.coef.copy()
        clf.intercept_ = state.intercept.copy()
        clf.t_ = state.t
        self._clf = clf

    def clone(self, state: ModelState | None = None) -> SentimentModel:
        """A model of the same base with its own copy of ``state`` (default: this one's)."""
        twin = SentimentModel(self.vectorizer, self._clf, self.manifest)
        if state is not None:
            twin.set_state(state)
            return twin
        with self._weights:  # set_state copies: one copy, of one consistent state
            twin.set_state(self.state(snapshot=False))
        return twin


# A letter or a digit (what str.isalnum accepts): what makes a token a word.
_ALNUM = re.compile(r"[^\W_]")


def _predictions(positive: np.ndarray) -> list[Prediction]:
    return [Prediction(LABELS[int(p >= 0.5)], float(max(p, 1.0 - p)), float(p))
            for p in positive]


def _positive_in_child(span: tuple[int, int]) -> np.ndarray:
    """In a forked worker of :meth:`SentimentModel.predict`: one span of the batch."""
    assert _FORKED is not None, "only in a process forked by predict(workers=N)"
    model, texts = _FORKED
    return model._positive(texts[span[0]:span[1]])


def _readable(gram: str) -> str:
    """The n-gram's words without its punctuation tokens ("" if it is only those)."""
    return " ".join(t for t in gram.split(" ") if _ALNUM.search(t))


def _overlaps_any(spaced: str, others: list[str]) -> bool:
    """True if the word sequence of ``spaced`` (" waste of ") occurs inside one of
    ``others`` (spaced alike) or one of them inside it."""
    return any(spaced in other if len(spaced) <= len(other) else other in spaced
               for other in others)
