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
import itertools
import json
import pickle
import re
import string
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
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
# Every ASCII punctuation mark and the typographic ones reviews use, each to
# become a token of its own where it stands ("great !", ": )", "... not").
PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "“”¨«»®´·º½¾¿¡§£₤‘’])")

# A letter or a digit: what makes a token a word. Punctuation marks and emoji
# are tokens of the default model too, but a review of nothing else is no review.
WORD_CHARACTER = re.compile(r"[^\W_]")

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


def has_words(text: str) -> bool:
    """Whether the review has a letter or digit outside its HTML tags."""
    return WORD_CHARACTER.search(HTML_TAG.sub(" ", text)) is not None


class Tokenizer:
    """The tutorial's tokenizer, as a picklable callable.

    Strips HTML tags, keeps emoticons such as ``:)`` ``;-(`` ``=D`` (nose
    removed), lowercases, splits on non-word characters and drops stopwords.
    Porter stemming and "!"/"?" tokens are options, off in the tutorial.

    With ``punctuation``, every punctuation mark is a token where it stands
    instead of a separator, so n-grams see "bad !" and ": )" (emoticons are
    then no longer collected apart): 0.15 points of cross-validated accuracy
    for the default model.
    """

    def __init__(
        self, stopwords: Iterable[str] = (), stem: bool = False, emphasis: bool = False,
        punctuation: bool = False,
    ) -> None:
        self.stopwords = frozenset(stopwords)
        self.stem = stem
        self.emphasis = emphasis
        self.punctuation = punctuation
        self._stemmer = None
        if stem:
            from nltk.stem.porter import PorterStemmer

            self._stemmer = PorterStemmer()

    def __call__(self, text: str) -> list[str]:
        text = HTML_TAG.sub(" ", text)
        stop = self.stopwords
        if self.punctuation:
            emoticons = []
            words = PUNCTUATION.sub(r" \1 ", text.lower()).split()
            if stop:  # (filtering against none costs 40% of tokenizing)
                words = [w for w in words if w not in stop]
        else:
            emoticons = [e.replace("-", "") for e in EMOTICON.findall(text)]
            words = [w for w in NON_WORD.split(text.lower()) if w and w not in stop]
        if self._stemmer is not None:
            words = [self._stemmer.stem(w) for w in words]
        if self.emphasis:
            words += EMPHASIS.findall(text)
        return words + emoticons

    def __getstate__(self) -> dict[str, Any]:
        return {"stopwords": self.stopwords, "stem": self.stem, "emphasis": self.emphasis,
                "punctuation": self.punctuation}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


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
    punctuation: bool = False
    # How an n-gram finds its bucket: "strings", sklearn's HashingVectorizer
    # (MurmurHash3 of the n-gram's text, the tutorial's); "token_mix", mixed
    # from its tokens' hashes without spelling it out (MixedNGramHasher:
    # binary features only).
    ngram_hashing: str = "strings"
    # Column selection (see ColumnMap): n-grams are hashed into
    # ``hashed_features`` buckets, and the file ``columns`` lists the buckets
    # that keep a column of their own. None: hash straight into n_features.
    hashed_features: int | None = None
    columns: str | None = None
    # Per-feature scale (Naive-Bayes log-count ratio) then row l2 norm.
    feature_weights: str | None = None
    row_norm: bool = False
    dtype: str = "float64"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_rows(self) -> bool:
        """Whether a raw row is just its columns: every value 1, unsigned, not normalised."""
        return self.binary and not self.alternate_sign and self.hasher_norm is None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ngram_range"] = list(self.ngram_range)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VectorizerSpec:
        data = dict(data)
        data["ngram_range"] = tuple(data.get("ngram_range", (1, 1)))
        return cls(**data)


class ColumnMap:
    """Hash buckets -> model columns: a kept bucket gets a column of its own, the rest share.

    Hashing trigrams straight into 2**20 columns makes every frequent n-gram
    share its column with rare ones, whose noise the classifier cannot tell
    apart. So n-grams are hashed into many more buckets; the buckets most
    frequent in training (``kept``, sorted) become columns ``0..len(kept)-1``
    in order, and every other bucket, including those of n-grams never seen
    in training, folds into the remaining "spare" columns by modulo, where
    feedback can still teach them. Worth 0.15 points of cross-validated
    accuracy over plain hashing for the default model, and 0.2 more from the
    lower weight floor that then works best.

    A kept bucket's column is its rank among the kept ones, read from a
    bitmap of the buckets and the running count of set bits per 64-bit word:
    3 MB for 2**24 buckets, a constant time per n-gram (a binary search over
    the kept buckets took twice as long for one review, five times as long
    for a training batch).
    """

    def __init__(self, kept: np.ndarray, n_columns: int, n_buckets: int) -> None:
        kept = np.asarray(kept, dtype=np.int64)
        if not 0 < len(kept) < n_columns:
            raise ValueError(f"{len(kept)} kept buckets leave no spare column of {n_columns}")
        if (np.diff(kept) <= 0).any() or kept[0] < 0 or kept[-1] >= n_buckets:
            raise ValueError(f"kept buckets must be sorted, distinct and below {n_buckets}")
        self.kept = kept
        self.n_columns = n_columns
        self.n_buckets = n_buckets
        self.n_kept = len(kept)
        is_kept = np.zeros(-(-n_buckets // 64) * 64, dtype=bool)
        is_kept[kept] = True
        self._words = np.packbits(is_kept, bitorder="little").view("<u8")
        set_bits = np.bitwise_count(self._words).astype(np.int64)
        self._rank = np.cumsum(set_bits) - set_bits  # kept buckets before each word

    @functools.cached_property
    def digest(self) -> bytes:
        return hashlib.sha256(self.kept.astype("<i8").tobytes()).digest()

    def __call__(self, buckets: np.ndarray) -> np.ndarray:
        """The column of each bucket (int32, same shape)."""
        buckets = np.asarray(buckets, dtype=np.int64)
        word_of = buckets >> 6
        words = self._words[word_of]
        bit = (buckets & 63).astype(np.uint64)
        below = words & ((np.uint64(1) << bit) - np.uint64(1))
        rank = self._rank[word_of] + np.bitwise_count(below)
        spare = self.n_kept + buckets % (self.n_columns - self.n_kept)
        return np.where((words >> bit) & np.uint64(1), rank, spare).astype(np.int32)

    def map_rows(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Binary rows over the buckets -> over the columns, canonical."""
        mapped = sp.csr_matrix((X.data.copy(), self(X.indices), X.indptr.copy()),
                               shape=(X.shape[0], self.n_columns))
        mapped.sum_duplicates()  # sorts each row; buckets sharing a spare column merge
        mapped.data[:] = 1  # binary (checked when the vectorizer is built)
        return mapped

    def __getstate__(self) -> dict[str, Any]:
        return {"kept": self.kept, "n_columns": self.n_columns, "n_buckets": self.n_buckets}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


class WordNGrams:
    """A review's tokens -> its word n-grams in order, repeats included: sklearn's word analyzer.

    The same list as ``HashingVectorizer(tokenizer=..., ngram_range=...)``'s
    analyzer (tested), built by mapping ``str.join`` over zipped token
    streams instead of sklearn's Python loop over slices: a quarter faster.
    """

    def __init__(self, ngram_range: tuple[int, int]) -> None:
        self.ngram_range = tuple(ngram_range)

    def __call__(self, tokens: list[str]) -> list[str]:
        low, high = self.ngram_range
        grams = tokens[:] if low == 1 else []
        for n in range(max(low, 2), high + 1):
            grams += map(" ".join, zip(*(tokens[i:] for i in range(n)), strict=False))
        return grams

    def gram(self, tokens: list[str], position: int) -> str:
        """``self(tokens)[position]``, without building the other n-grams (an
        explanation shows a handful of a review's ~700)."""
        low, high = self.ngram_range
        for n in range(low, high + 1):
            count = max(len(tokens) - n + 1, 0)
            if 0 <= position < count:
                return " ".join(tokens[position:position + n])
            position -= count
        raise IndexError("n-gram position out of range")


def _already_analysed(grams: list[str]) -> list[str]:
    """The analyzer of a hasher fed n-grams instead of text (a function, so it pickles)."""
    return grams


class StringNGramHasher:
    """Token lists -> hashed n-gram rows, by sklearn's HashingVectorizer on the n-gram strings.

    The tutorial's features (and any spec with ``ngram_hashing="strings"``):
    each n-gram is spelt out, encoded and hashed with MurmurHash3.
    """

    def __init__(self, spec: VectorizerSpec, n_buckets: int) -> None:
        self.n_buckets = n_buckets
        self._grams = WordNGrams(spec.ngram_range)
        self._hasher = HashingVectorizer(
            analyzer=_already_analysed,
            n_features=n_buckets,
            binary=spec.binary,
            alternate_sign=spec.alternate_sign,
            norm=spec.hasher_norm,
            dtype=np.dtype(spec.dtype),
        )

    def rows(self, token_lists: Sequence[list[str]],
             columns: ColumnMap | None = None) -> sp.csr_matrix:
        """Rows over the buckets, or over the columns of ``columns``."""
        X = sp.csr_matrix(self._hasher.transform(map(self._grams, token_lists)))
        return X if columns is None else columns.map_rows(X)

    def gram_buckets(self, tokens: list[str]) -> np.ndarray:
        """The bucket of each n-gram of a review, in :class:`WordNGrams` order.

        FeatureHasher's rule, one MurmurHash3 per n-gram: ``abs(h) % n_buckets``
        (Python integers make sklearn's special case for ``h = -2**31`` the
        plain formula).
        """
        n = self.n_buckets
        grams = self._grams(tokens)
        return np.fromiter((abs(murmurhash3_32(g, 0)) % n for g in grams), np.int64, len(grams))


# MurmurHash3's 64-bit finaliser, and the odd multiplier (2**64 over the
# golden ratio) that chains a token into the key of the n-gram before it.
_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_FMIX_SHIFT = np.uint64(33)
_CHAIN = np.uint64(0x9E3779B97F4A7C15)
_ROW_SHIFT = np.uint64(32)
_LOW_32 = np.uint64(0xFFFFFFFF)


def _fmix64(keys: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: each input bit flips about half the output."""
    keys ^= keys >> _FMIX_SHIFT
    keys *= _FMIX_1
    keys ^= keys >> _FMIX_SHIFT
    keys *= _FMIX_2
    keys ^= keys >> _FMIX_SHIFT
    return keys


class TokenHashes(dict):
    """token -> its unsigned 32-bit MurmurHash3, remembered for the first ``limit`` tokens.

    Reviews repeat a few thousand words, so a look-up (about 95 ns a token)
    replaces most calls to MurmurHash3 (about 245 ns, with the UTF-8
    encoding each makes). The limit bounds what made-up words can cost a
    server: about 17 MB at 2**17, which the 75,117 distinct tokens of the
    train split fit.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, token: str) -> int:
        value = murmurhash3_32(token, 0, True)
        if len(self) < self.limit:
            self[token] = value
        return value


TOKEN_HASHES = TokenHashes(2**17)


class MixedNGramHasher:
    """Token lists -> binary rows of n-gram buckets, no n-gram ever spelt out.

    Each token is hashed once (:data:`TOKEN_HASHES`); an n-gram's key chains
    its tokens' hashes, ``k = fmix64(k * C + next)``, and its bucket is
    ``fmix64(k + n) % n_buckets`` for an n-gram of n tokens. All of it runs in
    numpy over a whole batch, and the rows come out canonical from one sort.
    Tokenizing aside, a review takes about 0.08 ms in a batch against 0.35 ms
    for building, encoding and hashing its n-gram strings, and 0.2 ms alone
    against 0.37 ms. The buckets are as uniform: the same share of a
    review's n-grams collide.
    """

    def __init__(self, spec: VectorizerSpec, n_buckets: int) -> None:
        if not spec.binary_rows:
            raise ValueError('ngram_hashing="token_mix" makes binary features: it needs '
                             "binary=True, alternate_sign=False and hasher_norm=None")
        self.n_buckets = n_buckets
        self.ngram_range = tuple(spec.ngram_range)
        self.dtype = np.dtype(spec.dtype)

    def _bucket(self, keys: np.ndarray, n: int) -> np.ndarray:
        return _fmix64(keys + np.uint64(n)) % np.uint64(self.n_buckets)

    def _keys(self, hashes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(n, the key of the n-gram starting at each token) for each n of the range.

        Over a batch, the last n - 1 keys of a review run into the next one:
        the caller drops them.
        """
        low, high = self.ngram_range
        keys = hashes
        for n in range(1, high + 1):
            if n > 1:
                keys = _fmix64(keys[:-1] * _CHAIN + hashes[n - 1:])
            if n >= low:
                yield n, keys

    def rows(self, token_lists: Sequence[list[str]],
             columns: ColumnMap | None = None) -> sp.csr_matrix:
        """Rows over the buckets, or over the columns of ``columns``: each bucket is
        mapped before the one sort, so no bucket row is built (0.48 against
        0.60 ms to vectorise a review of 1,300 characters)."""
        n_docs = len(token_lists)
        lengths = np.fromiter(map(len, token_lists), np.int64, n_docs)
        total = int(lengths.sum())
        tokens = np.fromiter(map(TOKEN_HASHES.__getitem__, itertools.chain.from_iterable(
            token_lists)), np.uint64, total)
        row = np.repeat(np.arange(n_docs, dtype=np.uint64) << _ROW_SHIFT, lengths)
        left = np.repeat(np.cumsum(lengths), lengths) - np.arange(total)  # tokens to its end
        buckets, rows = [], []
        for n, keys in self._keys(tokens):
            whole = left[:len(keys)] >= n  # the n-gram ends inside its review
            buckets.append(self._bucket(keys[whole], n))
            rows.append(row[:len(keys)][whole])
        buckets = np.concatenate(buckets)
        if columns is not None:
            buckets = columns(buckets).astype(np.uint64)
        # Row then bucket in one key: sorted and deduplicated, they are the
        # CSR rows, canonical. (np.unique took 35 times as long here.)
        keys = np.sort(buckets | np.concatenate(rows))
        distinct = np.ones(len(keys), dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
        keys = keys[distinct]
        indptr = np.zeros(n_docs + 1, dtype=np.int32)
        np.cumsum(np.bincount((keys >> _ROW_SHIFT).astype(np.intp), minlength=n_docs),
                  out=indptr[1:])
        width = self.n_buckets if columns is None else columns.n_columns
        return sp.csr_matrix((np.ones(len(keys), dtype=self.dtype),
                              (keys & _LOW_32).astype(np.int32), indptr), shape=(n_docs, width))

    def gram_buckets(self, tokens: list[str]) -> np.ndarray:
        """The bucket of each n-gram of a review, in :class:`WordNGrams` order, as
        :meth:`rows` places it."""
        hashes = np.fromiter(map(TOKEN_HASHES.__getitem__, tokens), np.uint64, len(tokens))
        parts = [self._bucket(keys, n) for n, keys in self._keys(hashes)]
        return np.concatenate(parts).astype(np.int64)


NGRAM_HASHERS = {"strings": StringNGramHasher, "token_mix": MixedNGramHasher}


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
        self._hasher = NGRAM_HASHERS[spec.ngram_hashing](spec, self.n_buckets)

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
        if self.spec.feature_weights is not None:
            if self.weights is None:
                raise ValueError("this vectorizer was built without its feature weights")
            X.data *= self.weights[X.indices]
        if self.spec.row_norm:
            squares = X.data.astype(np.float64) ** 2
            if self.columns is not None:
                # Spare columns stay out of the norm: an n-gram rare or new to
                # the model neither shrinks the known ones nor loses the fixed
                # scale feedback learns it with (cross-validated: no cost).
                squares[X.indices >= self.columns.n_kept] = 0.0
            norms = np.sqrt(np.bincount(
                np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)),
                weights=squares, minlength=X.shape[0],
            ))
            norms[norms == 0] = 1.0
            X.data /= np.repeat(norms, np.diff(X.indptr)).astype(X.dtype)
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

    def gram_columns(self, tokens: list[str]) -> np.ndarray:
        """The column of each n-gram of :meth:`grams`, exactly as the hasher places it
        (tested), without building a sparse row per n-gram."""
        buckets = self._hasher.gram_buckets(tokens)
        return buckets if self.columns is None else self.columns(buckets).astype(np.int64)


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
    weights = columns = None
    if spec.feature_weights:
        weights = np.load(pkl_dir / spec.feature_weights, allow_pickle=False)
    if spec.columns:
        kept = np.load(pkl_dir / spec.columns, allow_pickle=False)
        columns = ColumnMap(kept, spec.n_features, spec.hashed_features)
    return ReviewVectorizer(spec, load_stopwords(pkl_dir), weights, columns)


def __getattr__(name: str) -> Any:
    # ``vect`` is built on first use, so importing this module (as training
    # does, before any pickle exists) never needs pkl_objects/.
    if name == "vect":
        global vect
        vect = load_vectorizer()
        return vect
    raise AttributeError(name)
