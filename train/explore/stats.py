"""One streaming pass of counting over the archive, and the figures derived from the counts.

Memory is bounded by the counters (distinct lengths and distinct n-grams),
never by the number of reviews: each review is tokenized, counted and
dropped. Every figure of the report is computed here from those counters,
with ties broken by the n-gram's text so that two runs agree byte for byte.
"""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from train.data import Review

CLASSES = ("pos", "neg")  # aclImdb's folder names; label 1 and label 0
CLASS_OF_LABEL = {1: "pos", 0: "neg"}
# How a review becomes the token sequence a deep model reads. "raw" is every
# token; the brief's recipe drops NLTK's stopwords; keeping the negations
# ("not", "no", "never", "nor", the n't forms) is the alternative worth
# measuring because a sequence model can use them ("not good").
RAW = "raw"
REMOVED = "stopwords_removed"
KEEP_NEGATIONS = "keep_negations"
VARIANTS = (REMOVED, KEEP_NEGATIONS)
ORDER_NAMES = {1: "unigrams", 2: "bigrams", 3: "trigrams"}
TOP_ORDERS = (1, 2, 3)  # frequent n-grams, stopwords removed
DISCRIMINATIVE_ORDERS = (1, 2)
# Counted n-gram orders per variant (trigrams only where they are reported).
TRAIN_ORDERS: dict[str, tuple[int, ...]] = {REMOVED: (1, 2, 3), KEEP_NEGATIONS: (1, 2)}
TEST_ORDERS: dict[str, tuple[int, ...]] = {REMOVED: (1,), KEEP_NEGATIONS: (1,)}

COVERAGE_GRID = (1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 100_000)
COVERAGE_TARGETS = (0.90, 0.95, 0.98)
RECOMMENDED_COVERAGE = 0.95
SEQUENCE_QUANTILE = "p95"  # the share of training reviews a sequence holds in full
SEQUENCE_STEP = 50
# n-grams rarer than MIN_COUNT in train get no log-count ratio (chance makes rare ones
# extreme); FREQUENT_MIN_COUNT is the second, stricter list: at 20, names of the
# movies reviewed many times in one class fill the top (see the report).
MIN_COUNT = 20
FREQUENT_MIN_COUNT = 200
MIN_COUNTS = (MIN_COUNT, FREQUENT_MIN_COUNT)
ALPHA = 1.0
QUANTILES = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
HISTOGRAM_BINS = 40
NICE_WIDTHS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000)
OVERLAP_TOP = 100  # how many frequent words per class the "clouds look alike" figure compares
CLOUD_WORDS = 150

HTML_TAG = re.compile(r"<[^>]*>")
# Runs of letters and digits, joined by inner apostrophes: "don't" stays one word.
TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
NEGATIONS = frozenset({"no", "nor", "not", "never"})


def tokenize(text: str) -> list[str]:
    """Lowercase, HTML tags (``<br />``) to spaces, typographic apostrophes to ``'``, words."""
    return TOKEN.findall(HTML_TAG.sub(" ", text.lower()).translate(APOSTROPHES))


def negations(stopwords: Collection[str]) -> frozenset[str]:
    """The stopwords that negate: not/no/never/nor, the n't forms and their stems ("didn")."""
    words = set(stopwords)
    return frozenset(w for w in words
                     if w in NEGATIONS or w.endswith("n't") or f"{w}'t" in words)


def ngrams(tokens: list[str], n: int) -> Iterator[str]:
    """The space-joined n-grams of a token list, in order."""
    if n == 1:
        return iter(tokens)
    return map(" ".join, zip(*(tokens[i:] for i in range(n)), strict=False))


class SplitCounts:
    """Reviews, review lengths and n-grams of one split, per class and variant."""

    def __init__(self, orders: dict[str, tuple[int, ...]]) -> None:
        self.reviews: Counter[str] = Counter()
        self.lengths: dict[str, dict[str, Counter[int]]] = {
            v: {c: Counter() for c in CLASSES} for v in (RAW, *VARIANTS)}
        self.grams: dict[str, dict[int, dict[str, Counter[str]]]] = {
            v: {n: {c: Counter() for c in CLASSES} for n in orders[v]} for v in VARIANTS}

    def add(self, cls: str, raw_length: int, tokens: dict[str, list[str]]) -> None:
        self.reviews[cls] += 1
        self.lengths[RAW][cls][raw_length] += 1
        for variant, words in tokens.items():
            self.lengths[variant][cls][len(words)] += 1
            for n, per_class in self.grams[variant].items():
                per_class[cls].update(ngrams(words, n))

    def unigrams(self, variant: str) -> Counter[str]:
        """Unigram counts of both classes together."""
        return self.grams[variant][1]["pos"] + self.grams[variant][1]["neg"]

    def all_lengths(self, variant: str) -> Counter[int]:
        return self.lengths[variant]["pos"] + self.lengths[variant]["neg"]


class Explorer:
    """Counts the train split (every figure) and the test split (OOV and lengths only)."""

    def __init__(self, stopwords: Collection[str]) -> None:
        stop = frozenset(stopwords)
        self.stopwords = stop
        self.kept_negations = negations(stop)
        self._stop_keeping_negations = stop - self.kept_negations
        self.train = SplitCounts(TRAIN_ORDERS)
        self.test = SplitCounts(TEST_ORDERS)

    def add(self, review: Review) -> None:
        tokens = tokenize(review.review)
        kept = [t for t in tokens if t not in self._stop_keeping_negations]
        removed = [t for t in kept if t not in self.kept_negations]
        split = self.train if review.split == "train" else self.test
        split.add(CLASS_OF_LABEL[review.sentiment], len(tokens),
                  {REMOVED: removed, KEEP_NEGATIONS: kept})


def quantiles(lengths: Counter[int], qs: Sequence[float]) -> list[float]:
    """numpy's default ("linear") percentiles, from a value -> count table instead of an array."""
    values = sorted(lengths)
    cumulative = list(accumulate(lengths[v] for v in values))
    n = cumulative[-1]

    def kth(i: int) -> int:  # the i-th smallest value, 0-based
        return values[bisect_right(cumulative, i)]

    out = []
    for q in qs:
        h = (n - 1) * q
        low = math.floor(h)
        value = float(kth(low))
        if h > low:
            value += (h - low) * (kth(low + 1) - value)
        out.append(value)
    return out


def length_summary(lengths: Counter[int]) -> dict[str, Any]:
    n = sum(lengths.values())
    if n == 0:
        return {"reviews": 0}
    mean = sum(v * c for v, c in lengths.items()) / n
    summary: dict[str, Any] = {"reviews": n, "mean": round(mean, 4)}
    for name, value in zip(QUANTILES, quantiles(lengths, list(QUANTILES.values())), strict=True):
        summary[name] = round(value, 4)
    summary["max"] = max(lengths)
    return summary


def histogram(per_class: dict[str, Counter[int]], p99: float) -> dict[str, Any]:
    """Shared bins for both classes, about HISTOGRAM_BINS up to p99; longer reviews overflow."""
    cap = max(SEQUENCE_STEP, math.ceil(p99 / SEQUENCE_STEP) * SEQUENCE_STEP)
    width = next((w for w in NICE_WIDTHS if w * HISTOGRAM_BINS >= cap), NICE_WIDTHS[-1])
    cap = math.ceil(cap / width) * width
    bins = cap // width
    out: dict[str, Any] = {"bin_width": width, "edges": list(range(0, cap + 1, width))}
    for cls in CLASSES:
        counts = [0] * bins
        overflow = 0
        for length, reviews in per_class[cls].items():
            if length >= cap:
                overflow += reviews
            else:
                counts[length // width] += reviews
        out[cls] = {"counts": counts, "overflow": overflow}
    return out


def top(counter: Counter[str], k: int) -> list[tuple[str, int]]:
    """The k most frequent entries, ties by text (Counter.most_common keeps insertion order)."""
    return heapq.nsmallest(k, counter.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass(frozen=True)
class Ratio:
    term: str
    r: float
    pos: int
    neg: int

    def to_json(self, test: Ratio | None = None) -> dict[str, Any]:
        out = {"ngram": self.term, "r": round(self.r, 4), "pos": self.pos, "neg": self.neg}
        if test is not None:  # the same n-gram counted on the test split
            out.update(test_r=round(test.r, 4), test_pos=test.pos, test_neg=test.neg)
        return out


class LogCountRatio:
    """NBSVM's smoothed log-count ratio r = log((p/|p|1) / (q/|q|1)), p = alpha + counts in pos.

    The norms run over every n-gram of that order seen in train (so r does
    not depend on the reporting threshold); only n-grams seen MIN_COUNT
    times or more are ranked, since rare ones get extreme ratios by chance.
    """

    def __init__(self, pos: Counter[str], neg: Counter[str], alpha: float = ALPHA) -> None:
        self.pos, self.neg, self.alpha = pos, neg, alpha
        vocabulary = len(pos) + sum(1 for term in neg if term not in pos)
        p_norm = sum(pos.values()) + alpha * vocabulary
        q_norm = sum(neg.values()) + alpha * vocabulary
        self._offset = math.log(q_norm / p_norm)

    def ratio(self, term: str) -> Ratio:
        p, q = self.pos.get(term, 0), self.neg.get(term, 0)
        return Ratio(term, math.log((p + self.alpha) / (q + self.alpha)) + self._offset, p, q)

    def ranked(self, k: int, min_count: int = MIN_COUNT) -> dict[str, list[Ratio]]:
        """The k most positive (largest r > 0) and negative (smallest r < 0) frequent n-grams."""
        candidates = [self.ratio(t) for t, c in self.pos.items()
                      if c + self.neg.get(t, 0) >= min_count]
        candidates += [self.ratio(t) for t, c in self.neg.items()
                       if t not in self.pos and c >= min_count]
        positive = [x for x in candidates if x.r > 0]
        negative = [x for x in candidates if x.r < 0]
        return {"pos": heapq.nsmallest(k, positive, key=lambda x: (-x.r, x.term)),
                "neg": heapq.nsmallest(k, negative, key=lambda x: (x.r, x.term))}


def coverage(counts: Counter[str], limit: int | None) -> dict[str, Any]:
    """Share of tokens covered by the k most frequent words, on the grid and at the limit.

    The grid stops below the vocabulary size and ends with "all" (the whole
    vocabulary, coverage 1), so it is increasing in k and in coverage.
    """
    frequencies = sorted(counts.values(), reverse=True)
    cumulative = list(accumulate(frequencies))
    types, tokens = len(frequencies), cumulative[-1]

    def covered(k: int) -> float:
        return cumulative[min(k, types) - 1] / tokens

    grid = [k for k in COVERAGE_GRID if k < types] + [types]
    curve = [{"k": k, "coverage": round(covered(k), 6)} for k in grid]
    curve[-1]["all"] = True
    k_for = {}
    for target in COVERAGE_TARGETS:
        exact = bisect_right(cumulative, target * tokens - 1e-9) + 1
        k_for[f"{target:.2f}"] = {"grid": next(k for k in grid if covered(k) >= target),
                                  "exact": min(exact, types)}
    recommended = k_for[f"{RECOMMENDED_COVERAGE:.2f}"]["grid"]
    used = recommended if limit is None else limit
    return {"types": types, "tokens": tokens, "curve": curve, "k_for_coverage": k_for,
            "recommended_limit": recommended, "limit": used,
            "limit_coverage": round(covered(used), 6),
            "count_at_limit": frequencies[min(used, types) - 1]}


def share_longer(lengths: Counter[int], limit: int) -> float:
    n = sum(lengths.values())
    return round(sum(c for v, c in lengths.items() if v > limit) / n, 6) if n else 0.0


def sequence_length(lengths: Counter[int]) -> dict[str, Any]:
    """p90 and p95 of the preprocessed length; the recommendation is p95 rounded up to 50."""
    p90, p95 = quantiles(lengths, [QUANTILES["p90"], QUANTILES["p95"]])
    chosen = p95 if SEQUENCE_QUANTILE == "p95" else p90
    recommended = max(SEQUENCE_STEP, math.ceil(chosen / SEQUENCE_STEP) * SEQUENCE_STEP)
    return {"p90": round(p90, 4), "p95": round(p95, 4),
            "p90_rounded": max(SEQUENCE_STEP, math.ceil(p90 / SEQUENCE_STEP) * SEQUENCE_STEP),
            "recommended": recommended,
            "train_share_longer": share_longer(lengths, recommended)}


def out_of_vocabulary(train: Counter[str], test: Counter[str], limit: int) -> dict[str, Any]:
    """Share of test tokens outside the top-``limit`` train words, and outside all train words."""
    vocabulary = {term for term, _ in top(train, limit)}
    tokens = sum(test.values())
    outside = sum(c for t, c in test.items() if t not in vocabulary)
    unseen = sum(c for t, c in test.items() if t not in train)
    return {"tokens": tokens, "limit": limit,
            "oov_rate": round(outside / tokens, 6) if tokens else 0.0,
            "unseen_rate": round(unseen / tokens, 6) if tokens else 0.0}
