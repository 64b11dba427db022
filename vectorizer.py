"""The text-to-features step shared by training and serving.

Training and the web app must turn a review into exactly the same feature
vector, otherwise the pickled classifier is silently wrong. So the tokenizer
and the feature pipeline live here, once, and are rebuilt from what the
training run pickled into ``pkl_objects/``: the stopword list
(``stopwords.pkl``), the vectorizer settings (the ``vectorizer`` section of
``manifest.json``) and, for the default model, the per-feature scale
(``feature_weights.npy``).

As in the tutorial, ``from vectorizer import vect`` gives a ready vectorizer
for the committed model::

    import pickle
    from vectorizer import vect
    clf = pickle.load(open("pkl_objects/classifier.pkl", "rb"))
    clf.predict_proba(vect.transform(["I love this movie"]))

This module knows nothing of Flask, SQLite or training.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import re
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

PKL_DIR = Path(__file__).resolve().parent / "pkl_objects"

HTML_TAG = re.compile(r"<[^>]*>")
# The tutorial's emoticons: an eye (: ; =), an optional nose, a mouth.
EMOTICON = re.compile(r"(?::|;|=)(?:-)?(?:\)|\(|D|P)")
NON_WORD = re.compile(r"\W+")
# "!" and "?" carry sentiment ("awful!!!") that splitting on \W throws away.
EMPHASIS = re.compile(r"[!?]")

# Words of the NLTK list that flip the meaning of what follows. Dropping them
# turns "not good" into "good"; stopword lists for n-gram models keep them.
NEGATIONS = frozenset({"no", "nor", "not", "t"})


def without_negations(stopwords: Iterable[str]) -> list[str]:
    """The stopword list minus the negations (and the ``n't`` stems like "didn")."""
    words = set(stopwords)
    negations = {
        w for w in words if w in NEGATIONS or w.endswith("n't") or f"{w}'t" in words
    }
    return sorted(words - negations)


class Tokenizer:
    """The tutorial's tokenizer, as a picklable callable.

    Strips HTML tags, keeps emoticons such as ``:)`` ``;-(`` ``=D`` (nose
    removed), lowercases, splits on non-word characters and drops stopwords.
    Porter stemming and "!"/"?" tokens are options, off in the tutorial.
    """

    def __init__(
        self, stopwords: Iterable[str] = (), stem: bool = False, emphasis: bool = False
    ) -> None:
        self.stopwords = frozenset(stopwords)
        self.stem = stem
        self.emphasis = emphasis
        self._stemmer = None
        if stem:
            from nltk.stem.porter import PorterStemmer

            self._stemmer = PorterStemmer()

    def __call__(self, text: str) -> list[str]:
        text = HTML_TAG.sub(" ", text)
        emoticons = [e.replace("-", "") for e in EMOTICON.findall(text)]
        stop = self.stopwords
        words = [w for w in NON_WORD.split(text.lower()) if w and w not in stop]
        if self._stemmer is not None:
            words = [self._stemmer.stem(w) for w in words]
        if self.emphasis:
            words += EMPHASIS.findall(text)
        return words + emoticons

    def __getstate__(self) -> dict[str, Any]:
        return {"stopwords": self.stopwords, "stem": self.stem, "emphasis": self.emphasis}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


# The settings raw hashed features depend on (see ReviewVectorizer.fingerprint),
# and the version of the stored form of a row's columns (encode_rows): bump it
# whenever the tokenizer's code changes, so that columns stored before are
# no longer used.
RAW_SETTINGS = ("n_features", "ngram_range", "binary", "alternate_sign", "hasher_norm",
                "stem", "emphasis")
STORED_FORMAT = 1
# A stored row: the fingerprint, then this header (gap width in bytes, CRC-32 of
# the gaps), then the gaps.
FINGERPRINT_BYTES = 8
STORED_HEADER = struct.Struct("<BI")
GAPS_OFFSET = FINGERPRINT_BYTES + STORED_HEADER.size


@dataclass(frozen=True)
class VectorizerSpec:
    """Everything needed to rebuild the features, stored in manifest.json.

    The defaults are the tutorial's HashingVectorizer: unigrams, 2**21
    features, alternating signs, l2 norm applied by the hasher.
    """

    n_features: int = 2**21
    ngram_range: tuple[int, int] = (1, 1)
    binary: bool = False
    alternate_sign: bool = True
    hasher_norm: str | None = "l2"
    stem: bool = False
    emphasis: bool = False
    # Per-feature scale (Naive-Bayes log-count ratio) then row l2 norm.
    feature_weights: str | None = None
    row_norm: bool = False
    dtype: str = "float64"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ngram_range"] = list(self.ngram_range)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VectorizerSpec:
        data = dict(data)
        data["ngram_range"] = tuple(data.get("ngram_range", (1, 1)))
        return cls(**data)


def _already_analysed(grams: list[str]) -> list[str]:
    """The analyzer of a hasher fed n-grams instead of text (a function, so it pickles)."""
    return grams


class ReviewVectorizer:
    """Review texts -> the classifier's feature rows (CSR, float32 or float64).

    Stateless once built: hashing needs no vocabulary, and the optional
    per-feature weights are fixed at training time, so the same object serves
    training, evaluation and the web app in any number of processes.
    """

    def __init__(
        self,
        spec: VectorizerSpec,
        stopwords: Iterable[str] = (),
        weights: np.ndarray | None = None,
    ) -> None:
        if weights is not None and weights.shape != (spec.n_features,):
            raise ValueError(
                f"feature weights have shape {weights.shape}, expected ({spec.n_features},)"
            )
        self.spec = spec
        self.tokenizer = Tokenizer(stopwords, stem=spec.stem, emphasis=spec.emphasis)
        self.weights = weights
        self.hasher = HashingVectorizer(
            tokenizer=self.tokenizer,
            token_pattern=None,
            lowercase=False,
            decode_error="ignore",
            ngram_range=spec.ngram_range,
            n_features=spec.n_features,
            binary=spec.binary,
            alternate_sign=spec.alternate_sign,
            norm=spec.hasher_norm,
            dtype=np.dtype(spec.dtype),
        )
        self._analyse = self.hasher.build_analyzer()
        # The same hashing for reviews already split by analyse(): the results
        # page needs a review's n-grams as well as its features, and splitting
        # is half the cost of vectorising.
        self._gram_hasher = HashingVectorizer(
            analyzer=_already_analysed,
            n_features=spec.n_features,
            binary=spec.binary,
            alternate_sign=spec.alternate_sign,
            norm=spec.hasher_norm,
            dtype=np.dtype(spec.dtype),
        )

    def analyse(self, doc: str) -> list[str]:
        """The review's n-grams in order, repeats included: exactly what gets hashed."""
        return self._analyse(doc)

    def raw_counts(self, docs: Iterable[str]) -> sp.csr_matrix:
        """The hashed n-gram features before any weighting (for NB counts)."""
        if isinstance(docs, str):  # would be read as one review per character
            raise TypeError("expected a list of reviews, got one string: wrap it in a list")
        return self.raw_counts_of(self.analyse(doc) for doc in docs)

    def raw_counts_of(self, analysed: Iterable[list[str]]) -> sp.csr_matrix:
        """:meth:`raw_counts` of reviews already split by :meth:`analyse`."""
        return sp.csr_matrix(self._gram_hasher.transform(analysed))

    def transform(self, docs: Iterable[str]) -> sp.csr_matrix:
        return self.finish(self.raw_counts(docs))

    def transform_analysed(self, analysed: Iterable[list[str]]) -> sp.csr_matrix:
        """:meth:`transform` of reviews already split by :meth:`analyse`."""
        return self.finish(self.raw_counts_of(analysed))

    def finish(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Raw hashed features -> final features: per-feature weights, then row l2 norm.

        Works in place on ``X`` (fresh from :meth:`raw_counts` or a cache).
        """
        if self.spec.feature_weights is not None:
            if self.weights is None:
                raise ValueError("this vectorizer was built without its feature weights")
            X.data *= self.weights[X.indices]
        if self.spec.row_norm:
            norms = np.sqrt(np.bincount(
                np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)),
                weights=X.data.astype(np.float64) ** 2, minlength=X.shape[0],
            ))
            norms[norms == 0] = 1.0
            X.data /= np.repeat(norms, np.diff(X.indptr)).astype(X.dtype)
        return X

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """Identifies the raw features: equal fingerprints hash a text to the same columns.

        Everything :meth:`raw_counts` depends on (hashing settings and
        stopwords), not the per-feature weights, which :meth:`finish` applies.
        """
        spec = self.spec.to_json()
        raw = {key: spec[key] for key in RAW_SETTINGS}
        raw["stopwords"] = sorted(self.tokenizer.stopwords)
        raw["format"] = STORED_FORMAT
        return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).digest()[:FINGERPRINT_BYTES]

    @property
    def stores_columns_only(self) -> bool:
        """Whether a raw row is just its columns (every value 1), so storing those is enough."""
        spec = self.spec
        return spec.binary and not spec.alternate_sign and spec.hasher_norm is None

    def encode_rows(self, X: sp.csr_matrix) -> list[bytes | None]:
        """Each row's columns in a compact form, for :meth:`decode_rows` (None: not storable).

        The app stores them with each prediction, so that learning from its
        verdict later, in any process, needs no second pass of the tokenizer
        and hasher (about 0.5 ms a review). ``X`` may be raw or finished:
        :meth:`finish` changes values, never columns or their order. A row is
        this vectorizer's fingerprint, the width of the gaps, their CRC-32,
        then the gaps between the sorted columns (about 1 KB for a review
        of 1,300 characters).
        """
        if not self.stores_columns_only or not X.has_sorted_indices:
            return [None] * X.shape[0]
        rows: list[bytes | None] = []
        for start, end in zip(X.indptr[:-1].tolist(), X.indptr[1:].tolist(), strict=True):
            columns = X.indices[start:end]
            gaps = columns.copy()  # (np.diff with prepend costs ~10 us more)
            np.subtract(columns[1:], columns[:-1], out=gaps[1:])
            width = 2 if end == start or gaps.max() <= 0xFFFF else 4
            payload = gaps.astype(f"<u{width}").tobytes()
            rows.append(self.fingerprint + STORED_HEADER.pack(width, zlib.crc32(payload))
                        + payload)
        return rows

    def decode_rows(self, rows: Sequence[bytes | None]) -> sp.csr_matrix | None:
        """The finished features of rows from :meth:`encode_rows`, or None if any is unusable.

        Unusable: missing, written by a vectorizer with other settings, or
        damaged. Bit for bit what :meth:`transform` gives for their texts (tested).
        """
        if not rows or not self.stores_columns_only:
            return None
        columns = []
        for row in rows:
            if row is None or len(row) < GAPS_OFFSET or row[:FINGERPRINT_BYTES] != self.fingerprint:
                return None
            width, crc = STORED_HEADER.unpack_from(row, FINGERPRINT_BYTES)
            if width not in (2, 4) or (len(row) - GAPS_OFFSET) % width \
                    or zlib.crc32(memoryview(row)[GAPS_OFFSET:]) != crc:
                return None
            gaps = np.frombuffer(row, dtype=f"<u{width}", offset=GAPS_OFFSET)
            cols = np.cumsum(gaps, dtype=np.int64)
            if len(cols) and (cols[-1] >= self.spec.n_features or not (gaps[1:] > 0).all()):
                return None
            columns.append(cols)
        indptr = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum([len(c) for c in columns], out=indptr[1:])
        indices = np.concatenate(columns).astype(np.int32)
        data = np.ones(len(indices), dtype=np.dtype(self.spec.dtype))
        X = sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.spec.n_features))
        return self.finish(X)

    def feature_index(self, grams: Sequence[str]) -> np.ndarray:
        """Hash bucket of each n-gram, exactly as the hasher places it.

        FeatureHasher's rule, one MurmurHash3 per n-gram: ``abs(h) % n_features``
        (Python integers make sklearn's special case for ``h = -2**31`` the
        plain formula), without building a sparse row per n-gram; a test
        checks both agree.
        """
        n = self.spec.n_features
        return np.fromiter((abs(murmurhash3_32(g, 0)) % n for g in grams), np.int64, len(grams))


def write_features(fh: BinaryIO, X: sp.csr_matrix, y: np.ndarray,
                   member: np.ndarray | None = None) -> None:
    """Labelled feature rows as consecutive ``.npy`` records, for :func:`read_features`.

    The on-disk form of training's feature cache and of the app's vectorised
    holdout. Plain ``np.save`` records rather than an ``.npz``: no zip
    directory and no CRC pass, so reading back is about twice as fast.
    ``member``: an optional per-row table (training's evaluation-set membership).
    """
    no_member = np.zeros(0, dtype=bool)  # 1-d: "no member table"
    for array in (X.data, X.indices, X.indptr, np.asarray(X.shape, dtype=np.int64), y,
                  no_member if member is None else member):
        np.save(fh, array, allow_pickle=False)


def read_features(fh: BinaryIO) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
    """What :func:`write_features` wrote: (features, labels, member table or None)."""
    data, indices, indptr, shape, y, member = (
        np.load(fh, allow_pickle=False) for _ in range(6)
    )
    X = sp.csr_matrix((data, indices, indptr), shape=tuple(int(n) for n in shape))
    return X, y, member if member.ndim == 2 else None


def load_stopwords(pkl_dir: Path = PKL_DIR) -> list[str]:
    with open(Path(pkl_dir) / "stopwords.pkl", "rb") as fh:
        return list(pickle.load(fh))


def load_vectorizer(pkl_dir: Path = PKL_DIR) -> ReviewVectorizer:
    """Rebuild the exact vectorizer a training run saved into ``pkl_dir``."""
    pkl_dir = Path(pkl_dir)
    manifest = json.loads((pkl_dir / "manifest.json").read_text())
    spec = VectorizerSpec.from_json(manifest["vectorizer"])
    weights = None
    if spec.feature_weights:
        weights = np.load(pkl_dir / spec.feature_weights, allow_pickle=False)
    return ReviewVectorizer(spec, load_stopwords(pkl_dir), weights)


def __getattr__(name: str) -> Any:
    # ``vect`` is built on first use, so importing this module (as training
    # does, before any pickle exists) never needs pkl_objects/.
    if name == "vect":
        global vect
        vect = load_vectorizer()
        return vect
    raise AttributeError(name)
