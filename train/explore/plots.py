"""The report's PNGs, drawn from ``figures.json`` (and the word-cloud weights) only.

Drawing from the JSON rather than from the counters means a chart can never
show a number the JSON does not hold. Sizes and dpi are modest so that the
whole report folder stays well under 2 MB; every random choice (word-cloud
layout and shades) is seeded, so reruns draw the same pixels.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

from train.explore.figures import Clouds
from train.explore.stats import CLASSES, KEEP_NEGATIONS, ORDER_NAMES, RAW, REMOVED, TOP_ORDERS

COLOURS = {"pos": "#1f77b4", "neg": "#d95f02"}  # blue / orange: safe for colour-blindness
HUES = {"pos": 205, "neg": 25}
NAMES = {"pos": "positive", "neg": "negative"}
VARIANT_NAMES = {RAW: "all words", REMOVED: "stopwords removed",
                 KEEP_NEGATIONS: "stopwords removed, negations kept"}
# Every file all_plots can write (those it does not write this run are removed).
PNG_NAMES = frozenset({
    "lengths.png", "coverage.png", "discriminative.png", "discriminative-frequent.png",
    *(f"top-{ORDER_NAMES[n]}.png" for n in TOP_ORDERS),
    *(f"wordcloud-{kind}-{cls}.png" for kind in ("frequency", "discriminative")
      for cls in CLASSES)})
DPI = 80
CLOUD_SIZE = (720, 360)
CLOUD_SEED = 0
CLOUD_COLOURS = 32  # palette PNG: a tenth of the bytes of an RGB one, same look


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": DPI})
    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def lengths(figures: dict[str, Any]) -> bytes:
    """Review length per class, before and after preprocessing, with the sequence length."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    recommended = figures["sequence_length"][REMOVED]["recommended"]
    for ax, variant in zip(axes, (RAW, REMOVED), strict=True):
        hist = figures["review_length"][variant]["histogram"]
        for cls in CLASSES:
            mean = figures["review_length"][variant][cls]["mean"]
            ax.stairs(hist[cls]["counts"], hist["edges"], color=COLOURS[cls], linewidth=1.5,
                      label=f"{NAMES[cls]} (mean {mean:.0f})")
        overflow = sum(hist[cls]["overflow"] for cls in CLASSES)
        ax.set_title(f"Words per review, {VARIANT_NAMES[variant]}\n"
                     f"({overflow:,} reviews of {hist['edges'][-1]:,}+ words not drawn)")
        ax.set_xlabel("words")
        ax.set_ylabel(f"reviews per {hist['bin_width']}-word bin")
        if variant == REMOVED:
            ax.axvline(recommended, color="black", linestyle="--", linewidth=1,
                       label=f"sequence length {recommended}")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def coverage(figures: dict[str, Any]) -> bytes:
    """Share of training tokens covered by the k most frequent words, limit marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, style in ((REMOVED, "-o"), (KEEP_NEGATIONS, ":s")):
        curve = figures["vocabulary"][variant]["curve"]
        ax.plot([p["k"] for p in curve], [p["coverage"] for p in curve], style,
                markersize=4, label=VARIANT_NAMES[variant])
    vocabulary = figures["vocabulary"][REMOVED]
    for target in vocabulary["k_for_coverage"]:
        ax.axhline(float(target), color="grey", linewidth=0.7, linestyle=":")
        ax.annotate(f"{float(target):.0%}", (0, float(target)), xycoords=("axes fraction", "data"),
                    xytext=(3, 2), textcoords="offset points", fontsize=8, color="grey")
    limit = vocabulary["limit"]
    ax.axvline(limit, color="black", linestyle="--", linewidth=1)
    ax.annotate(f"limit {limit:,} words:\n{vocabulary['limit_coverage']:.2%} of tokens",
                (limit, vocabulary["limit_coverage"]), xytext=(25, -70),
                textcoords="offset points", arrowprops={"arrowstyle": "->"})
    ax.set_xscale("log")
    ks = [p["k"] for p in vocabulary["curve"]]
    ax.set_xticks(ks, [f"{k / 1000:,.0f}k" if k >= 1000 else str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("vocabulary: the k most frequent training words (log scale)")
    ax.set_ylabel("share of training tokens covered")
    ax.set_title("Vocabulary coverage")
    ax.legend(loc="lower right", frameon=False)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _png(fig)


def _bar_height(rows: int) -> float:
    return max(2.5, 0.2 * rows + 1.2)


def top_ngrams(figures: dict[str, Any], order: str) -> bytes:
    """The most frequent n-grams of one order, positive and negative side by side."""
    plt = _pyplot()
    tops = figures["top_ngrams"][order]
    rows = max(len(tops[cls]) for cls in CLASSES)
    fig, axes = plt.subplots(1, 2, figsize=(10, _bar_height(rows)))
    for ax, cls in zip(axes, CLASSES, strict=True):
        entries = tops[cls]
        ax.barh(range(len(entries)), [e["count"] for e in entries], color=COLOURS[cls])
        ax.set_yticks(range(len(entries)), [e["ngram"] for e in entries])
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_title(f"{NAMES[cls]} reviews: top {len(entries)} {order}")
        ax.set_xlabel("occurrences in train")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def discriminative(figures: dict[str, Any], variant: str, min_count: int) -> bytes:
    """Log-count ratio of the most positive and most negative unigrams and bigrams."""
    plt = _pyplot()
    lists = figures["discriminative"][variant][f"min_count_{min_count}"]
    rows = max(len(lists[o]["pos"]) + len(lists[o]["neg"]) for o in lists)
    fig, axes = plt.subplots(1, 2, figsize=(10, _bar_height(max(rows, 4)) * 0.8))
    for ax, (order, per_class) in zip(axes, lists.items(), strict=True):
        entries = per_class["pos"] + per_class["neg"][::-1]
        ax.barh(range(len(entries)), [e["r"] for e in entries],
                color=[COLOURS["pos"] if e["r"] > 0 else COLOURS["neg"] for e in entries])
        ax.set_yticks(range(len(entries)), [e["ngram"] for e in entries], fontsize=8)
        ax.set_ylim(max(len(entries), 1) - 0.5, -0.5)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("log-count ratio r (> 0: positive, < 0: negative)")
        ax.set_title(f"{order}: {len(per_class['pos'])} most positive (top), "
                     f"{len(per_class['neg'])} most negative" if entries
                     else f"{order}: none seen {min_count}+ times")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Most discriminative n-grams, seen {min_count}+ times in train "
                 f"({VARIANT_NAMES[variant]})")
    fig.tight_layout()
    return _png(fig)


def _shades(cls: str) -> Callable[..., str]:
    """One hue per class, darker or lighter at random (the cloud's own seeded generator)."""
    hue = HUES[cls]

    def colour(*args: Any, random_state: random.Random | None = None, **kwargs: Any) -> str:
        rng = random_state or random.Random(CLOUD_SEED)
        return f"hsl({hue}, 80%, {rng.randint(22, 45)}%)"

    return colour


def word_cloud(weights: dict[str, float], cls: str) -> bytes | None:
    """A word cloud of word -> weight (None when there is no word to draw)."""
    if not weights:
        return None
    from wordcloud import WordCloud

    width, height = CLOUD_SIZE
    cloud = WordCloud(width=width, height=height, background_color="white",
                      max_words=len(weights), random_state=CLOUD_SEED, color_func=_shades(cls),
                      prefer_horizontal=0.9, relative_scaling=0.5)
    image = cloud.generate_from_frequencies(weights).to_image()
    buffer = io.BytesIO()
    image.quantize(CLOUD_COLOURS).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def all_plots(figures: dict[str, Any], clouds: Clouds) -> dict[str, bytes]:
    """File name -> PNG bytes, for every chart of the report (clouds with no word left out)."""
    from train.explore.stats import FREQUENT_MIN_COUNT, MIN_COUNT

    pngs = {"lengths.png": lengths(figures), "coverage.png": coverage(figures)}
    for order in figures["top_ngrams"]:
        pngs[f"top-{order}.png"] = top_ngrams(figures, order)
    pngs["discriminative.png"] = discriminative(figures, REMOVED, MIN_COUNT)
    pngs["discriminative-frequent.png"] = discriminative(figures, KEEP_NEGATIONS,
                                                         FREQUENT_MIN_COUNT)
    for kind, weights in (("frequency", clouds.frequency),
                          ("discriminative", clouds.discriminative)):
        for cls in CLASSES:
            png = word_cloud(weights[cls], cls)
            if png is not None:
                pngs[f"wordcloud-{kind}-{cls}.png"] = png
    return pngs
