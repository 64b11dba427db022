"""Review text -> token-mixed n-gram columns, compiled with numba.

Why compiled: in Python, a review of 1,300 characters spends most of its
~100 us in per-token work (a dictionary look-up for each token's hash, the
regular-expression split that spaces the punctuation marks, numpy calls
whose overhead outweighs their ~300 elements). Here one pass over the
review's UTF-8 bytes splits it into tokens, hashes each with MurmurHash3,
chains the hashes into n-gram keys, maps each bucket to its column and
writes the sorted, deduplicated CSR row, with no Python object per token.

The rules are the ones :class:`~sentiment.text.tokenizer.Tokenizer` and
:class:`~sentiment.text.ngrams.MixedNGramHasher` document, and the tests
hold this code to their plain-Python statement bit for bit, on made-up text
of every Unicode class and on the official test reviews. The functions are
cached on disk (``cache=True``), so only the first process after an install
pays the compilation (a few seconds).
"""


from __future__ import annotations

import numpy as np
from numba import njit

# Character classes of :func:`character_classes`.
WORD = 0
SPACE = 1  # separates tokens (str.split's whitespace)
MARK = 2  # a token of its own wherever it stands (a punctuation mark)

# str.split() splits on exactly these code points (str.isspace(); tested over
# every code point): the ASCII ones, then the others.
WHITESPACE = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0,
              0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007,
              0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)

# MurmurHash3 (x86, 32-bit) and its 64-bit finaliser; the odd multiplier that
# chains a token into the key of the n-gram before it.
_C1 = np.uint64(0xCC9E2D51)
_C2 = np.uint64(0x1B873593)
_LOW_32 = np.uint64(0xFFFFFFFF)
_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_CHAIN = np.uint64(0x9E3779B97F4A7C15)


def character_classes(marks: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tables :func:`rows` classifies characters with.

    ``ascii``: the class of each code point below 128; ``wide_points`` and
    ``wide_classes``: the non-ASCII code points that are not word
    characters, sorted, with their class. ``marks``: the characters that are
    tokens of their own (empty: only whitespace splits).
    """
    ascii_classes = np.full(128, WORD, dtype=np.uint8)
    wide: dict[int, int] = {}
    for point, kind in [(ord(m), MARK) for m in marks] + [(w, SPACE) for w in WHITESPACE]:
        if point < 128:
            ascii_classes[point] = kind
        else:
            wide[point] = kind
    points = sorted(wide)
    return (ascii_classes, np.array(points, dtype=np.int64),
            np.array([wide[p] for p in points], dtype=np.uint8))


@njit(cache=True, inline="always")
def _rotl32(x: np.uint64, r: int) -> np.uint64:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _LOW_32


@njit(cache=True, inline="always")
def _mix_block(k: np.uint64) -> np.uint64:
    return (_rotl32((k * _C1) & _LOW_32, 15) * _C2) & _LOW_32


@njit(cache=True)
def murmur3_32(data: np.ndarray, start: int, end: int) -> np.uint64:
    """MurmurHash3_x86_32 of ``data[start:end]`` with seed 0, unsigned: what
    ``sklearn.utils.murmurhash3_32(token, 0, True)`` gives for the token's UTF-8.

    In 64-bit unsigned arithmetic masked to 32 bits (numba would widen mixed
    32-bit operations to float).
    """
    h = np.uint64(0)
    length = end - start
    stop = start + (length & ~3)
    for i in range(start, stop, 4):
        k = (np.uint64(data[i]) | (np.uint64(data[i + 1]) << np.uint64(8))
             | (np.uint64(data[i + 2]) << np.uint64(16))
             | (np.uint64(data[i + 3]) << np.uint64(24)))
        h ^= _mix_block(k)
        h = (_rotl32(h, 13) * np.uint64(5) + np.uint64(0xE6546B64)) & _LOW_32
    tail = length & 3
    if tail:
        k = np.uint64(0)
        if tail == 3:
            k ^= np.uint64(data[stop + 2]) << np.uint64(16)
        if tail >= 2:
            k ^= np.uint64(data[stop + 1]) << np.uint64(8)
        k ^= np.uint64(data[stop])
        h ^= _mix_block(k)
    h ^= np.uint64(length)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _LOW_32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _LOW_32
    h ^= h >> np.uint64(16)
    return h


@njit(cache=True, inline="always")
def _fmix64(k: np.uint64) -> np.uint64:
    k ^= k >> np.uint64(33)
    k *= _FMIX_1
    k ^= k >> np.uint64(33)
    k *= _FMIX_2
    k ^= k >> np.uint64(33)
    return k


@njit(cache=True, inline="always")
def _popcount64(x: np.uint64) -> np.uint64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def token_hashes(data: np.ndarray, start: int, end: int, ascii_classes: np.ndarray,
                 wide_points: np.ndarray, wide_classes: np.ndarray,
                 out: np.ndarray) -> int:
    """Splits ``data[start:end]`` (UTF-8) into tokens and writes each token's
    MurmurHash3 to ``out`` in order; returns how many.

    A token is a run of word characters, or one mark; whitespace only
    separates. ``out`` must hold ``end - start`` hashes (a token has a byte
    at least).
    """
    count = 0
    token = -1  # where the word being read began
    i = start
    while i < end:
        lead = data[i]
        if lead < 0x80:
            width = 1
            kind = ascii_classes[lead]
        else:
            if lead >= 0xF0:
                width = 4
                point = lead & 0x07
            elif lead >= 0xE0:
                width = 3
                point = lead & 0x0F
            else:
                width = 2
                point = lead & 0x1F
            for j in range(i + 1, i + width):
                point = (point << 6) | (data[j] & 0x3F)
            kind = WORD
            at = np.searchsorted(wide_points, point)
            if at < len(wide_points) and wide_points[at] == point:
                kind = wide_classes[at]
        if kind == WORD:
            if token < 0:
                token = i
        else:
            if token >= 0:
                out[count] = murmur3_32(data, token, i)
                count += 1
                token = -1
            if kind == MARK:
                out[count] = murmur3_32(data, i, i + width)
                count += 1
        i += width
    if token >= 0:
        out[count] = murmur3_32(data, token, end)
        count += 1
    return count


@njit(cache=True, inline="always")
def _column(bucket: np.uint64, words: np.ndarray, rank: np.ndarray, n_kept: int,
            n_spare: int) -> np.int64:
    """The column of a bucket (see :class:`~sentiment.text.spec.ColumnMap`).

    A kept bucket's column is its rank among the kept buckets: the kept
    buckets before its 64-bit word of the bitmap (``rank``) plus the set
    bits below it in the word. Any other bucket folds into the spare columns
    after the kept ones, by modulo.
    """
    word = words[bucket >> np.uint64(6)]
    bit = bucket & np.uint64(63)
    if (word >> bit) & np.uint64(1):
        below = word & ((np.uint64(1) << bit) - np.uint64(1))
        return np.int64(rank[bucket >> np.uint64(6)] + np.int64(_popcount64(below)))
    return np.int64(n_kept + np.int64(bucket % np.uint64(n_spare)))


@njit(cache=True)
def gram_buckets(hashes: np.ndarray, low: int, high: int, n_buckets: int,
                 keys: np.ndarray, out: np.ndarray) -> int:
    """The bucket of each n-gram of tokens with these hashes, written to ``out``:
    n-grams of ``low`` tokens first, each length in order of position; returns how many.

    An n-gram's key chains its tokens' hashes, ``k = fmix64(k * C + next)``;
    its bucket is ``fmix64(k + n) % n_buckets``. ``keys`` is scratch space
    as long as ``hashes``.
    """
    count = 0
    n_tokens = len(hashes)
    width = np.uint64(n_buckets)
    keys[:n_tokens] = hashes
    for n in range(1, high + 1):
        size = n_tokens - n + 1
        if size <= 0:
            break
        if n > 1:  # the key of the n-gram at i, from its head's (i + 1 is read later)
            for i in range(size):
                keys[i] = _fmix64(keys[i] * _CHAIN + hashes[i + n - 1])
        if n >= low:
            for i in range(size):
                out[count] = _fmix64(keys[i] + np.uint64(n)) % width
                count += 1
    return count


@njit(cache=True)
def row_column_keys(data: np.ndarray, offsets: np.ndarray, ascii_classes: np.ndarray,
                    wide_points: np.ndarray, wide_classes: np.ndarray, low: int, high: int,
                    n_buckets: int, words: np.ndarray, rank: np.ndarray, n_kept: int,
                    n_columns: int) -> np.ndarray:
    """``row << 32 | column`` for every n-gram of every review, repeats included.

    Review ``d`` is ``data[offsets[d]:offsets[d + 1]]`` (UTF-8). A column is
    the n-gram's bucket mapped by the column map (``words``, ``rank``,
    ``n_kept``), or the bucket itself when ``words`` is empty. Sorted and
    deduplicated (by numpy, whose sort is several times faster than a
    compiled quicksort), the keys are the CSR rows.
    """
    n_docs = len(offsets) - 1
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    hashes = np.empty(longest, dtype=np.uint64)
    scratch = np.empty(longest, dtype=np.uint64)
    keys = np.empty((offsets[n_docs] - offsets[0]) * (high - low + 1), dtype=np.uint64)
    mapped = len(words) > 0
    n_spare = n_columns - n_kept
    count = 0
    for d in range(n_docs):
        n_tokens = token_hashes(data, offsets[d], offsets[d + 1], ascii_classes,
                                wide_points, wide_classes, hashes)
        m = gram_buckets(hashes[:n_tokens], low, high, n_buckets, scratch, keys[count:])
        row = np.uint64(d) << np.uint64(32)
        for j in range(count, count + m):
            column = keys[j]
            if mapped:
                column = np.uint64(_column(column, words, rank, n_kept, n_spare))
            keys[j] = row | column
        count += m
    return keys[:count]


@njit(cache=True)
def csr_of_sorted_keys(keys: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``row << 32 | column`` keys -> CSR ``(indices, indptr)``, repeats dropped."""
    indices = np.empty(len(keys), dtype=np.int32)
    indptr = np.zeros(n_rows + 1, dtype=np.int32)
    nnz = 0
    previous = ~np.uint64(0)
    for key in keys:
        if key != previous:
            indices[nnz] = np.int32(key & _LOW_32)
            indptr[(key >> np.uint64(32)) + np.uint64(1)] += 1
            nnz += 1
            previous = key
    for row in range(n_rows):
        indptr[row + 1] += indptr[row]
    return indices[:nnz], indptr


@njit(cache=True)
def columns_of(buckets: np.ndarray, words: np.ndarray, rank: np.ndarray, n_kept: int,
               n_columns: int) -> np.ndarray:
    """The column of each bucket (int32, same order)."""
    out = np.empty(len(buckets), dtype=np.int32)
    for i in range(len(buckets)):
        out[i] = _column(np.uint64(buckets[i]), words, rank, n_kept, n_columns - n_kept)
    return out


@njit(cache=True)
def finish_rows(indices: np.ndarray, indptr: np.ndarray, weights: np.ndarray,
                n_normed: int, row_norm: bool, data: np.ndarray) -> None:
    """Scales CSR rows' values in place: each by its column's weight (none when
    ``weights`` is empty), then (``row_norm``) each row by the l2 norm of its
    values in columns below ``n_normed`` (a row of none is left as it is).

    Squares are summed in float64 in the order of the values and the norm is
    cast to the values' dtype before dividing, so the result is the bits
    numpy's ``data *= weights[indices]`` then ``bincount``-summed norms give
    (tested); here it takes one pass instead of ten numpy calls.
    """
    weighted = len(weights) > 0
    scale = np.empty(1, dtype=data.dtype)
    for row in range(len(indptr) - 1):
        total = 0.0
        for j in range(indptr[row], indptr[row + 1]):
            if weighted:
                data[j] = data[j] * weights[indices[j]]
            if indices[j] < n_normed:
                value = np.float64(data[j])
                total += value * value  # (what numpy's ** 2 computes)
        if not row_norm:
            continue
        norm = np.sqrt(total)
        scale[0] = norm if norm != 0 else 1.0
        for j in range(indptr[row], indptr[row + 1]):
            data[j] = data[j] / scale[0]
