"""The review as the results page shows it: each deciding word marked with its push.

People read an explanation in the text itself (as LIME's and SHAP's text plots
show it), not as a list. The model explains in phrases ("not good", "waste of
time") with a push each; a phrase's push is shared among its words, a word's
shares add up over the phrases it is in, and every occurrence of the word in
the review is marked with the total: its sign picks the colour, its size
relative to the strongest word the intensity.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# Words as the reader sees them: letters and digits, joined by inner apostrophes.
WORD = re.compile(r"\w+(?:['’]\w+)*")
WORDS_AND_GAPS = re.compile(f"({WORD.pattern})")  # split: gap, word, gap, ..., gap
# Marks lighter than this are not worth a colour (rounding noise of a weak phrase).
FAINTEST = 0.12


@dataclass(frozen=True)
class Segment:
    """A run of the review: a marked word (``push`` set) or the text between."""

    text: str
    push: float | None = None
    strength: float = 0.0  # |push| relative to the strongest word, in (0, 1]

    @property
    def towards(self) -> str:
        return "positive" if (self.push or 0.0) > 0 else "negative"

    @property
    def level(self) -> int:
        """The strength in four steps, 1 to 4: a class each (the page's Content-Security-
        Policy allows no inline style)."""
        return max(1, min(4, int(self.strength * 4 + 0.999)))


def word_pushes(explanation: list[tuple[str, float]]) -> dict[str, float]:
    """Each explained word (lowercased) and its share of the phrases it is in."""
    pushes: dict[str, float] = {}
    for phrase, push in explanation:
        words = [w.lower() for w in WORD.findall(phrase)]
        for word in words:
            pushes[word] = pushes.get(word, 0.0) + push / len(words)
    return pushes


def highlighted(review: str, explanation: list[tuple[str, float]]) -> list[Segment]:
    """``review`` cut into segments, its explained words marked; joined, the segments
    are the review again, character for character."""
    pushes = word_pushes(explanation)
    strongest = max((abs(p) for p in pushes.values()), default=0.0)
    marked = {word: push for word, push in pushes.items()
              if push and abs(push) >= FAINTEST * strongest}
    if not marked:
        return [Segment(review)] if review else []
    # Words are looked up as word_pushes spells them: lowercased, with straight
    # apostrophes. The review is folded and cut into words at once (in C: a long
    # review's hundreds of words cost the page more in a Python loop than the
    # rest of its marking); a folding that changes the length (a few rare
    # letters do) falls back to folding word by word, where positions hold.
    folded = review.lower().replace("’", "'")
    if len(folded) != len(review):
        parts = WORDS_AND_GAPS.split(review)
        words = [w.lower().replace("’", "'") for w in parts[1::2]]
    else:
        parts = WORDS_AND_GAPS.split(folded)
        words = parts[1::2]
    # parts alternates gap, word, gap, ...: word i is parts[2 * i + 1].
    hits = [i for i, word in enumerate(words) if word in marked]
    if not hits:
        return [Segment(review)] if review else []
    starts = list(itertools.accumulate(map(len, parts), initial=0))
    segments: list[Segment] = []
    at = 0
    for i in hits:
        start, end = starts[2 * i + 1], starts[2 * i + 2]
        if start > at:
            segments.append(Segment(review[at:start]))
        push = marked[words[i]]
        segments.append(Segment(review[start:end], push, abs(push) / strongest))
        at = end
    if at < len(review):
        segments.append(Segment(review[at:]))
    return segments


def as_html(segments: list[Segment]) -> Markup:
    """The segments as the page shows them, each marked word a ``<mark>`` with its
    direction in words (title) and its strength as a class; the text escaped.

    Built here rather than in the template: a Jinja loop over a long review's
    segments cost more than the rest of the results page.
    """
    parts = []
    for segment in segments:
        if segment.push is None:
            parts.append(escape(segment.text))
        else:
            kind = "pos" if segment.push > 0 else "neg"
            parts.append(f'<mark class="{kind} w{segment.level}" title="pushed towards '
                         f'{segment.towards}">{escape(segment.text)}</mark>')
    return Markup("".join(parts))
