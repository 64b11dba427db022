# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Review text -> token-mixed n-gram columns, compiled (a C extension built by Cython).

Why compiled: in Python, a review of 1,300 characters spent most of its
~100 us in per-token work (a dictionary look-up for each token's hash, the
regular-expression split that spaces the punctuation marks, numpy calls
whose overhead outweighs their ~300 elements). Here one pass over the
review's UTF-8 bytes splits it into tokens, hashes each with MurmurHash3,
chains the hashes into n-gram keys and maps each bucket to its column, with
no Python object per token.

Why Cython rather than numba: the extension is a 2 MB library built
once at install (the machine's C compiler), where numba's LLVM added about
125 MB to every process's memory and seconds of compiling to the first.

The rules are the ones :class:`~sentiment.text.tokenizer.Tokenizer` and
:class:`~sentiment.text.ngrams.MixedNGramHasher` document, and the tests hold
this code to their plain-Python statement bit for bit, on made-up text of
every Unicode class and on the official test reviews. The interface, with
types, is in ``kernels.pyi``.
"""

import numpy as np

from libc.math cimport sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


cdef extern from *:
    """
    #define SENTIMENT_FMIX_1 0xFF51AFD7ED558CCDULL
    #define SENTIMENT_FMIX_2 0xC4CEB9FE1A85EC53ULL
    #define SENTIMENT_CHAIN 0x9E3779B97F4A7C15ULL
    """
    # MurmurHash3's 64-bit finaliser, and the odd multiplier (2**64 over the
    # golden ratio) that chains a token into the key of the n-gram before it.
    const uint64_t FMIX_1 "SENTIMENT_FMIX_1"
    const uint64_t FMIX_2 "SENTIMENT_FMIX_2"
    const uint64_t CHAIN "SENTIMENT_CHAIN"
    int __builtin_popcountll(unsigned long long) nogil

ctypedef fused index_t:
    int32_t
    int64_t

ctypedef fused value_t:
    float
    double

ctypedef fused weight_t:
    float
    double


# Character classes of :func:`character_classes`, for the C code and (below) Python.
cdef enum:
    _WORD = 0
    _SPACE = 1  # separates tokens (str.split's whitespace)
    _MARK = 2  # a token of its own wherever it stands (a punctuation mark)
WORD, SPACE, MARK = _WORD, _SPACE, _MARK

# str.split() splits on exactly these code points (str.isspace(); tested over
# every code point): the ASCII ones, then the others.
WHITESPACE = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0,
              0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007,
              0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)


def character_classes(marks):
    """The tables the splitter classifies characters with.

    ``ascii``: the class of each code point below 128; ``wide_points`` and
    ``wide_classes``: the non-ASCII code points that are not word
    characters, sorted, with their class. ``marks``: the characters that are
    tokens of their own (empty: only whitespace splits).
    """
    ascii_classes = np.full(128, WORD, dtype=np.uint8)
    wide = {}
    for point, kind in [(ord(m), MARK) for m in marks] + [(w, SPACE) for w in WHITESPACE]:
        if point < 128:
            ascii_classes[point] = kind
        else:
            wide[point] = kind
    points = sorted(wide)
    return (ascii_classes, np.array(points, dtype=np.int64),
            np.array([wide[p] for p in points], dtype=np.uint8))


cdef inline uint32_t _rotl32(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline uint32_t _murmur3(const uint8_t* p, Py_ssize_t length) noexcept nogil:
    """MurmurHash3_x86_32 with seed 0 (C's unsigned arithmetic wraps as it must)."""
    cdef uint32_t h = 0, k
    cdef Py_ssize_t i, blocks = length // 4
    for i in range(blocks):
        k = (<uint32_t>p[4 * i] | (<uint32_t>p[4 * i + 1] << 8)
             | (<uint32_t>p[4 * i + 2] << 16) | (<uint32_t>p[4 * i + 3] << 24))
        k = _rotl32(k * 0xCC9E2D51u, 15) * 0x1B873593u
        h ^= k
        h = _rotl32(h, 13) * 5u + 0xE6546B64u
    cdef const uint8_t* tail = p + 4 * blocks
    cdef int rest = length & 3
    k = 0
    if rest == 3:
        k ^= <uint32_t>tail[2] << 16
    if rest >= 2:
        k ^= <uint32_t>tail[1] << 8
    if rest >= 1:
        k ^= tail[0]
        h ^= _rotl32(k * 0xCC9E2D51u, 15) * 0x1B873593u
    h ^= <uint32_t>length
    h ^= h >> 16
    h *= 0x85EBCA6Bu
    h ^= h >> 13
    h *= 0xC2B2AE35u
    h ^= h >> 16
    return h


def murmur3_32(const uint8_t[::1] data, Py_ssize_t start, Py_ssize_t end):
    """MurmurHash3_x86_32 of ``data[start:end]`` with seed 0, unsigned: what
    ``sklearn.utils.murmurhash3_32(token, 0, True)`` gives for the token's UTF-8."""
    if not 0 <= start <= end <= data.shape[0]:
        raise IndexError("the span is outside the data")
    return _murmur3(&data[0] + start if data.shape[0] else NULL, end - start)


cdef inline uint64_t _fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= FMIX_1
    k ^= k >> 33
    k *= FMIX_2
    k ^= k >> 33
    return k


cdef Py_ssize_t _token_hashes(const uint8_t* data, Py_ssize_t start, Py_ssize_t end,
                              const uint8_t* ascii_classes, const int64_t* wide_points,
                              const uint8_t* wide_classes, Py_ssize_t n_wide,
                              uint64_t* out) noexcept nogil:
    """:func:`token_hashes` on raw pointers (memoryview arguments would cost an
    atomic reference count per call)."""
    cdef Py_ssize_t count = 0, token = -1, i = start, j, width, low, high, middle
    cdef uint8_t lead, kind
    cdef int64_t point
    cdef const uint8_t* base = data
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
            kind = _WORD
            low, high = 0, n_wide  # binary search of the sorted non-word points
            while low < high:
                middle = (low + high) // 2
                if wide_points[middle] < point:
                    low = middle + 1
                else:
                    high = middle
            if low < n_wide and wide_points[low] == point:
                kind = wide_classes[low]
        if kind == _WORD:
            if token < 0:
                token = i
        else:
            if token >= 0:
                out[count] = _murmur3(base + token, i - token)
                count += 1
                token = -1
            if kind == _MARK:
                out[count] = _murmur3(base + i, width)
                count += 1
        i += width
    if token >= 0:
        out[count] = _murmur3(base + token, end - token)
        count += 1
    return count


def token_hashes(const uint8_t[::1] data, Py_ssize_t start, Py_ssize_t end,
                 const uint8_t[::1] ascii_classes, const int64_t[::1] wide_points,
                 const uint8_t[::1] wide_classes, uint64_t[::1] out):
    """Splits ``data[start:end]`` (UTF-8) into tokens and writes each token's
    MurmurHash3 to ``out`` in order; returns how many.

    A token is a run of word characters, or one mark; whitespace only
    separates. ``out`` must hold ``end - start`` hashes (a token has a byte
    at least).
    """
    if not 0 <= start <= end <= data.shape[0] or out.shape[0] < end - start:
        raise IndexError("the span is outside the data, or out is too short")
    _check_classes(ascii_classes, wide_points, wide_classes)
    if end == start:
        return 0
    return _token_hashes(&data[0], start, end, &ascii_classes[0], _first(wide_points),
                         _first_class(wide_classes), wide_points.shape[0], &out[0])


cdef inline const int64_t* _first(const int64_t[::1] values):
    return &values[0] if values.shape[0] else NULL


cdef inline const uint8_t* _first_class(const uint8_t[::1] values):
    return &values[0] if values.shape[0] else NULL


cdef _check_classes(const uint8_t[::1] ascii_classes, const int64_t[::1] wide_points,
                    const uint8_t[::1] wide_classes):
    if ascii_classes.shape[0] != 128 or wide_points.shape[0] != wide_classes.shape[0]:
        raise ValueError("character classes: 128 ASCII ones, then a class per wide point")


cdef Py_ssize_t _gram_buckets(const uint64_t* hashes, Py_ssize_t n_tokens, int low, int high,
                              uint64_t n_buckets, uint64_t* keys,
                              uint64_t* out) noexcept nogil:
    cdef Py_ssize_t count = 0, i, size
    cdef int n
    for i in range(n_tokens):
        keys[i] = hashes[i]
    for n in range(1, high + 1):
        size = n_tokens - n + 1
        if size <= 0:
            break
        if n > 1:  # the key of the n-gram at i, from its head's (i + 1 is read later)
            for i in range(size):
                keys[i] = _fmix64(keys[i] * CHAIN + hashes[i + n - 1])
        if n >= low:
            for i in range(size):
                out[count] = _fmix64(keys[i] + <uint64_t>n) % n_buckets
                count += 1
    return count


def gram_buckets(const uint64_t[::1] hashes, int low, int high, uint64_t n_buckets,
                 uint64_t[::1] keys, uint64_t[::1] out):
    """The bucket of each n-gram of tokens with these hashes, written to ``out``:
    n-grams of ``low`` tokens first, each length in order of position; returns how many.

    An n-gram's key chains its tokens' hashes, ``k = fmix64(k * C + next)``;
    its bucket is ``fmix64(k + n) % n_buckets``. ``keys`` is scratch space
    as long as ``hashes``; ``out`` holds ``len(hashes) * (high - low + 1)``.
    """
    cdef Py_ssize_t n_tokens = hashes.shape[0]
    if n_tokens == 0:
        return 0
    if keys.shape[0] < n_tokens or out.shape[0] < n_tokens * (high - low + 1) or low < 1:
        raise IndexError("keys or out is too short")
    return _gram_buckets(&hashes[0], n_tokens, low, high, n_buckets, &keys[0], &out[0])


cdef inline int64_t _column(uint64_t bucket, const uint64_t* words, const int64_t* rank,
                            int64_t n_kept, uint64_t n_spare) noexcept nogil:
    """The column of a bucket (see :class:`~sentiment.text.spec.ColumnMap`).

    A kept bucket's column is its rank among the kept buckets: the kept
    buckets before its 64-bit word of the bitmap (``rank``) plus the set
    bits below it in the word. Any other bucket folds into the spare columns
    after the kept ones, by modulo.
    """
    cdef uint64_t word = words[bucket >> 6]
    cdef uint64_t bit = bucket & 63
    if (word >> bit) & 1:
        return rank[bucket >> 6] + __builtin_popcountll(word & ((<uint64_t>1 << bit) - 1))
    return n_kept + <int64_t>(bucket % n_spare)


def row_column_keys(const uint8_t[::1] data, const int64_t[::1] offsets,
                    const uint8_t[::1] ascii_classes, const int64_t[::1] wide_points,
                    const uint8_t[::1] wide_classes, int low, int high, uint64_t n_buckets,
                    const uint64_t[::1] words, const int64_t[::1] rank, int64_t n_kept,
                    int64_t n_columns):
    """``row << 32 | column`` for every n-gram of every review, repeats included.

    Review ``d`` is ``data[offsets[d]:offsets[d + 1]]`` (UTF-8). A column is
    the n-gram's bucket mapped by the column map (``words``, ``rank``,
    ``n_kept``), or the bucket itself when ``words`` is empty. Sorted and
    deduplicated (numpy's sort, several times a hand-written quicksort's
    speed, then :func:`csr_of_sorted_keys`), the keys are the CSR rows.
    """
    cdef Py_ssize_t n_docs = offsets.shape[0] - 1, d, j, longest = 0, count = 0, m, n_tokens
    if n_docs < 0 or low < 1 or high < low:
        raise ValueError("offsets must hold one more entry than there are reviews")
    for d in range(n_docs):
        if not 0 <= offsets[d] <= offsets[d + 1] <= data.shape[0]:
            raise IndexError("a review's span is outside the data")
        longest = max(longest, offsets[d + 1] - offsets[d])
    hashes_array = np.empty(max(longest, 1), dtype=np.uint64)
    scratch_array = np.empty(max(longest, 1), dtype=np.uint64)
    total = (offsets[n_docs] - offsets[0]) * (high - low + 1) if n_docs else 0
    keys_array = np.empty(max(total, 1), dtype=np.uint64)
    cdef uint64_t[::1] hashes = hashes_array, scratch = scratch_array, keys = keys_array
    _check_classes(ascii_classes, wide_points, wide_classes)
    cdef bint mapped = words.shape[0] > 0
    if mapped and (rank.shape[0] != words.shape[0] or words.shape[0] * 64 < n_buckets
                   or not 0 < n_kept < n_columns):
        raise ValueError("the column map's tables do not fit these buckets")
    cdef const uint64_t* word_table = &words[0] if mapped else NULL
    cdef const int64_t* rank_table = &rank[0] if mapped else NULL
    cdef const uint8_t* text = &data[0] if data.shape[0] else NULL
    cdef const int64_t* wide = _first(wide_points)
    cdef const uint8_t* wide_kinds = _first_class(wide_classes)
    cdef Py_ssize_t n_wide = wide_points.shape[0]
    cdef uint64_t n_spare = <uint64_t>(n_columns - n_kept), row, column
    with nogil:
        for d in range(n_docs):
            if offsets[d + 1] == offsets[d]:
                continue
            n_tokens = _token_hashes(text, offsets[d], offsets[d + 1], &ascii_classes[0],
                                     wide, wide_kinds, n_wide, &hashes[0])
            m = _gram_buckets(&hashes[0], n_tokens, low, high, n_buckets, &scratch[0],
                              &keys[count])
            row = <uint64_t>d << 32
            for j in range(count, count + m):
                column = keys[j]
                if mapped:
                    column = <uint64_t>_column(column, word_table, rank_table, n_kept,
                                               n_spare)
                keys[j] = row | column
            count += m
    return keys_array[:count]


def csr_of_sorted_keys(const uint64_t[::1] keys, Py_ssize_t n_rows):
    """Sorted ``row << 32 | column`` keys -> CSR ``(indices, indptr)``, repeats dropped."""
    indices_array = np.empty(keys.shape[0], dtype=np.int32)
    indptr_array = np.zeros(n_rows + 1, dtype=np.int32)
    cdef int32_t[::1] indices = indices_array, indptr = indptr_array
    cdef Py_ssize_t nnz = 0, i, row
    cdef uint64_t key, previous = ~(<uint64_t>0)
    for i in range(keys.shape[0]):
        key = keys[i]
        if key >> 32 >= <uint64_t>n_rows:
            raise IndexError("a key's row is outside the rows")
        if key != previous:
            indices[nnz] = <int32_t><uint32_t>key  # the low 32 bits
            indptr[(key >> 32) + 1] += 1
            nnz += 1
            previous = key
    for row in range(n_rows):
        indptr[row + 1] += indptr[row]
    return indices_array[:nnz], indptr_array


def columns_of(const int64_t[::1] buckets, const uint64_t[::1] words, const int64_t[::1] rank,
               int64_t n_kept, int64_t n_columns):
    """The column of each bucket (int32, same order)."""
    out_array = np.empty(buckets.shape[0], dtype=np.int32)
    cdef int32_t[::1] out = out_array
    cdef Py_ssize_t i
    cdef uint64_t limit = <uint64_t>words.shape[0] * 64
    if rank.shape[0] != words.shape[0] or not 0 < n_kept < n_columns:
        raise ValueError("the column map's tables disagree")
    for i in range(buckets.shape[0]):
        if buckets[i] < 0 or <uint64_t>buckets[i] >= limit:
            raise IndexError("a bucket is outside the column map")
        out[i] = <int32_t>_column(<uint64_t>buckets[i], &words[0], &rank[0], n_kept,
                                  <uint64_t>(n_columns - n_kept))
    return out_array


def finish_rows(const index_t[::1] indices, const index_t[::1] indptr,
                const weight_t[::1] weights, Py_ssize_t n_normed, bint row_norm,
                value_t[::1] data):
    """Scales CSR rows' values in place: each by its column's weight (none when
    ``weights`` is empty), then (``row_norm``) each row by the l2 norm of its
    values in columns below ``n_normed`` (a row of none is left as it is).

    Squares are summed in float64 in the order of the values and the norm is
    cast to the values' dtype before dividing, so the result is the bits
    numpy's ``data *= weights[indices]`` then ``bincount``-summed norms give
    (tested); here it takes one pass instead of ten numpy calls.
    """
    cdef bint weighted = weights.shape[0] > 0
    cdef Py_ssize_t row, j
    cdef double total, value, norm
    cdef value_t scale
    if indptr.shape[0] == 0 or indptr[indptr.shape[0] - 1] > data.shape[0] \
            or indices.shape[0] < data.shape[0]:
        raise IndexError("indptr, indices and data disagree")
    for j in range(data.shape[0]):
        if indices[j] < 0 or (weighted and indices[j] >= weights.shape[0]):
            raise IndexError("a column is outside the weights")
    with nogil:
        for row in range(indptr.shape[0] - 1):
            total = 0.0
            for j in range(indptr[row], indptr[row + 1]):
                if weighted:
                    data[j] = <value_t>(data[j] * weights[indices[j]])
                if indices[j] < n_normed:
                    value = <double>data[j]
                    total += value * value  # (what numpy's ** 2 computes)
            if not row_norm:
                continue
            norm = sqrt(total)
            scale = <value_t>(norm if norm != 0 else 1.0)
            for j in range(indptr[row], indptr[row + 1]):
                data[j] = data[j] / scale
