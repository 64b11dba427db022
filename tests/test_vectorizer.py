"""The tokenizer and vectorizer: what training and serving must agree on."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

from sentiment.text.ngrams import WordNGrams
from sentiment.text.spec import ColumnMap, VectorizerSpec
from sentiment.text.tokenizer import (
    PUNCTUATION,
    PUNCTUATION_MARKS,
    Tokenizer,
    without_negations,
)
from sentiment.text.vectorizer import (
    FINGERPRINT_BYTES,
    PKL_DIR,
    STORED_HEADER,
    ReviewVectorizer,
    load_vectorizer,
)
from tests.fakes import make_reviews
from tests.tiny_aclimdb import ROOT, TrainedRun

pytest_plugins = ["tests.train_fixtures"]


# -- tokenizer ------------------------------------------------------------------

def test_html_tags_are_stripped() -> None:
    tokens = Tokenizer()("Great<br /><br />film, <i>truly</i> <a href='x'>fun</a>")
    assert tokens == ["great", "film", "truly", "fun"]


def test_emoticons_are_kept_without_their_nose() -> None:
    tokens = Tokenizer()("Loved it :) but the end ;-( oh well =D")
    assert tokens[-3:] == [":)", ";(", "=D"]
    assert "-" not in "".join(tokens)


def test_words_are_lowercased() -> None:
    assert Tokenizer()("GREAT Movie, Truly") == ["great", "movie", "truly"]


def test_stopwords_are_dropped() -> None:
    tokens = Tokenizer(["the", "is", "a"])("The movie is a gem")
    assert tokens == ["movie", "gem"]


def test_stemming_is_an_option() -> None:
    text = "running runners loved"
    assert Tokenizer()(text) == ["running", "runners", "loved"]
    assert Tokenizer(stem=True)(text) == ["run", "runner", "love"]


def test_emphasis_is_an_option() -> None:
    text = "Awful!!! Really?"
    assert Tokenizer()(text) == ["awful", "really"]
    assert Tokenizer(emphasis=True)(text) == ["awful", "really", "!", "!", "!", "?"]


def test_tokenizer_pickles_with_its_settings() -> None:
    tokenizer = Tokenizer(["the"], stem=True, emphasis=True)
    twin = pickle.loads(pickle.dumps(tokenizer))
    text = "The runners ran!"
    assert twin(text) == tokenizer(text) == ["runner", "ran", "!"]


def test_punctuation_marks_can_be_tokens_where_they_stand() -> None:
    text = "Bad!! <br />Not good, at all :-) “Meh”"
    tokenizer = Tokenizer(punctuation=True)
    assert tokenizer(text) == ["bad", "!", "!", "not", "good", ",", "at", "all", ":", "-", ")",
                               "“", "meh", "”"]
    assert Tokenizer(["at", "!"], punctuation=True)("at all!") == ["all"]
    assert pickle.loads(pickle.dumps(tokenizer))(text) == tokenizer(text)


@given(st.text(alphabet=st.sampled_from(list(PUNCTUATION_MARKS + "aZé İß ΣΟ\n\t<>br/ 12")),
               max_size=80))
def test_punctuation_is_spaced_as_a_regex_substitution_would(text: str) -> None:
    """The tokens as the substitution r" \\1 " over the marks gave them (the tokenizer
    now splits and joins, faster, and must not change a feature)."""
    html_free = re.sub(r"<[^>]*>", " ", text)
    assert Tokenizer(punctuation=True)(text) == \
        PUNCTUATION.sub(r" \1 ", html_free.lower()).split()


def test_negations_survive_the_n_gram_stopword_list() -> None:
    kept = without_negations(["the", "not", "no", "nor", "didn", "didn't", "a", "t"])
    assert kept == ["a", "the"]


# -- vectorizer -----------------------------------------------------------------

def test_transform_is_raw_counts_then_finish() -> None:
    spec = VectorizerSpec(n_features=2**12, ngram_range=(1, 2), binary=True,
                          alternate_sign=False, hasher_norm=None,
                          feature_weights="w.npy", row_norm=True, dtype="float32")
    weights = np.linspace(0.1, 2.0, spec.n_features).astype(np.float32)
    vect = ReviewVectorizer(spec, [], weights)
    docs = ["A wonderful, moving film :)", "Boring. Boring! A waste of time"]
    X = vect.transform(docs)
    assert X.dtype == np.float32
    np.testing.assert_allclose(np.sqrt(X.multiply(X).sum(axis=1)).A1, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(X.toarray(), vect.finish(vect.raw_counts(docs)).toarray())


@pytest.mark.parametrize("spec", [
    VectorizerSpec(),  # the book preset's: signed counts, l2 norm by the hasher
    VectorizerSpec(n_features=2**20, ngram_range=(1, 3), binary=True, alternate_sign=False,
                   hasher_norm=None, dtype="float32"),
    VectorizerSpec(n_features=2**20, ngram_range=(1, 3), binary=True, alternate_sign=False,
                   hasher_norm=None, punctuation=True, dtype="float32"),
], ids=["book", "trigrams", "trigrams with punctuation"])
def test_hashing_n_gram_strings_equals_sklearn_hashing_their_text(spec: VectorizerSpec) -> None:
    """With ``ngram_hashing="strings"``, raw_counts builds each review's n-grams and hashes
    them; it must be bit for bit what sklearn's HashingVectorizer with our tokenizer gives
    for the text."""
    vect = ReviewVectorizer(spec, ["the", "a"])
    docs = [t for t, _ in make_reviews(60)] + [
        "", "!!!!", "Two words", "One", "Not bad at all, a joyous étude :) 漢字 <b>bold</b> didn't",
        "good good good good, the the the end :-)",
    ]
    X = vect.raw_counts(docs)
    sklearns = HashingVectorizer(
        tokenizer=vect.tokenizer, token_pattern=None, lowercase=False,
        ngram_range=spec.ngram_range, n_features=spec.n_features, binary=spec.binary,
        alternate_sign=spec.alternate_sign, norm=spec.hasher_norm, dtype=np.dtype(spec.dtype))
    for ngram_range in ((1, 1), (1, 2), (2, 3), (1, 3)):
        sklearns.set_params(ngram_range=ngram_range)
        ours = WordNGrams(ngram_range)
        assert [ours(vect.tokenize(doc)) for doc in docs] == [
            sklearns.build_analyzer()(doc) for doc in docs]
    sklearns.set_params(ngram_range=spec.ngram_range)
    expected = sklearns.transform(docs)
    assert X.dtype == expected.dtype
    for part in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(X, part), getattr(expected, part))
    tokens = [vect.tokenize(doc) for doc in docs]
    assert (vect.transform_tokens(tokens) != vect.transform(docs)).nnz == 0
    with pytest.raises(TypeError, match="wrap it in a list"):
        vect.transform(docs[0])  # sklearn refuses a bare string too
    trigrams = ["good good good", "good good end", "good end :)"]
    if not spec.punctuation:
        assert list(dict.fromkeys(vect.analyse(docs[-1]))) == ["good", "end", ":)"] + (
            ["good good", "good end", "end :)"] + trigrams if spec.ngram_range == (1, 3) else [])


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 3), (2, 3), (3, 3)])
def test_gram_at_a_position_is_that_n_gram_of_the_list(ngram_range: tuple[int, int]) -> None:
    grams = WordNGrams(ngram_range)
    for tokens in ([], ["one"], ["a", "b"], ["not", "bad", "at", "all", "!", "bad"]):
        expected = grams(tokens)
        assert [grams.gram(tokens, i) for i in range(len(expected))] == expected
        for outside in (len(expected), -1):
            with pytest.raises(IndexError):
                grams.gram(tokens, outside)


def test_gram_columns_place_n_gram_strings_where_the_hasher_does() -> None:
    spec = VectorizerSpec(n_features=2**20, ngram_range=(1, 3), binary=True,
                          alternate_sign=False, hasher_norm=None)
    vect = ReviewVectorizer(spec)
    text = "Not bad at all, a joyous étude :) 漢字 <b>bold</b> didn't " + " ".join(
        f"word{i} and more" for i in range(700))
    tokens = vect.tokenize(text)
    grams = vect.grams(tokens)
    hasher = FeatureHasher(n_features=spec.n_features, input_type="string",
                           alternate_sign=False)
    expected = hasher.transform([[g] for g in grams]).tocsr().indices
    np.testing.assert_array_equal(vect.gram_columns(tokens), expected)


# -- n-grams mixed from their tokens' hashes (the default's) ------------------------------

MIXED = VectorizerSpec(n_features=2**20, ngram_range=(1, 3), binary=True, alternate_sign=False,
                       hasher_norm=None, punctuation=True, ngram_hashing="token_mix",
                       dtype="float32")
AWKWARD = ["", "!!!!", "Two words", "One", "Not bad at all, a joyous étude :) 漢字 <b>bold</b> "
           "didn't", "good good good good, the the the end :-)"]


def reference_bucket(gram: str, n_buckets: int) -> int:
    """The documented rule in plain Python integers: k = fmix64(k * C + next token's
    MurmurHash3), bucket = fmix64(k + n) % n_buckets. Models depend on it never changing."""
    mask = 2**64 - 1

    def fmix64(k: int) -> int:
        k ^= k >> 33
        k = k * 0xFF51AFD7ED558CCD & mask
        k ^= k >> 33
        k = k * 0xC4CEB9FE1A85EC53 & mask
        return k ^ k >> 33

    tokens = gram.split(" ")
    key = murmurhash3_32(tokens[0], 0, True)
    for token in tokens[1:]:
        key = fmix64((key * 0x9E3779B97F4A7C15 + murmurhash3_32(token, 0, True)) & mask)
    return fmix64((key + len(tokens)) & mask) % n_buckets


@pytest.mark.parametrize("stopwords", [[], ["the", "a"]], ids=["text kernel", "token path"])
@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (2, 3), (1, 3)])
def test_mixed_hashing_sets_each_reviews_n_gram_buckets(ngram_range: tuple[int, int],
                                                        stopwords: list[str]) -> None:
    spec = replace(MIXED, ngram_range=ngram_range)
    vect = ReviewVectorizer(spec, stopwords)
    docs = [t for t, _ in make_reviews(40)] + AWKWARD
    X = vect.raw_counts(docs)
    assert X.shape == (len(docs), spec.n_features) and X.dtype == np.float32
    assert X.has_canonical_format and (X.data == 1).all()
    for i, doc in enumerate(docs):
        expected = sorted({reference_bucket(g, spec.n_features) for g in vect.analyse(doc)})
        assert X.indices[X.indptr[i]:X.indptr[i + 1]].tolist() == expected, doc
    tokens = [vect.tokenize(doc) for doc in docs]
    for review in tokens:  # each n-gram's bucket, in order, repeats included
        np.testing.assert_array_equal(
            vect.gram_columns(review),
            [reference_bucket(g, spec.n_features) for g in vect.grams(review)])
    assert_same_csr(vect.raw_counts_of(tokens), X)
    assert_same_csr(vect.raw_counts(docs[::-1]), X[::-1])  # a row ignores its batch
    assert vect.raw_counts([]).shape == (0, spec.n_features)


def test_mixed_hashing_tells_n_grams_of_the_same_tokens_apart() -> None:
    """Order and length both count: "not good" is not "good not", nor "good" a trigram
    of repeats."""
    vect = ReviewVectorizer(MIXED)
    tokens = ["not", "good", "not", "good", "good", "good", "!"]
    grams = vect.grams(tokens)
    columns = vect.gram_columns(tokens)
    assert len(set(columns.tolist())) == len(set(grams)) == 12


@pytest.mark.parametrize("change", [{"binary": False}, {"alternate_sign": True},
                                    {"hasher_norm": "l2"}, {"ngram_hashing": "md5"}])
def test_mixed_hashing_refuses_what_it_cannot_make(change: dict) -> None:
    with pytest.raises(ValueError, match="ngram_hashing"):
        ReviewVectorizer(replace(MIXED, **change))


def test_the_hashing_rule_is_part_of_the_fingerprint() -> None:
    strings = ReviewVectorizer(replace(MIXED, ngram_hashing="strings"))
    assert strings.fingerprint != ReviewVectorizer(MIXED).fingerprint


# -- column selection -------------------------------------------------------------------

SELECTING = VectorizerSpec(n_features=2**10, ngram_range=(1, 2), binary=True,
                           alternate_sign=False, hasher_norm=None, punctuation=True,
                           hashed_features=2**16, columns="columns.npy",
                           feature_weights="w.npy", row_norm=True, dtype="float32")


def selecting_vectorizer(seed: int = 0, ngram_hashing: str = "strings"
                         ) -> tuple[ReviewVectorizer, ReviewVectorizer]:
    """(a vectorizer with a random column map, the same without its map: hash buckets).

    The map keeps 700 random buckets of those the generated reviews use, so
    that reviews have kept and spare columns.
    """
    spec = replace(SELECTING, ngram_hashing=ngram_hashing)
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.1, 2.0, spec.n_features).astype(np.float32)
    buckets_only = ReviewVectorizer(spec, [], weights)
    used = np.unique(buckets_only.raw_counts([t for t, _ in make_reviews(100)]).indices)
    kept = np.sort(rng.choice(used, 700, replace=False))
    columns = ColumnMap(kept, spec.n_features, spec.hashed_features)
    return ReviewVectorizer(spec, [], weights, columns), buckets_only


def test_column_map_ranks_kept_buckets_and_folds_the_rest() -> None:
    vect, _ = selecting_vectorizer()
    columns = vect.columns
    buckets = np.arange(SELECTING.hashed_features)
    mapped = columns(buckets)
    assert mapped.dtype == np.int32
    np.testing.assert_array_equal(mapped[columns.kept], np.arange(700))
    others = np.setdiff1d(buckets, columns.kept)
    np.testing.assert_array_equal(mapped[others], 700 + others % (SELECTING.n_features - 700))
    twin = pickle.loads(pickle.dumps(columns))
    np.testing.assert_array_equal(twin(buckets), mapped)
    for kept in ([5, 3], [3, 3], [2**16], list(range(2**10)), []):
        with pytest.raises(ValueError):
            ColumnMap(np.array(kept), SELECTING.n_features, SELECTING.hashed_features)


@pytest.mark.parametrize("ngram_hashing", ["strings", "token_mix"])
def test_selected_columns_are_the_hashed_buckets_mapped(ngram_hashing: str) -> None:
    """Whether mapped after the rows are built (strings) or before (token_mix)."""
    vect, buckets_only = selecting_vectorizer(ngram_hashing=ngram_hashing)
    docs = [t for t, _ in make_reviews(30)] + ["", "Great!!! :)"]
    X = vect.raw_counts(docs)
    hashed = buckets_only.raw_counts(docs)  # the map unknown: training's first pass
    assert X.shape[1] == SELECTING.n_features and hashed.shape[1] == SELECTING.hashed_features
    assert X.has_canonical_format and (X.data == 1).all()
    for i in range(len(docs)):
        row = hashed.indices[hashed.indptr[i]:hashed.indptr[i + 1]]
        assert X.indices[X.indptr[i]:X.indptr[i + 1]].tolist() == sorted(set(vect.columns(row)))
    assert_same_csr(vect.to_columns(hashed), X)
    tokens = vect.tokenize(docs[0])
    np.testing.assert_array_equal(vect.gram_columns(tokens),
                                  vect.columns(buckets_only.gram_columns(tokens)))
    with pytest.raises(ValueError, match="column map"):
        buckets_only.to_columns(hashed)


def test_spare_columns_stay_out_of_the_row_norm() -> None:
    vect, _ = selecting_vectorizer()
    X = vect.transform([t for t, _ in make_reviews(20)])
    n_kept = vect.columns.n_kept
    for i in range(X.shape[0]):
        data, columns = X.data[X.indptr[i]:X.indptr[i + 1]], X.indices[X.indptr[i]:X.indptr[i + 1]]
        assert (columns < n_kept).any() and (columns >= n_kept).any()
        assert np.linalg.norm(data[columns < n_kept]) == pytest.approx(1.0, rel=1e-6)


def test_stored_columns_name_their_column_map() -> None:
    vect, _ = selecting_vectorizer(seed=0)
    other, _ = selecting_vectorizer(seed=1)
    rows = vect.encode_rows(vect.transform(STORED_TEXTS))
    assert_same_csr(vect.decode_rows(rows), vect.transform(STORED_TEXTS))
    assert other.fingerprint != vect.fingerprint
    assert other.decode_rows(rows) is None


# -- feature columns stored with predictions ------------------------------------------

STORED_TEXTS = [t for t, _ in make_reviews(40)] + [
    "!!!!!!!!!!!!!!!!!!!!",  # no token at all: an empty row
    "Great.",  # two or three columns: gaps wider than 16 bits
    "<b>Not bad</b> at all :) " * 30,
]


def assert_same_csr(a, b) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.data.tobytes() == b.data.tobytes()


def test_stored_columns_give_back_the_features_bit_for_bit() -> None:
    vect = load_vectorizer(PKL_DIR)  # the committed model: 2**20 columns, NB scale, row norm
    X = vect.transform(STORED_TEXTS)
    rows = vect.encode_rows(X)
    assert {row[FINGERPRINT_BYTES] for row in rows} == {2, 4}  # both gap widths are exercised
    assert_same_csr(vect.decode_rows(rows), vect.transform(STORED_TEXTS))
    assert_same_csr(vect.decode_rows(rows[-2:]), vect.transform(STORED_TEXTS[-2:]))


def test_stored_columns_keep_their_format_byte_for_byte() -> None:
    """Rows stored by earlier releases are read back, and later ones by them: each row
    is the fingerprint, the width and CRC-32 of its gaps, then the gaps, as written
    here one row at a time (the encoder now computes every row's gaps at once)."""
    vect = load_vectorizer(PKL_DIR)
    X = vect.transform(STORED_TEXTS)
    expected = []
    for start, end in zip(X.indptr[:-1], X.indptr[1:], strict=True):
        columns = X.indices[start:end]
        gaps = np.diff(columns, prepend=0)
        width = 2 if end == start or gaps.max() <= 0xFFFF else 4
        payload = gaps.astype(f"<u{width}").tobytes()
        expected.append(vect.fingerprint + STORED_HEADER.pack(width, zlib.crc32(payload))
                        + payload)
    assert vect.encode_rows(X) == expected
    assert vect.encode_rows(X[-1:]) == expected[-1:] and vect.encode_rows(X[:0]) == []


def test_unusable_stored_columns_are_refused() -> None:
    vect = load_vectorizer(PKL_DIR)
    good = vect.encode_rows(vect.transform(STORED_TEXTS[:2]))
    assert vect.decode_rows(good) is not None
    other = ReviewVectorizer(vect.spec, ["movie"], vect.weights)  # other stopwords
    assert other.fingerprint != vect.fingerprint
    assert other.decode_rows(good) is None

    def stored(gaps: list[int], width: int = 4) -> bytes:  # well formed, whatever the gaps
        payload = np.array(gaps, f"<u{width}").tobytes()
        return vect.fingerprint + STORED_HEADER.pack(width, zlib.crc32(payload)) + payload

    assert vect.decode_rows([stored([3, 5, 7])]) is not None
    row = good[0]
    flipped = row[:-1] + bytes([row[-1] ^ 1])
    bad_width = row[:FINGERPRINT_BYTES] + b"\x03" + row[FINGERPRINT_BYTES + 1:]
    for damaged in (None, row[:-2], flipped, bad_width,
                    stored([3, 0, 7]),  # a column twice
                    stored([vect.spec.n_features])):  # beyond the last column
        assert vect.decode_rows([good[1], damaged]) is None


def test_only_binary_columns_are_stored() -> None:
    vect = ReviewVectorizer(VectorizerSpec(n_features=2**12))  # the book's: counts, signs, l2
    X = vect.transform(STORED_TEXTS[:3])
    assert vect.encode_rows(X) == [None, None, None]
    assert vect.decode_rows([None]) is None


# -- a saved model, reloaded in a fresh process -----------------------------------

RELOAD = """
import pickle, sys
from pathlib import Path
{load}
clf = pickle.load(open(Path({folder!r}) / "classifier.pkl", "rb"))
for text in ("I love this movie", "This movie was awful, boring and terrible"):
    proba = clf.predict_proba(vect.transform([text]))[0, 1]
    print(f"{{proba:.4f}}\\t{{text}}")
"""


def _classify_in_fresh_process(load: str, folder: Path, cwd: Path) -> list[float]:
    code = RELOAD.format(load=load, folder=str(folder))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    return [float(line.split("\t")[0]) for line in done.stdout.splitlines()]


def test_trained_model_reloads_in_a_fresh_process(
    trained: dict[str, TrainedRun], tmp_path: Path
) -> None:
    folder = trained["default"].out
    load = f"from vectorizer import load_vectorizer\nvect = load_vectorizer(Path({str(folder)!r}))"
    positive, negative = _classify_in_fresh_process(load, folder, tmp_path)
    assert positive > 0.5 > negative


def test_committed_model_reloads_with_from_vectorizer_import_vect(tmp_path: Path) -> None:
    folder = ROOT / "pkl_objects"
    if not (folder / "manifest.json").is_file():
        pytest.skip("no pkl_objects/ in this checkout yet (run `python -m train`)")
    # cwd elsewhere: vect must find pkl_objects/ beside vectorizer.py, not in the cwd.
    positive, negative = _classify_in_fresh_process("from vectorizer import vect", folder, tmp_path)
    assert positive > 0.5 > negative


def test_load_vectorizer_matches_the_training_vectorizer(trained: dict[str, TrainedRun]) -> None:
    run = trained["book"]
    vect = load_vectorizer(run.out)
    assert vect.spec == run.preset.vectorizer
    assert "the" in vect.tokenizer.stopwords  # NLTK's list travelled in stopwords.pkl
