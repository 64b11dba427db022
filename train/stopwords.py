"""The stopword lists a preset can ask for, read offline from NLTK's data."""

from __future__ import annotations

from sentiment.text.tokenizer import without_negations

CHOICES = ("nltk", "nltk-keep-negations", "none")


class MissingStopwordsError(Exception):
    """NLTK's English stopword list is not installed where NLTK looks."""


def nltk_english() -> list[str]:
    """NLTK's English list, without ever trying the network.

    ``nltk.download`` needs the internet; here the list must already be on
    disk, so a missing list is reported with the one setting that fixes it.
    """
    from nltk.corpus import stopwords

    try:
        return stopwords.words("english")
    except LookupError as exc:
        raise MissingStopwordsError(
            "NLTK's English stopwords are missing: set NLTK_DATA to a folder holding "
            "corpora/stopwords/english (python -m nltk.downloader -d DIR stopwords "
            "on a connected machine)"
        ) from exc


def stopwords_for(choice: str) -> list[str]:
    if choice == "nltk":
        return nltk_english()
    if choice == "nltk-keep-negations":
        return without_negations(nltk_english())
    if choice == "none":
        return []
    raise ValueError(f"unknown stopword choice {choice!r}; expected one of {CHOICES}")
