"""Generated movie reviews with an obvious sentiment: load for benchmarks, data for tests.

Real reviews would make a load test depend on the dataset; these carry the same
shape (several sentences, HTML line breaks, emoticons) and a label any sane
model learns from a few hundred examples. The tests build their fixtures from
them too (tests/fakes.py).
"""

from __future__ import annotations

import random

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
