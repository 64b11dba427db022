"""Labelled sentences from other domains: ``text<TAB>label`` files, as the shared data has them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The shared data's labelled sentence sets (``NAME_labelled.txt``), beside the checkout.
SENTENCES = ROOT.parent / "shared" / "data" / "sentences"


def read_labelled(path: Path) -> list[tuple[str, int]]:
    """The (text, label) rows of a ``text<TAB>label`` file; other lines are skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        if text and label.strip() in ("0", "1"):
            rows.append((text, int(label)))
    return rows


def set_name(path: Path) -> str:
    """``yelp`` for ``yelp_labelled.txt``."""
    return path.stem.removesuffix("_labelled")
