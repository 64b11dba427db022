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
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import scipy.sparse as sp

from sentiment.text.kernels import finish_rows
from sentiment.text.ngrams import NGRAM_HASHERS, MixedNGramHasher, NGramHasher, WordNGrams
from sentiment.text.spec import ColumnMap, VectorizerSpec
from sentiment.text.tokenizer import Tokenizer, plain_text

# The committed model, in the project's root (the package is installed editable).
PKL_DIR = Path(__file__).resolve().parents[2] / "pkl_objects"

# The settings raw hashed features depend on (see ReviewVectorizer.fingerprint),
# and the version of the stored form of a row's columns (encode_rows): bump it
# whenever the tokenizer's code changes, so that columns stored before are
# no longer used.
RAW_SETTINGS = ("n_features", "ngram_range", "binary", "alternate_sign", "hasher_norm",
                "stem", "emphasis", "punctuation", "ngram_hashing", "hashed_features")
STORED_FORMAT = 1
# A stored row: the fingerprint, then this header (gap width in bytes, CRC-32 of
# the gaps), then the gaps.
FINGERPRINT_BYTES = 8
STORED_HEADER = struct.Struct("<BI")
GAPS_OFFSET = FINGERPRINT_BYTES + STORED_HEADER.size




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
        columns: ColumnMap | None = None,
    ) -> None:
        if weights is not None and weights.shape != (spec.n_features,):
            raise ValueError(
                f"feature weights have shape {weights.shape}, expected ({spec.n_features},)"
            )
        if spec.hashed_features is not None and (
                spec.hashed_features <= spec.n_features or not spec.binary):
            raise ValueError("column selection needs binary features and hashed_features "
                             "above n_features")
        if columns is not None and (columns.n_columns, columns.n_buckets) != (
                spec.n_features, spec.hashed_features):
            raise ValueError(f"the column map is for {columns.n_buckets} buckets and "
                             f"{columns.n_columns} columns, not this vectorizer's")
        self.spec = spec
        self.tokenizer = Tokenizer(stopwords, stem=spec.stem, emphasis=spec.emphasis,
                                   punctuation=spec.punctuation)
        self.weights = weights
        self.columns = columns
        self.n_buckets = spec.hashed_features or spec.n_features
        if spec.ngram_hashing not in NGRAM_HASHERS:
            raise ValueError(f"unknown ngram_hashing {spec.ngram_hashing!r}: expected one of "
                             f"{sorted(NGRAM_HASHERS)}")
        self._grams = WordNGrams(spec.ngram_range)
        self._hasher: NGramHasher = NGRAM_HASHERS[spec.ngram_hashing](spec, self.n_buckets)
        # Texts whose tokens compiled code can split itself (the default model's).
        self._text_hasher = (self._hasher if isinstance(self._hasher, MixedNGramHasher)
                             and self.tokenizer.splits_plainly else None)
        self._no_weights = np.zeros(0, dtype=np.dtype(spec.dtype))

    def tokenize(self, doc: str) -> list[str]:
        """The review's tokens: what :meth:`raw_counts_of` takes (the results page
        tokenizes once, for the prediction and its explanation)."""
        return self.tokenizer(doc)

    def grams(self, tokens: list[str]) -> list[str]:
        """The n-grams of a tokenized review in order, repeats included."""
        return self._grams(tokens)

    def gram(self, tokens: list[str], position: int) -> str:
        """``grams(tokens)[position]``, the others left unbuilt."""
        return self._grams.gram(tokens, position)

    def analyse(self, doc: str) -> list[str]:
        """The review's n-grams in order, repeats included: exactly what gets hashed."""
        return self._grams(self.tokenizer(doc))

    def raw_counts(self, docs: Iterable[str]) -> sp.csr_matrix:
        """The hashed n-gram features before any weighting (for NB counts).

        In the model's columns; for a spec with column selection but no
        column map yet (training's first pass), in the hash buckets.
        """
        if isinstance(docs, str):  # would be read as one review per character
            raise TypeError("expected a list of reviews, got one string: wrap it in a list")
        if self._text_hasher is not None:
            return self._text_hasher.rows_of_texts([plain_text(doc) for doc in docs],
                                                   self.columns)
        return self.raw_counts_of([self.tokenizer(doc) for doc in docs])

    def raw_counts_of(self, token_lists: Sequence[list[str]]) -> sp.csr_matrix:
        """:meth:`raw_counts` of reviews already split by :meth:`tokenize`."""
        return self._hasher.rows(token_lists, self.columns)

    def to_columns(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Raw counts over the hash buckets -> over the model's columns (see ColumnMap).

        Counts already over the columns come back unchanged, so training can
        pass every cached batch through.
        """
        if X.shape[1] == self.spec.n_features:
            return X
        if self.columns is None or X.shape[1] != self.n_buckets:
            raise ValueError(f"features with {X.shape[1]} columns need a column map "
                             f"for {self.n_buckets} buckets")
        return self.columns.map_rows(X)

    def transform(self, docs: Iterable[str]) -> sp.csr_matrix:
        return self.finish(self.raw_counts(docs))

    def transform_tokens(self, token_lists: Sequence[list[str]]) -> sp.csr_matrix:
        """:meth:`transform` of reviews already split by :meth:`tokenize`."""
        return self.finish(self.raw_counts_of(token_lists))

    def finish(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Raw hashed features -> final features: per-feature weights, then row l2 norm.

        Works in place on ``X`` (fresh from :meth:`raw_counts` or a cache).
        """
        weights = self._no_weights
        if self.spec.feature_weights is not None:
            if self.weights is None:
                raise ValueError("this vectorizer was built without its feature weights")
            weights = self.weights
        elif not self.spec.row_norm:
            return X
        # Spare columns stay out of the norm: an n-gram rare or new to the
        # model neither shrinks the known ones nor loses the fixed scale
        # feedback learns it with (cross-validated: no cost).
        normed = self.columns.n_kept if self.columns is not None else X.shape[1]
        finish_rows(X.indices, X.indptr, weights, normed, self.spec.row_norm, X.data)
        return X

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """Identifies the raw features: equal fingerprints hash a text to the same columns.

        Everything :meth:`raw_counts` depends on (hashing settings, stopwords
        and the column map), not the per-feature weights, which :meth:`finish`
        applies.
        """
        spec = self.spec.to_json()
        raw = {key: spec[key] for key in RAW_SETTINGS}
        raw["stopwords"] = sorted(self.tokenizer.stopwords)
        raw["format"] = STORED_FORMAT
        if self.columns is not None:
            raw["columns"] = self.columns.digest.hex()
        return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).digest()[:FINGERPRINT_BYTES]

    @property
    def stores_columns_only(self) -> bool:
        """Whether a raw row is just its columns (every value 1), so storing those is enough."""
        return self.spec.binary_rows

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
        starts, ends = X.indptr[:-1], X.indptr[1:]
        # Every row's gaps in one pass: each column less the one before it,
        # except a row's first column, which is its own gap.
        gaps = X.indices.astype(np.int64)
        gaps[1:] -= X.indices[:-1]
        filled = ends > starts
        gaps[starts[filled]] = X.indices[starts[filled]]
        widest = np.zeros(X.shape[0], dtype=np.int64)
        if filled.any():
            widest[filled] = np.maximum.reduceat(gaps, starts[filled])
        payloads = {2: gaps.astype("<u2").tobytes(), 4: gaps.astype("<u4").tobytes()}
        rows: list[bytes | None] = []
        for start, end, most in zip(starts.tolist(), ends.tolist(), widest.tolist(),
                                    strict=True):
            width = 2 if most <= 0xFFFF else 4
            payload = payloads[width][start * width:end * width]
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

    def gram_columns(self, tokens: list[str]) -> np.ndarray:
        """The column of each n-gram of :meth:`grams`, exactly as the hasher places it
        (tested), without building a sparse row per n-gram."""
        buckets = self._hasher.gram_buckets(tokens)
        return buckets if self.columns is None else self.columns(buckets).astype(np.int64)




def load_stopwords(pkl_dir: Path = PKL_DIR) -> list[str]:
    with open(Path(pkl_dir) / "stopwords.pkl", "rb") as fh:
        return list(pickle.load(fh))


def load_vectorizer(pkl_dir: Path = PKL_DIR) -> ReviewVectorizer:
    """Rebuild the exact vectorizer a training run saved into ``pkl_dir``."""
    pkl_dir = Path(pkl_dir)
    manifest = json.loads((pkl_dir / "manifest.json").read_text())
    spec = VectorizerSpec.from_json(manifest["vectorizer"])
    weights = columns = None
    if spec.feature_weights:
        weights = np.load(pkl_dir / spec.feature_weights, allow_pickle=False)
    if spec.columns:
        kept = np.load(pkl_dir / spec.columns, allow_pickle=False)
        # A spec with a column map hashes into hashed_features buckets (a None would
        # fail in ColumnMap as before: the cast only tells mypy, it checks nothing).
        columns = ColumnMap(kept, spec.n_features, cast(int, spec.hashed_features))
    return ReviewVectorizer(spec, load_stopwords(pkl_dir), weights, columns)
