"""The review as the results page marks it: words, pushes, strengths, text kept whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sentiment.web.highlight import FAINTEST, WORD, Segment, highlighted, word_pushes


def test_a_phrase_push_is_shared_by_its_words_and_words_add_up() -> None:
    pushes = word_pushes([("waste of time", -0.9), ("waste", -0.3), ("Loved", 0.5)])
    assert pushes == {"waste": -0.6, "of": -0.3, "time": -0.3, "loved": 0.5}


def test_the_segments_are_the_review_again_with_its_words_marked() -> None:
    review = "I LOVED it.\n\nBut what a waste of time, don’t go — don't."
    explanation = [("loved", 2.0), ("waste", -1.0), ("don't", -0.5), ("it", 0.01)]
    segments = highlighted(review, explanation)
    assert "".join(s.text for s in segments) == review  # every character, spaces included
    marked = [(s.text, s.towards, s.level) for s in segments if s.push is not None]
    # "it" is too faint to colour; both apostrophes of "don't" are the same word
    assert marked == [("LOVED", "positive", 4), ("waste", "negative", 2),
                      ("don’t", "negative", 1), ("don't", "negative", 1)]


def test_without_an_explanation_the_review_is_one_plain_segment() -> None:
    assert highlighted("Nothing to mark.", []) == [Segment("Nothing to mark.")]


def _word_by_word(review: str, explanation: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The marked words as the page meant them: each word of the review folded alone."""
    pushes = word_pushes(explanation)
    strongest = max((abs(p) for p in pushes.values()), default=0.0)
    out = []
    for match in WORD.finditer(review):
        push = pushes.get(match.group().lower().replace("’", "'"))
        if push and abs(push) >= FAINTEST * strongest:
            out.append((match.group(), push))
    return out


@given(st.lists(st.sampled_from(["Good", "good", "GOOD", "İstanbul", "istanbul", "don’t",
                                 "don't", "ǅemal", "straße", "STRASSE", "bad", "x'good",
                                 " ", ", ", "\n", "—", "é", "Ω"]), max_size=30),
       st.lists(st.tuples(st.sampled_from(["good", "bad", "don't", "i̇stanbul", "straße",
                                           "ǆemal", "good bad"]),
                          st.floats(-2, 2, allow_nan=False)), max_size=5))
def test_folding_the_whole_review_marks_what_folding_each_word_would(parts, explanation):
    review = "".join(parts)
    segments = highlighted(review, explanation)
    assert "".join(s.text for s in segments) == review
    assert [(s.text, s.push) for s in segments if s.push is not None] == \
        _word_by_word(review, explanation)
