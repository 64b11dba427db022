"""``report.md``: the figures as short tables, the PNGs, and what they say, in words.

Every number and every claim is taken from ``figures.json`` at write time,
and each sentence that compares numbers picks its wording from the numbers
(longer/shorter, held/did not hold), so the text stays true for any archive,
the tiny test one included. No date or timing goes in, so reruns on the same
archive write the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from train.explore.plots import NAMES, VARIANT_NAMES
from train.explore.stats import CLASSES, KEEP_NEGATIONS, RAW, REMOVED, VARIANTS

TABLE_ROWS = 10  # rows of the n-gram tables; the charts and the JSON hold --top


def _n(x: float) -> str:
    return f"{x:,.1f}".removesuffix(".0")


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _terms(entries: Sequence[dict[str, Any]], k: int = 5) -> str:
    return ", ".join(f'"{e["ngram"]}"' for e in entries[:k]) or "none"


def _image(pngs: Sequence[str], name: str, alt: str) -> str:
    return f"![{alt}]({name})" if name in pngs else f"*({alt}: nothing to draw)*"


def _side_by_side(per_class: dict[str, list[dict[str, Any]]], value: str) -> str:
    rows = []
    for i in range(max(min(len(per_class[c]), TABLE_ROWS) for c in CLASSES)):
        row: list[Any] = [i + 1]
        for cls in CLASSES:
            e = per_class[cls][i] if i < len(per_class[cls]) else None
            cell = e[value] if e else ""
            row += [e["ngram"] if e else "", f"{cell:,}" if isinstance(cell, int) else cell]
        rows.append(row)
    return _table(["#", "positive", value, "negative", value], rows)


def header(figures: dict[str, Any], command: str) -> list[str]:
    archive = figures["archive"]
    sequence = figures["sequence_length"][REMOVED]
    vocabulary = figures["vocabulary"][REMOVED]
    test = figures["test"][REMOVED]
    settings = figures["settings"]
    return [
        "# Data exploration: IMDb movie reviews (aclImdb), train split", "",
        f"Command: `{command}`  ",
        f"Archive: `{archive['name']}` (sha256 `{archive['sha256']}`)", "",
        "Written by `train/explore`; every number here comes from that run and is in "
        "[`figures.json`](figures.json). The train split gives every figure; the test split "
        "only the out-of-vocabulary rate and the share of long reviews.", "",
        "## Summary", "",
        f"- **Vocabulary limit: {vocabulary['limit']:,} words**, covering "
        f"{_pct(vocabulary['limit_coverage'], 2)} of the training tokens"
        + (" (the smallest grid point covering "
           f"{_pct(settings['recommended_coverage'], 0)} of them)."
           if vocabulary["limit"] == vocabulary["recommended_limit"]
           else f" (set with --vocab-limit; {vocabulary['recommended_limit']:,} recommended)."),
        f"- **Sequence length: {sequence['recommended']} tokens**: the "
        f"{settings['sequence_quantile']} of the preprocessed train review length "
        f"({_n(sequence[settings['sequence_quantile']])}) rounded up to a multiple of "
        f"{settings['sequence_step']}; it cuts {_pct(sequence['train_share_longer'])} of train "
        f"and {_pct(test['share_longer'])} of test reviews.",
        f"- **Out of vocabulary on test: {_pct(test['oov_rate'], 2)}** of the tokens fall "
        f"outside those {test['limit']:,} words ({_pct(test['unseen_rate'], 2)} were never "
        "seen in train at all).",
        "- Figures are for the recipe: lowercase, strip HTML, words, NLTK stopwords removed "
        f"({figures['preprocessing']['stopwords']} words); the variant keeping the negations "
        "is reported beside it.", "",
    ]


def _negation_bigrams(figures: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The most negative frequent bigrams (negations kept) holding a negation, and of how many."""
    high = figures["settings"]["min_counts"][1]
    listed = figures["discriminative"][KEEP_NEGATIONS][f"min_count_{high}"]["bigrams"]["neg"]
    words = set(figures["preprocessing"]["negations_kept"])
    return [e for e in listed if words & set(e["ngram"].split())], len(listed)


def _held_rates(figures: dict[str, Any]) -> dict[int, float]:
    """Per min count: the share of listed unigrams (both classes) that hold on test."""
    held = figures["held_on_test"][REMOVED]
    return {m: sum(held[f"min_count_{m}"][c]["held"] for c in CLASSES)
            / max(1, sum(held[f"min_count_{m}"][c]["listed"] for c in CLASSES))
            for m in figures["settings"]["min_counts"]}


def findings(figures: dict[str, Any]) -> list[str]:
    """The few sentences a reader needs, each backed by a table further down."""
    low, high = figures["settings"]["min_counts"]
    lists = figures["discriminative"][KEEP_NEGATIONS]
    chosen = next((m for m in (high, low) if lists[f"min_count_{m}"]["unigrams"]["pos"]), low)
    top = lists[f"min_count_{chosen}"]
    out = ["## What the data shows", ""]
    for cls, kind in (("pos", "praise"), ("neg", "dismissal")):
        out.append(f"- {NAMES[cls].capitalize()} reviews are told apart by {kind}: "
                   f"{_terms(top['unigrams'][cls], 6)}, and {_terms(top['bigrams'][cls], 4)} "
                   f"(highest log-count ratio among n-grams seen {chosen}+ times, section 4).")
    marks = [e for cls in CLASSES for e in top["bigrams"][cls]
             if re.fullmatch(r"\d+ 10", e["ngram"])]
    if marks:
        marks.sort(key=lambda e: -e["r"])
        example = marks[0]["ngram"]
        out.append(f"- Reviewers' own marks out of ten (\"{example.replace(' ', '/')}\" becomes "
                   f"the bigram \"{example}\") are among the strongest bigrams: "
                   + ", ".join(f'"{e["ngram"]}" (r {e["r"]:+.2f})' for e in marks)
                   + ". The labels come from the same ratings, so a model will lean on them "
                   "where a review states one.")
    overlap = figures["frequency_overlap"]
    out.append(f"- Frequency alone does not separate the classes: {overlap['shared']} of the "
               f"{overlap['top']} most frequent words are shared, which is why the frequency "
               "word clouds look alike and the log-count-ratio clouds do not.")
    rates = _held_rates(figures)
    if rates[low] < rates[high]:
        names = _terms(lists[f"min_count_{low}"]["unigrams"]["pos"], 3)
        out.append(f"- With a low threshold ({low}+ occurrences) the most discriminative terms "
                   f"are mostly names from much-reviewed films ({names}...); they do not carry "
                   "over to the test split's other films "
                   f"({_pct(rates[low], 0)} hold on test against {_pct(rates[high], 0)} at "
                   f"{high}+).")
    with_negation, listed = _negation_bigrams(figures)
    leaning = sum(e["r"] < 0 for e in figures["negations"])
    out.append(f"- Negations lean negative ({leaning} of {len(figures['negations'])}) and, kept, "
               f"make {len(with_negation)} of the {listed} most negative frequent bigrams "
               f"({_terms(with_negation, 4)}): keep them for a sequence model.")
    return out + [""]


def class_balance(figures: dict[str, Any]) -> list[str]:
    balance = figures["class_balance"]
    rows = [[split, f"{b['pos']:,}", f"{b['neg']:,}", f"{b['total']:,}", _pct(b["pos_share"])]
            for split, b in balance.items()]
    share = balance["train"]["pos_share"]
    verdict = ("balanced: accuracy is a fair metric and no class weighting is needed"
               if 0.45 <= share <= 0.55 else
               "imbalanced: weight the classes or report balanced accuracy")
    return ["## 1. Class balance", "",
            _table(["split", "positive", "negative", "total", "positive share"], rows), "",
            f"The training split is {verdict}.", ""]


def review_length(figures: dict[str, Any], pngs: Sequence[str]) -> list[str]:
    lengths = figures["review_length"]
    rows = []
    for variant in (RAW, *VARIANTS):
        for cls in (*CLASSES, "all"):
            s = lengths[variant][cls]
            rows.append([VARIANT_NAMES[variant], NAMES.get(cls, "all"),
                         *(_n(s[k]) for k in ("mean", "median", "p90", "p95", "p99", "max"))])
    pos, neg = lengths[RAW]["pos"], lengths[RAW]["neg"]
    ratio = pos["mean"] / neg["mean"] - 1
    longer = ("about as long as" if abs(ratio) < 0.01 else
              f"{_pct(abs(ratio))} {'longer' if ratio > 0 else 'shorter'} on average than")
    both = lengths[REMOVED]["all"]
    tail = (f" The tail is long (after preprocessing, p99 {_n(both['p99'])} and max "
            f"{_n(both['max'])} against a median of {_n(both['median'])}), so a sequence "
            "length near the maximum would be mostly padding."
            if both["p99"] > 2 * both["median"] else "")
    return ["## 2. Review length (words per review)", "",
            _table(["tokens", "class", "mean", "median", "p90", "p95", "p99", "max"], rows), "",
            _image(pngs, "lengths.png", "Review length per class"), "",
            f"Positive reviews are {longer} negative ones ({_n(pos['mean'])} vs "
            f"{_n(neg['mean'])} words; medians {_n(pos['median'])} and {_n(neg['median'])})."
            + tail, ""]


def frequent(figures: dict[str, Any], pngs: Sequence[str]) -> list[str]:
    overlap = figures["frequency_overlap"]
    out = ["## 3. Most frequent n-grams (stopwords removed)", ""]
    for order, per_class in figures["top_ngrams"].items():
        out += [f"### {order.capitalize()}", "", _side_by_side(per_class, "count"), "",
                _image(pngs, f"top-{order}.png", f"Top {order}"), ""]
    out += [f"{overlap['shared']} of the {overlap['top']} most frequent words of positive "
            f"reviews are also among the {overlap['top']} most frequent of negative ones "
            f"({_terms([{'ngram': t} for t in overlap['first_shared']], 6)}...). Raw frequency "
            "mostly shows what reviews are about, not how they judge it, which is why the two "
            "frequency word clouds look alike:", "",
            _image(pngs, "wordcloud-frequency-pos.png", "Frequent words, positive reviews"),
            _image(pngs, "wordcloud-frequency-neg.png", "Frequent words, negative reviews"), ""]
    return out


def _held(figures: dict[str, Any], variant: str, min_count: int) -> str:
    held = figures["held_on_test"][variant][f"min_count_{min_count}"]
    return " and ".join(
        f"{held[c]['held']} of the {held[c]['listed']} most {NAMES[c]}" for c in CLASSES)


def discriminative(figures: dict[str, Any], pngs: Sequence[str]) -> list[str]:
    low, high = figures["settings"]["min_counts"]
    lists = figures["discriminative"]
    out = ["## 4. Discriminative n-grams", "",
           "Ranked by NBSVM's smoothed log-count ratio r = log((p/|p|1) / (q/|q|1)), with "
           f"p and q the counts in positive and negative reviews plus alpha = "
           f"{_n(figures['settings']['alpha'])}; r > 0 leans positive.", ""]
    for variant, min_count, name in ((REMOVED, low, "discriminative.png"),
                                     (KEEP_NEGATIONS, high, "discriminative-frequent.png")):
        out += [f"### Seen {min_count}+ times in train ({VARIANT_NAMES[variant]})", ""]
        for order, per_class in lists[variant][f"min_count_{min_count}"].items():
            out += [f"{order.capitalize()}:", "", _side_by_side(per_class, "r"), ""]
        out += [_image(pngs, name, f"Discriminative n-grams, {min_count}+ times"), "",
                f"On the test split, {_held(figures, variant, min_count)} unigrams of this "
                f"list are seen {min_count}+ times and lean the same way.", ""]
    rate = _held_rates(figures)
    if rate[low] < rate[high]:
        out += [f"At {low}+ occurrences the top of the lists is mostly terms of single "
                f"films ({_terms(lists[REMOVED][f'min_count_{low}']['unigrams']['pos'], 4)}; "
                f"{_terms(lists[REMOVED][f'min_count_{low}']['unigrams']['neg'], 4)}). The "
                "dataset's README caps the reviews per film and says \"the train and test "
                "sets contain a disjoint set of movies\", so such terms tell which film, not "
                f"which sentiment: {_pct(rate[low], 0)} of these unigrams hold on test, against "
                f"{_pct(rate[high], 0)} at {high}+. The {high}+ lists are the sentiment "
                "vocabulary a model should learn.", ""]
    clouds = [name for name in ("wordcloud-discriminative-pos.png",
                                "wordcloud-discriminative-neg.png") if name in pngs]
    if clouds:
        out += [f"Word clouds weighted by |r| (unigrams and bigrams seen {high}+ times, "
                "stopwords removed), unlike the frequency clouds, tell the classes apart:", "",
                _image(pngs, "wordcloud-discriminative-pos.png", "Most positive terms"),
                _image(pngs, "wordcloud-discriminative-neg.png", "Most negative terms"), ""]
    return out + negations(figures)


def negations(figures: dict[str, Any]) -> list[str]:
    rows = [[e["ngram"], f"{e['pos']:,}", f"{e['neg']:,}", e["r"], e["test_r"]]
            for e in figures["negations"][:TABLE_ROWS]]
    leaning = sum(e["r"] < 0 for e in figures["negations"])
    high = figures["settings"]["min_counts"][1]
    with_negation, listed = _negation_bigrams(figures)
    return ["### Negations", "",
            _table(["negation", "positive", "negative", "r (train)", "r (test)"], rows), "",
            f"(The {TABLE_ROWS} most frequent; all are in figures.json.) "
            f"{leaning} of the {len(figures['negations'])} negations seen "
            f"{figures['settings']['min_counts'][0]}+ times lean negative. Kept in the text, "
            f"they form {len(with_negation)} of the {listed} most negative bigrams seen "
            f"{high}+ times ({_terms(with_negation, 6)}), "
            "information the stopword list throws away; a sequence model can read "
            "\"not good\" only if \"not\" is still there.", ""]


def vocabulary(figures: dict[str, Any], pngs: Sequence[str]) -> list[str]:
    vocab = figures["vocabulary"]
    rows = []
    for i, point in enumerate(vocab[REMOVED]["curve"]):
        other = vocab[KEEP_NEGATIONS]["curve"]
        label = f"all ({point['k']:,})" if point.get("all") else f"{point['k']:,}"
        rows.append([label, _pct(point["coverage"], 2),
                     _pct(other[i]["coverage"], 2) if i < len(other) else ""])
    targets = [[_pct(float(t), 0), *(f"{vocab[v]['k_for_coverage'][t]['grid']:,} "
                                     f"(exactly {vocab[v]['k_for_coverage'][t]['exact']:,})"
                                     for v in VARIANTS)]
               for t in vocab[REMOVED]["k_for_coverage"]]
    v = vocab[REMOVED]
    return ["## 5. Vocabulary coverage", "",
            f"The train split has {v['tokens']:,} tokens of {v['types']:,} distinct words "
            "(stopwords removed).", "",
            _table(["k most frequent words", VARIANT_NAMES[REMOVED],
                    VARIANT_NAMES[KEEP_NEGATIONS]], rows), "",
            _table(["coverage", *(f"k ({VARIANT_NAMES[x]})" for x in VARIANTS)], targets), "",
            _image(pngs, "coverage.png", "Vocabulary coverage"), "",
            f"The limit is {v['limit']:,} words ({_pct(v['limit_coverage'], 2)} of tokens). "
            f"The word ranked {v['limit']:,} is seen {v['count_at_limit']:,} times in train; "
            f"the {max(0, v['types'] - v['limit']):,} words past the limit share the other "
            f"{_pct(1 - v['limit_coverage'], 2)} of tokens, while each would cost an embedding "
            "row.", ""]


def sequence_and_test(figures: dict[str, Any]) -> list[str]:
    rows = [[VARIANT_NAMES[v], _n(figures["sequence_length"][v]["p90"]),
             _n(figures["sequence_length"][v]["p95"]), figures["sequence_length"][v]["recommended"],
             _pct(figures["sequence_length"][v]["train_share_longer"]),
             _pct(figures["test"][v]["share_longer"]), f"{figures['test'][v]['limit']:,}",
             _pct(figures["test"][v]["oov_rate"], 2), _pct(figures["test"][v]["unseen_rate"], 2)]
            for v in VARIANTS]
    s = figures["sequence_length"][REMOVED]
    train_cut, test_cut = s["train_share_longer"], figures["test"][REMOVED]["share_longer"]
    cut = (f"On test, {_pct(test_cut)} of reviews are cut against {_pct(train_cut)} in train"
           + (": the splits have similar lengths." if abs(test_cut - train_cut) < 0.01 else "."))
    return ["## 6. Sequence length and the test split", "",
            _table(["tokens", "p90", "p95", "sequence length", "train longer", "test longer",
                    "vocabulary", "test OOV", "test unseen in train"], rows), "",
            f"A sequence of {s['recommended']} tokens holds "
            f"{_pct(1 - s['train_share_longer'])} of training reviews whole "
            f"(p90 would give {s['p90_rounded']}). {cut} The out-of-vocabulary rate is the "
            "share of test tokens a model with this vocabulary sees as the unknown-word token.",
            ""]


def render(figures: dict[str, Any], pngs: Sequence[str], command: str) -> str:
    lines = (header(figures, command) + findings(figures) + class_balance(figures)
             + review_length(figures, pngs) + frequent(figures, pngs)
             + discriminative(figures, pngs) + vocabulary(figures, pngs)
             + sequence_and_test(figures))
    return "\n".join(lines).rstrip() + "\n"
