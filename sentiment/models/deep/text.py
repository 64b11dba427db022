"""Review text -> word indices for the Keras models: shared by training and serving.

No Keras here: training builds the vocabulary and encodes the corpus with this
module, the app encodes reviews with it, and neither may touch the backend
before it has been set up (:mod:`.backend`). The preprocessing is the one the
exploration measured (``python -m train.explore``, reports/explore): lowercase,
HTML tags to spaces, typographic apostrophes to ``'``, words as runs of letters
and digits joined by inner apostrophes ("don't" stays one word), then an
optional stopword list.

A :class:`Vocabulary` maps the most frequent training words to indices 2...;
0 is padding and 1 any other word. It is saved as ``vocabulary.json`` with
everything encoding depends on (stopwords, sequence length, which end of a long
review is kept), so a model folder encodes reviews exactly as in training.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

PAD, OOV = 0, 1
FIRST_WORD = 2
FORMAT = "sentiment-deep-vocabulary/1"

HTML_TAG = re.compile(r"<[^>]*>")
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})

Keep = Literal["first", "last"]

# A stored row (see Vocabulary.encode_rows): the vocabulary's fingerprint, then
# the index width in bytes, the number of indices and their CRC-32, then the
# indices of the review's kept words (no padding).
FINGERPRINT_BYTES = 8
ROW_HEADER = struct.Struct("<BHI")
INDICES_OFFSET = FINGERPRINT_BYTES + ROW_HEADER.size


def words(text: str) -> list[str]:
    """The review's words before any stopword is removed (lowercased, tags stripped)."""
    return WORD.findall(HTML_TAG.sub(" ", text.lower()).translate(APOSTROPHES))


@dataclass(frozen=True)
class Vocabulary:
    """Words -> indices, with the settings that make encoding reproducible.

    ``keep``: which end of a review longer than ``seq_len`` words is kept. Rows
    are the kept words' indices followed by padding (index 0).
    """

    words: tuple[str, ...]
    seq_len: int
    stopwords: frozenset[str] = frozenset()
    keep: Keep = "first"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _fingerprint: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {self.seq_len}")
        if self.keep not in ("first", "last"):
            raise ValueError(f"keep must be 'first' or 'last', got {self.keep!r}")
        index = {w: i for i, w in enumerate(self.words, FIRST_WORD)}
        if len(index) != len(self.words):
            raise ValueError("the vocabulary lists a word twice")
        object.__setattr__(self, "_index", index)
        # Hashing the JSON of 20,000 words takes milliseconds: once, not per row.
        fingerprint = hashlib.sha256(self.to_json_bytes()).digest()[:FINGERPRINT_BYTES]
        object.__setattr__(self, "_fingerprint", fingerprint)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], limit: int, seq_len: int,
              stopwords: Iterable[str] = (), keep: Keep = "first") -> Vocabulary:
        """The ``limit`` most frequent words of ``token_lists`` (already without stopwords).

        Ties are broken by the word itself, so the same corpus always gives the
        same indices whatever the order of the counting.
        """
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls(tuple(w for w, _ in ranked[:limit]), seq_len, frozenset(stopwords), keep)

    @property
    def size(self) -> int:
        """Rows of the embedding matrix: the words plus padding and out-of-vocabulary."""
        return len(self.words) + FIRST_WORD

    # -- text -> tokens -> indices ----------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The words the model reads, stopwords removed (not yet cut to ``seq_len``)."""
        stop = self.stopwords
        tokens = words(text)
        return [t for t in tokens if t not in stop] if stop else tokens

    def kept(self, tokens: Sequence[str]) -> tuple[int, int]:
        """(start, stop) of the tokens a row holds: ``seq_len`` of them, from the kept end."""
        if len(tokens) <= self.seq_len:
            return 0, len(tokens)
        if self.keep == "first":
            return 0, self.seq_len
        return len(tokens) - self.seq_len, len(tokens)

    def indices(self, tokens: Sequence[str]) -> list[int]:
        """The indices of the kept tokens (no padding)."""
        start, stop = self.kept(tokens)
        get = self._index.get
        return [get(t, OOV) for t in tokens[start:stop]]

    def encode(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Padded int32 rows, one per review: shape (reviews, ``seq_len``)."""
        X = np.zeros((len(token_lists), self.seq_len), dtype=np.int32)
        for row, tokens in zip(X, token_lists, strict=True):
            ids = self.indices(tokens)
            row[:len(ids)] = ids
        return X

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode([self.tokenize(t) for t in texts])

    # -- rows stored with predictions --------------------------------------
    @property
    def fingerprint(self) -> bytes:
        """Identifies the encoding: equal fingerprints encode every text alike."""
        return self._fingerprint

    def encode_rows(self, X: np.ndarray) -> list[bytes | None]:
        """Each row as fingerprint, header and its non-padding indices (2 bytes each with
        up to 65,536 words): about 250 bytes for a review of average length, a fifth
        of the padded row."""
        width = 2 if self.size <= 0x10000 else 4
        fingerprint = self.fingerprint
        out: list[bytes | None] = []
        for row in X:
            n = int(np.count_nonzero(row))
            payload = row[:n].astype(f"<u{width}").tobytes()
            out.append(fingerprint + ROW_HEADER.pack(width, n, zlib.crc32(payload)) + payload)
        return out

    def decode_rows(self, rows: Sequence[bytes | None]) -> np.ndarray | None:
        """The padded rows :meth:`encode_rows` stored, or None if any is unusable.

        Unusable: missing, made with another vocabulary or encoding, or damaged.
        The result equals :meth:`transform` of the texts bit for bit (tested).
        """
        if not rows:
            return None
        fingerprint = self.fingerprint
        X = np.zeros((len(rows), self.seq_len), dtype=np.int32)
        for i, row in enumerate(rows):
            if row is None or len(row) < INDICES_OFFSET or row[:FINGERPRINT_BYTES] != fingerprint:
                return None
            width, n, crc = ROW_HEADER.unpack_from(row, FINGERPRINT_BYTES)
            payload = memoryview(row)[INDICES_OFFSET:]
            if width not in (2, 4) or len(payload) != n * width or n > self.seq_len \
                    or zlib.crc32(payload) != crc:
                return None
            ids = np.frombuffer(row, dtype=f"<u{width}", offset=INDICES_OFFSET)
            if n and (ids.min() < OOV or ids.max() >= self.size):
                return None  # padding inside a row, or a word this vocabulary lacks
            X[i, :n] = ids
        return X

    # -- saving ------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "preprocessing": "lowercase; HTML tags to spaces; typographic apostrophes to "
                             "'; words: " + WORD.pattern + "; stopwords removed",
            "pad": PAD, "oov": OOV,
            "seq_len": self.seq_len,
            "keep": self.keep,
            "stopwords": sorted(self.stopwords),
            "words": list(self.words),
        }

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
                + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a vocabulary of format {FORMAT}: {data.get('format')!r}")
        return cls(tuple(data["words"]), int(data["seq_len"]), frozenset(data["stopwords"]),
                   data["keep"])

    @classmethod
    def from_bytes(cls, data: bytes) -> Vocabulary:
        try:
            return cls.from_json(json.loads(data))
        except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"unreadable vocabulary: {exc}") from exc
