"""Token lists -> hashed n-gram rows: sklearn's string hashing (the tutorial's) and
the faster token-mixing hasher of the default model.
"""


from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

from sentiment.text import kernels
from sentiment.text.spec import ColumnMap, VectorizerSpec
from sentiment.text.tokenizer import PUNCTUATION_MARKS


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


class NGramHasher(Protocol):
    """What the vectorizer needs of a hasher of :data:`NGRAM_HASHERS`."""

    def __init__(self, spec: VectorizerSpec, n_buckets: int) -> None: ...

    def rows(self, token_lists: Sequence[list[str]],
             columns: ColumnMap | None = None) -> sp.csr_matrix: ...

    def gram_buckets(self, tokens: list[str]) -> np.ndarray: ...


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


class MixedNGramHasher:
    """Token lists -> binary rows of n-gram buckets, no n-gram ever spelt out.

    Each token is hashed once with MurmurHash3; an n-gram's key chains its
    tokens' hashes, ``k = fmix64(k * C + next)``, and its bucket is
    ``fmix64(k + n) % n_buckets`` for an n-gram of n tokens. The buckets are
    as uniform as those of hashing the n-gram strings: the same share of a
    review's n-grams collide. All of it runs compiled
    (:mod:`sentiment.text.kernels`), over the UTF-8 bytes of a whole batch.
    """

    def __init__(self, spec: VectorizerSpec, n_buckets: int) -> None:
        if not spec.binary_rows:
            raise ValueError('ngram_hashing="token_mix" makes binary features: it needs '
                             "binary=True, alternate_sign=False and hasher_norm=None")
        self.n_buckets = n_buckets
        self.ngram_range = tuple(spec.ngram_range)
        self.dtype = np.dtype(spec.dtype)

    def rows(self, token_lists: Sequence[list[str]],
             columns: ColumnMap | None = None) -> sp.csr_matrix:
        """Rows over the buckets, or over the columns of ``columns``.

        The tokens are joined by spaces and split again in compiled code:
        a token never holds whitespace (every tokenizer splits on it).
        """
        return self._rows([" ".join(tokens) for tokens in token_lists], _JOINED_TOKENS,
                          columns)

    def rows_of_texts(self, texts: Sequence[str],
                      columns: ColumnMap | None = None) -> sp.csr_matrix:
        """:meth:`rows` of texts as :func:`~sentiment.text.tokenizer.plain_text` leaves
        them, split in compiled code the way a tokenizer that
        :attr:`~sentiment.text.tokenizer.Tokenizer.splits_plainly` splits them:
        no Python string per token."""
        return self._rows(texts, _PLAIN_TEXT, columns)

    def _rows(self, texts: Sequence[str], classes: tuple[np.ndarray, np.ndarray, np.ndarray],
              columns: ColumnMap | None) -> sp.csr_matrix:
        encoded = [text.encode() for text in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        low, high = self.ngram_range
        tables = columns.tables if columns is not None else _NO_COLUMNS
        keys = kernels.row_column_keys(data, offsets, *classes, low, high, self.n_buckets,
                                       *tables)
        # Row then column in one key: numpy's sort (several times a compiled
        # quicksort's speed), then one pass drops repeats and counts each row.
        keys.sort()
        indices, indptr = kernels.csr_of_sorted_keys(keys, len(texts))
        width = self.n_buckets if columns is None else columns.n_columns
        return sp.csr_matrix((np.ones(len(indices), dtype=self.dtype), indices, indptr),
                             shape=(len(texts), width))

    def gram_buckets(self, tokens: list[str]) -> np.ndarray:
        """The bucket of each n-gram of a review, in :class:`WordNGrams` order, as
        :meth:`rows` places it."""
        data = np.frombuffer(" ".join(tokens).encode(), dtype=np.uint8)
        hashes = np.empty(len(data), dtype=np.uint64)
        count = kernels.token_hashes(data, 0, len(data), *_JOINED_TOKENS, hashes)
        low, high = self.ngram_range
        buckets = np.empty(count * (high - low + 1), dtype=np.uint64)
        count = kernels.gram_buckets(hashes[:count], low, high, self.n_buckets,
                                     np.empty(count, dtype=np.uint64), buckets)
        return buckets[:count].astype(np.int64)


# The compiled splitter's character classes: for tokens joined by spaces, and
# for a tokenizer's plain text, where each punctuation mark is a token.
_JOINED_TOKENS = kernels.character_classes("")
_PLAIN_TEXT = kernels.character_classes(PUNCTUATION_MARKS)
# What the kernels take for "no column map": the buckets are the columns.
_NO_COLUMNS = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), 0, 1)


NGRAM_HASHERS: dict[str, type[NGramHasher]] = {
    "strings": StringNGramHasher, "token_mix": MixedNGramHasher,
}
