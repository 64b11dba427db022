"""The compiled text kernels, held to the plain-Python statement of each rule.

The features are a contract: the committed model, every stored snapshot and
every stored row depend on each text reaching exactly the same columns and
values. So each kernel is checked against the Python it replaced (sklearn's
MurmurHash3, the tokenizer, numpy's finishing arithmetic) on made-up text
of every Unicode class, and the committed model against digests of its
features and predictions taken before the kernels existed.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.utils import murmurhash3_32

from bench.pipeline import COMMITTED_DIGESTS, committed_digest
from sentiment.text import kernels
from sentiment.text.ngrams import MixedNGramHasher
from sentiment.text.tokenizer import PUNCTUATION_MARKS, Tokenizer, plain_text
from sentiment.text.vectorizer import ReviewVectorizer
from tests.conftest import SHARED_ARCHIVE
from tests.requires import unavailable
from tests.test_vectorizer import MIXED, reference_bucket

# Text that reaches every branch of the splitter: ASCII words and marks, the
# typographic marks, every kind of whitespace, letters of 2, 3 and 4 UTF-8
# bytes, HTML tags and emoticons.
PIECES = st.sampled_from(
    ["good", "Bad", "NOT", "film's", "étude", "漢字", "😀", "ß", "İ", "<br />", "<b>", ":-)",
     ";)", "=D", "—", "…", "_", "0", "42"]
    + list(PUNCTUATION_MARKS) + [chr(c) for c in kernels.WHITESPACE])
TEXTS = st.lists(PIECES, max_size=40).map("".join) | st.text(max_size=60)


def hashes_of(text: str, marks: str) -> list[int]:
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    out = np.empty(len(data), dtype=np.uint64)
    count = kernels.token_hashes(data, 0, len(data), *kernels.character_classes(marks), out)
    return out[:count].tolist()


def test_whitespace_is_what_str_split_splits_on() -> None:
    split_on = tuple(c for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert split_on == kernels.WHITESPACE


@given(st.binary(max_size=40) | st.text(max_size=20).map(str.encode))
@example(b"")
@example(b"abc")  # each length of tail
@example(b"abcd")
@example(b"abcde")
@example(b"abcdef")
def test_murmur3_is_sklearns(data: bytes) -> None:
    array = np.frombuffer(data, dtype=np.uint8)
    assert kernels.murmur3_32(array, 0, len(array)) == murmurhash3_32(data, 0, True)


@settings(max_examples=300)
@given(TEXTS)
def test_splitting_plain_text_gives_the_tokenizers_tokens(text: str) -> None:
    tokens = Tokenizer(punctuation=True)(text)
    expected = [murmurhash3_32(t, 0, True) for t in tokens]
    assert hashes_of(plain_text(text), PUNCTUATION_MARKS) == expected
    assert hashes_of(" ".join(tokens), "") == expected  # the tokens' own path


@settings(max_examples=200)
@given(st.lists(TEXTS, max_size=6))
def test_rows_of_texts_are_the_rows_of_their_tokens(texts: list[str]) -> None:
    """Both kernels' paths give each review the buckets of the documented rule."""
    vect = ReviewVectorizer(MIXED)
    hasher = MixedNGramHasher(MIXED, MIXED.n_features)
    of_texts = hasher.rows_of_texts([plain_text(t) for t in texts])
    of_tokens = vect.raw_counts_of([vect.tokenize(t) for t in texts])
    assert (of_texts != of_tokens).nnz == 0
    assert of_texts.has_canonical_format and of_tokens.has_canonical_format
    for i, text in enumerate(texts):
        expected = sorted({reference_bucket(g, MIXED.n_features) for g in vect.analyse(text)})
        row = of_texts.indices[of_texts.indptr[i]:of_texts.indptr[i + 1]]
        assert row.tolist() == expected


def test_the_text_path_is_taken_only_by_a_tokenizer_that_splits_plainly() -> None:
    assert ReviewVectorizer(MIXED)._text_hasher is not None
    for change in ({"stopwords": ["the"]}, {"stem": True}, {"emphasis": True},
                   {"punctuation": False}):
        tokenizer_settings = {"punctuation": True, **change}
        assert not Tokenizer(**tokenizer_settings).splits_plainly
    assert ReviewVectorizer(MIXED, ["the"])._text_hasher is None
    assert ReviewVectorizer(replace(MIXED, punctuation=False))._text_hasher is None


def numpy_finish(X: sp.csr_matrix, weights: np.ndarray | None, n_normed: int,
                 row_norm: bool) -> np.ndarray:
    """The vectorizer's finishing arithmetic as numpy did it before the kernel."""
    data = X.data.copy()
    if weights is not None:
        data *= weights[X.indices]
    if row_norm:
        squares = data.astype(np.float64) ** 2
        squares[X.indices >= n_normed] = 0.0
        norms = np.sqrt(np.bincount(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)),
                                    weights=squares, minlength=X.shape[0]))
        norms[norms == 0] = 1.0
        data /= np.repeat(norms, np.diff(X.indptr)).astype(data.dtype)
    return data


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("row_norm", [True, False])
def test_finishing_rows_is_numpys_arithmetic_bit_for_bit(dtype: str, weighted: bool,
                                                        row_norm: bool) -> None:
    rng = np.random.default_rng(7)
    width = 5000
    X = sp.random(300, width, density=0.02, format="csr", dtype=dtype, random_state=rng)
    X.data = rng.choice([1.0, 2.0, 0.5], size=len(X.data)).astype(dtype)
    X = sp.vstack([X, sp.csr_matrix((1, width), dtype=dtype)], format="csr")  # a row of nothing
    weights = rng.uniform(0.01, 3.0, width).astype(dtype) if weighted else None
    expected = numpy_finish(X, weights, 4000, row_norm)
    data = X.data.copy()
    kernels.finish_rows(X.indices, X.indptr,
                        weights if weights is not None else np.zeros(0, dtype=dtype),
                        4000, row_norm, data)
    assert data.tobytes() == expected.tobytes()


@pytest.mark.slow  # reads the real archive: a few seconds
def test_the_committed_models_features_and_predictions_are_unchanged() -> None:
    if not SHARED_ARCHIVE.exists():
        unavailable(f"needs {SHARED_ARCHIVE}")
    from train.data import iter_archive

    texts = []
    for review in iter_archive(SHARED_ARCHIVE):
        if review.split == "test":
            texts.append(review.review)
            if len(texts) == 2000:
                break
    assert committed_digest(texts) == COMMITTED_DIGESTS[2000]
