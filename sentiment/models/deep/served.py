"""The Keras models as the app serves them: :class:`DeepModel`, a :class:`ServedModel`.

A model folder (``python -m train --preset rnn|cnn|rcnn``) holds
``weights.npz`` (the trained weights, by variable path), ``vocabulary.json``
(:class:`~sentiment.models.deep.text.Vocabulary`), ``holdout.csv.gz`` and
``manifest.json`` (``"kind": "keras"``, the architecture, its hyper-parameters,
the online learning rate, and the sha256 of every file, checked on load).

Features are padded int32 rows of word indices. The learnable state is the
weights plus the online SGD's variables (:class:`~.state.DeepState`). Feedback
is learned one verdict per SGD step, in order, on the dropout-free model: a
step on k rows would average their gradients, which is not k single steps, so
:attr:`DeepModel.learns_in_batches_exactly` is False and the learner feeds one
verdict at a time.
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from sentiment.files import sha256_bytes
from sentiment.models.deep.engine import Engine, Params, engine_for
from sentiment.models.deep.state import DeepState
from sentiment.models.deep.text import OOV, PAD, Vocabulary
from sentiment.models.state import LABELS, Prediction

WEIGHTS = "weights.npz"
VOCABULARY = "vocabulary.json"


def strongest(pushes: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` words of largest push, ties in order of appearance, zeros left out."""
    ranked = sorted(pushes.items(), key=lambda item: -abs(item[1]))  # stable: first seen
    return [(word, push) for word, push in ranked if push != 0.0][:k]


class AnswersFromProbabilities:
    """Labels and accuracy of a model that gives P(positive) for each row of features."""

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, texts: Sequence[str], chunk: int = 8,
                  pause: float = 0.0) -> np.ndarray:
        raise NotImplementedError

    def predict_features(self, X: np.ndarray) -> list[Prediction]:
        return [Prediction(LABELS[int(p >= 0.5)], float(max(p, 1.0 - p)), float(p))
                for p in self.probabilities(X).tolist()]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self.predict_features(self.transform(texts))

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((self.probabilities(X) >= 0.5).astype(np.int64) == y))


class DeepModel(AnswersFromProbabilities):
    """A vocabulary, a compiled Keras model (shared by clones) and this model's own arrays.

    Thread-safe: an update makes new arrays (JAX arrays never change in place)
    and swaps the whole tuple under ``_lock``; a prediction or an explanation
    takes the tuple once, so none sees half of an update. Updates themselves
    are serialised by ``_learning`` (their order matters; the learner also
    holds a lock of its own). Load with :meth:`load`, after which the process
    is pinned to one CPU (:mod:`.backend`).
    """

    def __init__(self, engine: Engine, vocabulary: Vocabulary, manifest: dict[str, Any],
                 params: Params) -> None:
        self.engine = engine
        self.vocabulary = vocabulary
        self.manifest = manifest
        self._params = params
        self._lock = threading.Lock()
        self._learning = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path) -> DeepModel:
        """The model saved in ``model_dir``; ValueError if a file does not match its sha256."""
        model_dir = Path(model_dir)
        manifest = json.loads((model_dir / "manifest.json").read_text())
        files = manifest.get("files", {})
        for name in (WEIGHTS, VOCABULARY):
            if name not in files:
                raise ValueError(f"{model_dir}: manifest.json lists no {name}")
        data = {}
        for name, digest in files.items():
            data[name] = (model_dir / name).read_bytes()
            if sha256_bytes(data[name]) != digest:
                raise ValueError(f"{model_dir / name} does not match its sha256 in manifest.json")
        vocabulary = Vocabulary.from_bytes(data[VOCABULARY])
        weights = DeepState.from_bytes(data[WEIGHTS])
        engine = engine_for(manifest["architecture"], vocabulary.size, vocabulary.seq_len,
                            manifest["hyper_parameters"], manifest["online"])
        arrays = (*weights.arrays, *engine.initial_optimizer_state())
        if not engine.fits(weights.names + engine.names[len(weights.names):], arrays):
            raise ValueError(f"{model_dir / WEIGHTS} does not hold the weights of this "
                             f"{manifest['architecture']} model")
        return cls(engine, vocabulary, manifest, engine.to_device(arrays))

    @property
    def base_id(self) -> str:
        """The weights, the vocabulary and how the model learns: what a saved state rests on."""
        m = self.manifest
        key = json.dumps([m["files"][WEIGHTS], m["files"][VOCABULARY], m["architecture"],
                          m["hyper_parameters"], m["online"]], sort_keys=True)
        return sha256_bytes(key.encode())[:16]

    @property
    def replays(self) -> tuple[int, ...]:
        """None: the online rates were chosen for one step per verdict (docs/deep-models.md)."""
        return ()

    @property
    def learns_in_batches_exactly(self) -> bool:
        """False: one step on k rows averages their gradients, unlike k steps (see module)."""
        return False

    # -- features ------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The words the model reads (stopwords removed), for :meth:`transform_tokens`."""
        return self.vocabulary.tokenize(text)

    def transform(self, texts: Sequence[str], chunk: int = 8,
                  pause: float = 0.0) -> np.ndarray:
        """Padded index rows of ``texts``; ``pause`` seconds between chunks of ``chunk``
        (a background thread's way of leaving request threads the GIL)."""
        if not pause or len(texts) <= chunk:
            return self.vocabulary.transform(texts)
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self.vocabulary.transform(texts[start:start + chunk]))
            time.sleep(pause)
        return np.concatenate(parts)

    def transform_tokens(self, token_lists: Sequence[list[str]]) -> np.ndarray:
        return self.vocabulary.encode(token_lists)

    def feature_counts(self, X: np.ndarray) -> list[int]:
        """Words per row, unknown ones included (padding is not a word)."""
        return [int(n) for n in np.count_nonzero(X != PAD, axis=1)]

    def encode_rows(self, X: np.ndarray) -> list[bytes | None]:
        return self.vocabulary.encode_rows(X)

    def stored_features(self, texts: Sequence[str],
                        stored: Sequence[bytes | None]) -> np.ndarray:
        """The rows stored with the predictions, or the texts encoded again if any stored
        row is missing, foreign or damaged: the same rows either way."""
        X = self.vocabulary.decode_rows(stored)
        return X if X is not None else self.vocabulary.transform(texts)

    def features_to_bytes(self, X: np.ndarray, y: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, X=X.astype(np.int32), y=np.asarray(y, dtype=np.int64),
                 vocabulary=np.frombuffer(self.vocabulary.fingerprint, dtype=np.uint8))
        return buf.getvalue()

    def features_from_bytes(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                X, y, fingerprint = npz["X"], npz["y"], npz["vocabulary"].tobytes()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"unreadable features: {exc}") from exc
        if fingerprint != self.vocabulary.fingerprint:
            raise ValueError("features encoded with another vocabulary")
        if X.dtype != np.int32 or X.ndim != 2 or X.shape[1] != self.vocabulary.seq_len \
                or y.shape != (len(X),) or (X.size and (X.min() < 0 or
                                                         X.max() >= self.vocabulary.size)):
            raise ValueError("features of the wrong shape or range")
        return X, y

    # -- predicting ------------------------------------------------------------
    def probabilities(self, X: np.ndarray, params: Params | None = None) -> np.ndarray:
        """P(positive) of each row, from the current arrays (or ``params``)."""
        return self.engine.probabilities(self.params() if params is None else params, X)

    def explain(self, text: str, k: int = 6, X: np.ndarray | None = None,
                tokens: list[str] | None = None) -> list[tuple[str, float]]:
        """The words that pushed the logit most, each once, with their total push.

        Gradient x input on the embeddings (about 2 ms for 300 words): each
        position's share of the logit, summed over a word's occurrences.
        Positive pushes go towards "positive". Unknown words are left out:
        their push belongs to the out-of-vocabulary embedding, not to the word.
        """
        if tokens is None:
            tokens = self.tokenize(text)
        if X is None:
            X = self.transform_tokens([tokens])
        return strongest(self.word_pushes(tokens, X), k)

    def word_pushes(self, tokens: list[str], X: np.ndarray,
                    params: Params | None = None) -> dict[str, float]:
        """Each known word of the first row and its total push, in order of appearance."""
        _, pushes = self.engine.explain(self.params() if params is None else params, X[:1])
        start, stop = self.vocabulary.kept(tokens)
        row = X[0]
        total: dict[str, float] = {}
        for position, word in enumerate(tokens[start:stop]):
            if row[position] != OOV:
                total[word] = total.get(word, 0.0) + float(pushes[position])
        return total

    # -- learning --------------------------------------------------------------
    def learn_features(self, X: np.ndarray, y: np.ndarray) -> None:
        """One SGD step per row, in order; predictions see the model before or after all."""
        with self._learning:
            params = self.stepped(X, y)
            with self._lock:
                self._params = params

    def stepped(self, X: np.ndarray, y: np.ndarray) -> Params:
        """The arrays after one SGD step per row, in order, left unpublished (an ensemble
        publishes its members' together; callers serialise their updates)."""
        params = self.params()
        for row, label in zip(X, np.asarray(y).tolist(), strict=True):
            params = self.engine.step(params, row[None, :], int(label))
        return params

    def params(self) -> Params:
        """The arrays predictions use now (never changed in place)."""
        with self._lock:
            return self._params

    def publish(self, params: Params) -> None:
        """Make ``params`` (from :meth:`stepped`) the arrays predictions use."""
        with self._lock:
            self._params = params

    def learn(self, text: str, label: int) -> None:
        self.learn_features(self.transform([text]), np.array([label]))

    # -- state -----------------------------------------------------------------
    def state(self, snapshot: bool = True) -> DeepState:
        """The weights and the optimizer's variables as numpy arrays.

        JAX arrays never change in place (an update makes new ones), so the
        arrays of a model that never learns (``snapshot=False``: a base model)
        are viewed rather than copied.
        """
        with self._lock:
            params = self._params
        if snapshot:
            return DeepState.of(self.engine.names, params)
        return DeepState(self.engine.names, tuple(np.asarray(a) for a in params))

    def set_state(self, state: Any) -> None:
        if not isinstance(state, DeepState) or not self.engine.fits(state.names, state.arrays):
            raise ValueError("model state does not fit this model")
        params = self.engine.to_device(state.arrays)
        with self._learning, self._lock:
            self._params = params

    def state_from_bytes(self, data: bytes) -> DeepState:
        state = DeepState.from_bytes(data)
        if not self.engine.fits(state.names, state.arrays):
            raise ValueError("the state does not fit the base model")
        return state

    def clone(self, state: Any = None) -> DeepModel:
        """A model of the same base (same compiled functions) with its own arrays."""
        with self._lock:
            params = self._params
        twin = DeepModel(self.engine, self.vocabulary, self.manifest, params)
        if state is not None:
            twin.set_state(state)
        return twin

    def close(self) -> None:
        """Nothing to release: the compiled functions stay for other models of this base."""

    def __repr__(self) -> str:
        return (f"DeepModel({self.manifest.get('preset')!r}, "
                f"{cast(str, self.manifest.get('architecture'))!r})")
