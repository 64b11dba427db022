"""Keras models answering together: the mean of their probabilities, served as one model.

An ensemble folder (``python -m train.deep.ensemble``) holds each member's
folder (``NAME/``, a whole :class:`~.served.DeepModel` folder), the members'
shared ``holdout.csv.gz`` and ``manifest.json`` (``"kind": "ensemble"``, the
member names in order and the sha256 of each member's manifest, which in turn
lists the sha256 of the member's files).

The members must read reviews alike: one vocabulary (same words, stopwords,
sequence length and kept end, checked by its fingerprint), so one row of word
indices is the features of every member, and a verdict stored with it is
learned by each without reading the text again. The cnn and rcnn presets
qualify (every word, the first 600, the 20,000 most frequent).

A verdict moves every member by its own SGD step (its own online settings);
the updated arrays of all members are published together, so a prediction
never sees one member updated and another not. The state is every member's
state, each array's name prefixed by its member's name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.files import sha256_bytes
from sentiment.models.deep.engine import Params
from sentiment.models.deep.served import AnswersFromProbabilities, DeepModel, strongest
from sentiment.models.deep.state import DeepState

MEMBER_SEPARATOR = ":"  # state array names: "MEMBER:variable/path"


class EnsembleModel(AnswersFromProbabilities):
    """Deep models of one vocabulary; thread-safe like :class:`DeepModel`."""

    def __init__(self, members: dict[str, DeepModel], manifest: dict[str, Any]) -> None:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        fingerprints = {m.vocabulary.fingerprint for m in members.values()}
        if len(fingerprints) != 1:
            raise ValueError("the members of an ensemble must share one vocabulary "
                             f"({', '.join(members)} do not)")
        self.members = members
        self.manifest = manifest
        self._first = next(iter(members.values()))
        self._lock = threading.Lock()  # the members' arrays are swapped together under it
        self._learning = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path) -> EnsembleModel:
        """The ensemble saved in ``model_dir``; ValueError if a member's manifest does not
        match its sha256 (each member checks its own files)."""
        model_dir = Path(model_dir)
        manifest = json.loads((model_dir / "manifest.json").read_text())
        names = manifest.get("members")
        if not isinstance(names, list) or not names:
            raise ValueError(f"{model_dir}: manifest.json lists no members")
        files = manifest.get("files", {})
        members = {}
        for name in names:
            member_manifest = f"{name}/manifest.json"
            data = (model_dir / member_manifest).read_bytes()
            if sha256_bytes(data) != files.get(member_manifest):
                raise ValueError(f"{model_dir / member_manifest} does not match its sha256 "
                                 f"in manifest.json")
            members[name] = DeepModel.load(model_dir / name)
        return cls(members, manifest)

    @property
    def base_id(self) -> str:
        key = json.dumps(["ensemble", [[n, m.base_id] for n, m in self.members.items()]])
        return sha256_bytes(key.encode())[:16]

    @property
    def replays(self) -> tuple[int, ...]:
        """As its members learn (each verdict one step in every member)."""
        return self._first.replays

    @property
    def learns_in_batches_exactly(self) -> bool:
        """As its members learn: one SGD step per verdict."""
        return self._first.learns_in_batches_exactly

    # -- features: the members' shared vocabulary ------------------------------------
    def tokenize(self, text: str) -> list[str]:
        return self._first.tokenize(text)

    def transform(self, texts: Sequence[str], chunk: int = 8,
                  pause: float = 0.0) -> np.ndarray:
        return self._first.transform(texts, chunk, pause)

    def transform_tokens(self, token_lists: Sequence[list[str]]) -> np.ndarray:
        return self._first.transform_tokens(token_lists)

    def feature_counts(self, X: np.ndarray) -> list[int]:
        return self._first.feature_counts(X)

    def encode_rows(self, X: np.ndarray) -> list[bytes | None]:
        return self._first.encode_rows(X)

    def stored_features(self, texts: Sequence[str],
                        stored: Sequence[bytes | None]) -> np.ndarray:
        return self._first.stored_features(texts, stored)

    def features_to_bytes(self, X: np.ndarray, y: np.ndarray) -> bytes:
        return self._first.features_to_bytes(X, y)

    def features_from_bytes(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        return self._first.features_from_bytes(data)

    # -- predicting ---------------------------------------------------------------------
    def _params(self) -> list[Params]:
        """Every member's arrays, taken together (never half of an update)."""
        with self._lock:
            return [m.params() for m in self.members.values()]

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """The mean of the members' P(positive) for each row."""
        params = self._params()
        each = np.stack([m.probabilities(X, p) for m, p
                         in zip(self.members.values(), params, strict=True)])
        mean: np.ndarray = each.mean(axis=0)
        return mean

    def explain(self, text: str, k: int = 6, X: np.ndarray | None = None,
                tokens: list[str] | None = None) -> list[tuple[str, float]]:
        """The words of largest mean push over the members (each a share of its logit)."""
        if tokens is None:
            tokens = self.tokenize(text)
        if X is None:
            X = self.transform_tokens([tokens])
        params = self._params()
        total: dict[str, float] = {}
        for member, p in zip(self.members.values(), params, strict=True):
            for word, push in member.word_pushes(tokens, X, p).items():
                total[word] = total.get(word, 0.0) + push / len(self.members)
        return strongest(total, k)

    # -- learning -----------------------------------------------------------------------
    def learn_features(self, X: np.ndarray, y: np.ndarray) -> None:
        """Each member's SGD steps, published together."""
        with self._learning:
            updated = [m.stepped(X, y) for m in self.members.values()]
            with self._lock:
                for member, params in zip(self.members.values(), updated, strict=True):
                    member.publish(params)

    def learn(self, text: str, label: int) -> None:
        self.learn_features(self.transform([text]), np.array([label]))

    # -- state --------------------------------------------------------------------------
    def state(self, snapshot: bool = True) -> DeepState:
        with self._lock:
            states = [(n, m.state(snapshot)) for n, m in self.members.items()]
        return DeepState(
            tuple(f"{n}{MEMBER_SEPARATOR}{name}" for n, s in states for name in s.names),
            tuple(a for _, s in states for a in s.arrays))

    def _split(self, state: Any) -> dict[str, DeepState]:
        """The members' states in ``state`` (ValueError if it is not an ensemble's)."""
        if not isinstance(state, DeepState):
            raise ValueError("model state does not fit this model")
        parts: dict[str, tuple[list[str], list[np.ndarray]]] = {n: ([], []) for n in self.members}
        for full, array in zip(state.names, state.arrays, strict=True):
            member, _, name = full.partition(MEMBER_SEPARATOR)
            if member not in parts:
                raise ValueError(f"the state names {member!r}, not a member of this ensemble")
            parts[member][0].append(name)
            parts[member][1].append(array)
        split = {n: DeepState(tuple(names), tuple(arrays)) for n, (names, arrays) in parts.items()}
        for n, model in self.members.items():
            if not model.engine.fits(split[n].names, split[n].arrays):
                raise ValueError(f"the state does not fit member {n!r}")
        return split

    def set_state(self, state: Any) -> None:
        split = self._split(state)
        arrays = {n: m.engine.to_device(split[n].arrays) for n, m in self.members.items()}
        with self._learning, self._lock:
            for n, member in self.members.items():
                member.publish(arrays[n])

    def state_from_bytes(self, data: bytes) -> DeepState:
        state = DeepState.from_bytes(data)
        self._split(state)
        return state

    def clone(self, state: Any = None) -> EnsembleModel:
        """Members of the same bases (same compiled functions) with their own arrays."""
        with self._lock:
            twin = EnsembleModel({n: m.clone() for n, m in self.members.items()}, self.manifest)
        if state is not None:
            twin.set_state(state)
        return twin

    def close(self) -> None:
        for member in self.members.values():
            member.close()

    def __repr__(self) -> str:
        return f"EnsembleModel({', '.join(self.members)})"
