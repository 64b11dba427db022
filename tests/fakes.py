"""Generated movie reviews with an obvious sentiment, for fast tests.

Real reviews would make unit tests slow and data-dependent; these carry the
same shape (several sentences, HTML line breaks, emoticons) and a label any
sane model learns from a few hundred examples.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from bench.reviews import NEGATIVE, NEUTRAL, POSITIVE, make_review, make_reviews

__all__ = ["NEGATIVE", "NEUTRAL", "POSITIVE", "make_review", "make_reviews", "write_csv"]


def write_csv(path: Path, n_train: int = 800, n_test: int = 200, seed: int = 0) -> Path:
    """A CSV in the layout train.data.build_csv writes."""
    rows = [(t, y, "train") for t, y in make_reviews(n_train, seed)]
    rows += [(t, y, "test") for t, y in make_reviews(n_test, seed + 1)]
    random.Random(seed).shuffle(rows)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "sentiment", "split", "id"])
        for i, (text, label, split) in enumerate(rows):
            writer.writerow([text, label, split, f"{split}/{i}"])
    return path

# The smallest valid PNG: one transparent pixel.
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
