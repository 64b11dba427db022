"""Generated movie reviews with an obvious sentiment, for fast tests.

Real reviews would make unit tests slow and data-dependent; these carry the
same shape (several sentences, HTML line breaks, emoticons) and a label any
sane model learns from a few hundred examples.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["wonderful", "brilliant", "moving", "superb", "delightful", "masterpiece",
            "love", "loved", "enjoyed", "charming", "gripping", "beautiful", "excellent", "great"]
NEGATIVE = ["awful", "boring", "terrible", "dull", "waste", "horrible", "worst",
            "stupid", "tedious", "mess", "bad", "poor", "hated"]
NEUTRAL = ["the", "film", "movie", "plot", "actors", "director", "story", "scene",
           "music", "camera", "ending", "script", "cast", "was", "and", "with", "this"]


def make_review(rng: random.Random, label: int, sentences: int = 4) -> str:
    words = POSITIVE if label else NEGATIVE
    out = []
    for _ in range(sentences):
        sentence = rng.sample(NEUTRAL, 5) + rng.sample(words, 2)
        rng.shuffle(sentence)
        out.append(" ".join(sentence).capitalize() + ".")
    text = " ".join(out)
    if rng.random() < 0.3:
        text += " <br /><br />" + (":)" if label else ":(")
    return text


def make_reviews(n: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(make_review(rng, i % 2), i % 2) for i in range(n)]


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
