"""The counts of a pass over the archive -> ``figures.json`` (and the word-cloud weights).

Kept apart from the counting so that the order of the JSON, which two runs
must reproduce exactly, is written down in one place, top to bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from train.explore import stats
from train.explore.stats import (
    CLASSES,
    KEEP_NEGATIONS,
    ORDER_NAMES,
    RAW,
    REMOVED,
    VARIANTS,
    Explorer,
    LogCountRatio,
    Ratio,
)


@dataclass(frozen=True)
class Clouds:
    """Word -> weight per class: raw frequency, and log-count ratio (unigrams and bigrams)."""

    frequency: dict[str, dict[str, float]]
    discriminative: dict[str, dict[str, float]]


def compute(explorer: Explorer, top: int, vocab_limit: int | None,
            archive: dict[str, Any]) -> tuple[dict[str, Any], Clouds]:
    """Every figure of the report, in a fixed key order, floats rounded."""
    train, test = explorer.train, explorer.test
    figures: dict[str, Any] = {
        "archive": archive,
        "preprocessing": {
            "steps": ["lowercase", "HTML tags to spaces", "typographic apostrophes to '",
                      "words: runs of letters/digits joined by inner apostrophes",
                      "NLTK English stopwords removed"],
            "token_pattern": stats.TOKEN.pattern,
            "stopwords": len(explorer.stopwords),
            "negations_kept": sorted(explorer.kept_negations),
        },
        "settings": {
            "top": top, "min_counts": list(stats.MIN_COUNTS), "alpha": stats.ALPHA,
            "coverage_grid": list(stats.COVERAGE_GRID),
            "recommended_coverage": stats.RECOMMENDED_COVERAGE,
            "sequence_quantile": stats.SEQUENCE_QUANTILE,
            "sequence_step": stats.SEQUENCE_STEP,
            "vocab_limit_option": vocab_limit,
        },
        "class_balance": {name: _balance(split.reviews)
                          for name, split in (("train", train), ("test", test))},
        "review_length": {variant: _lengths(train.lengths[variant])
                          for variant in (RAW, *VARIANTS)},
    }
    figures["top_ngrams"] = {
        ORDER_NAMES[n]: {cls: [{"ngram": t, "count": c}
                               for t, c in stats.top(train.grams[REMOVED][n][cls], top)]
                         for cls in CLASSES}
        for n in stats.TOP_ORDERS}
    figures["frequency_overlap"] = _overlap(train.grams[REMOVED][1])

    ratios = {v: {n: LogCountRatio(train.grams[v][n]["pos"], train.grams[v][n]["neg"])
                  for n in stats.DISCRIMINATIVE_ORDERS} for v in VARIANTS}
    on_test = {v: LogCountRatio(test.grams[v][1]["pos"], test.grams[v][1]["neg"])
               for v in VARIANTS}
    ranked = {v: {m: {n: ratios[v][n].ranked(max(top, stats.CLOUD_WORDS), m)
                      for n in ratios[v]} for m in stats.MIN_COUNTS} for v in VARIANTS}
    figures["discriminative"] = {
        v: {f"min_count_{m}": {
            ORDER_NAMES[n]: {cls: [x.to_json(on_test[v].ratio(x.term) if n == 1 else None)
                                   for x in ranked[v][m][n][cls][:top]]
                             for cls in CLASSES}
            for n in stats.DISCRIMINATIVE_ORDERS} for m in stats.MIN_COUNTS}
        for v in VARIANTS}
    figures["held_on_test"] = {
        v: {f"min_count_{m}": {cls: _held(ranked[v][m][1][cls][:top], on_test[v], m)
                               for cls in CLASSES} for m in stats.MIN_COUNTS}
        for v in VARIANTS}
    unigram_ratio = ratios[KEEP_NEGATIONS][1]
    kept = [unigram_ratio.ratio(w) for w in explorer.kept_negations]
    figures["negations"] = [x.to_json(on_test[KEEP_NEGATIONS].ratio(x.term)) for x in sorted(
        (x for x in kept if x.pos + x.neg >= stats.MIN_COUNT),
        key=lambda x: (-(x.pos + x.neg), x.term))]

    figures["vocabulary"] = {v: stats.coverage(train.unigrams(v), vocab_limit) for v in VARIANTS}
    figures["sequence_length"] = {v: stats.sequence_length(train.all_lengths(v))
                                  for v in VARIANTS}
    figures["test"] = {}
    for v in VARIANTS:
        limit = figures["vocabulary"][v]["limit"]
        length = figures["sequence_length"][v]["recommended"]
        figures["test"][v] = {
            **stats.out_of_vocabulary(train.unigrams(v), test.unigrams(v), limit),
            "sequence_length": length,
            "share_longer": stats.share_longer(test.all_lengths(v), length),
        }

    frequency = {cls: {t: float(c) for t, c in stats.top(train.grams[REMOVED][1][cls],
                                                          stats.CLOUD_WORDS)}
                 for cls in CLASSES}
    discriminative: dict[str, dict[str, float]] = {}
    for cls in CLASSES:
        sign = 1.0 if cls == "pos" else -1.0
        terms = [x for n in stats.DISCRIMINATIVE_ORDERS
                 for x in ranked[REMOVED][stats.FREQUENT_MIN_COUNT][n][cls]]
        best = sorted(terms, key=lambda x: (-sign * x.r, x.term))
        discriminative[cls] = {x.term: sign * x.r for x in best[:stats.CLOUD_WORDS]}
    return figures, Clouds(frequency, discriminative)


def _held(listed: list[Ratio], test: LogCountRatio, min_count: int) -> dict[str, int]:
    """How many listed unigrams are as frequent in test and lean the same way there.

    Train and test hold reviews of different movies, so a term that only
    marks one much-reviewed movie (a name) fails this check.
    """
    held = 0
    for x in listed:
        y = test.ratio(x.term)
        held += y.pos + y.neg >= min_count and (y.r > 0) == (x.r > 0)
    return {"listed": len(listed), "held": held}


def _balance(reviews: Any) -> dict[str, Any]:
    total = sum(reviews[c] for c in CLASSES)
    return {**{c: reviews[c] for c in CLASSES}, "total": total,
            "pos_share": round(reviews["pos"] / total, 6) if total else 0.0}


def _lengths(per_class: dict[str, Any]) -> dict[str, Any]:
    both = per_class["pos"] + per_class["neg"]
    out = {cls: stats.length_summary(per_class[cls]) for cls in CLASSES}
    out["all"] = stats.length_summary(both)
    out["histogram"] = stats.histogram(per_class, out["all"]["p99"])
    return out


def _overlap(unigrams: dict[str, Any]) -> dict[str, Any]:
    """How many of each class's most frequent words the other class shares (why clouds match)."""
    tops = {cls: [t for t, _ in stats.top(unigrams[cls], stats.OVERLAP_TOP)] for cls in CLASSES}
    neg = set(tops["neg"])
    shared = [t for t in tops["pos"] if t in neg]
    return {"top": stats.OVERLAP_TOP, "shared": len(shared), "first_shared": shared[:10]}
