"""The tutorial's contract: ``from vectorizer import vect`` gives the committed model's vectorizer.

::

    import pickle
    from vectorizer import vect
    clf = pickle.load(open("pkl_objects/classifier.pkl", "rb"))
    clf.predict_proba(vect.transform(["I love this movie"]))

The feature pipeline itself lives in :mod:`sentiment.text`, shared by training
and serving.
"""

from __future__ import annotations

from typing import Any

from sentiment.text.vectorizer import PKL_DIR, ReviewVectorizer, load_vectorizer

__all__ = ["PKL_DIR", "ReviewVectorizer", "load_vectorizer", "vect"]


def __getattr__(name: str) -> Any:
    # ``vect`` is built on first use, so importing this module never needs
    # pkl_objects/ (training imports the pipeline before any pickle exists).
    if name == "vect":
        global vect
        vect = load_vectorizer()
        return vect
    raise AttributeError(name)
