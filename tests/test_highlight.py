"""The review as the results page marks it: words, pushes, strengths, text kept whole."""

from __future__ import annotations

from sentiment.web.highlight import Segment, highlighted, word_pushes


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
