"""The tutorial's movie-review app, rebuilt as a baseline for benchmarks: not part of the app.

``python -m bench.serving`` measures our app against the Flask app of
Raschka's *Python Machine Learning*, chapter 9 ("movieclassifier"), in the
same run on the same machine, since figures quoted from another day and
another host compare nothing. This module re-implements that app from a
description of its behaviour, in one file, so that the baseline is served
and timed exactly like ours:

* the book preset's pickles (``classifier.pkl``, ``stopwords.pkl``, written
  by ``python -m train --preset book --out DIR``) and the tutorial's
  ``HashingVectorizer`` with its regex tokenizer;
* at start, before serving, every stored verdict is replayed into the
  classifier with ``partial_fit`` (so start-up grows with the table);
* ``GET /`` the form, ``POST /results`` the prediction page, ``POST /thanks``
  a verdict: one ``partial_fit`` on the shared classifier (no lock) and one
  row written through a fresh SQLite connection;
* waitress with its default 4 threads.

It stays faithful on purpose, including what our app does differently
(the review and label are trusted as the browser sends them back, stopwords
are a list, nothing is checkpointed): do not add features or optimisations
here, or the comparison stops being one.

    python -m bench.tutorial_app --model DIR --db reviews.sqlite --port 8080
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from flask import Flask, render_template, request
from jinja2 import DictLoader
from sklearn.feature_extraction.text import HashingVectorizer
from wtforms import Form, TextAreaField, validators

# The tutorial's patterns: an HTML tag; an emoticon (eye, optional nose, mouth);
# a run of non-word characters.
HTML_TAG = r"<[^>]*>"
EMOTICON = r"(?::|;|=)(?:-)?(?:\)|\(|D|P)"
NON_WORD = r"[\W]+"

LABELS = {0: "negative", 1: "positive"}
THREADS = 4  # waitress's default, under which the tutorial's app was measured
REPLAY_BATCH = 10_000  # rows per partial_fit when the table is replayed at start

# The tutorial keeps its pages as template files; here they live in the module
# so the baseline stays one file. Autoescaped like any Flask .html template.
TEMPLATES = {
    "_field.html": """\
{% macro render_field(field) %}
  <dt>{{ field.label }}</dt>
  <dd>{{ field(**kwargs)|safe }}
  {% if field.errors %}<ul class="errors">
    {% for error in field.errors %}<li>{{ error }}</li>{% endfor %}
  </ul>{% endif %}</dd>
{% endmacro %}
""",
    "reviewform.html": """\
<!doctype html>
<html><head><title>Movie review classification</title></head>
<body>
{% from "_field.html" import render_field %}
<h2>Write a movie review</h2>
<form method="post" action="/results">
  <dl>{{ render_field(form.moviereview, cols="30", rows="10") }}</dl>
  <input type="submit" value="Submit review" name="submit_btn">
</form>
</body></html>
""",
    "results.html": """\
<!doctype html>
<html><head><title>Movie review classification</title></head>
<body>
<h3>Your review</h3>
<div>{{ content }}</div>
<h3>Prediction</h3>
<div>This review reads <strong>{{ prediction }}</strong>
  (probability {{ probability }}%).</div>
<form action="/thanks" method="post">
  <input type="submit" value="Correct" name="feedback_button">
  <input type="submit" value="Incorrect" name="feedback_button">
  <input type="hidden" value="{{ prediction }}" name="prediction">
  <input type="hidden" value="{{ content }}" name="review">
</form>
<form action="/"><input type="submit" value="Submit another review"></form>
</body></html>
""",
    "thanks.html": """\
<!doctype html>
<html><head><title>Movie review classification</title></head>
<body>
<h3>Thank you for your feedback!</h3>
<form action="/"><input type="submit" value="Submit another review"></form>
</body></html>
""",
}


class TutorialError(Exception):
    """The model folder or the database cannot be used; ``main`` prints it in one line."""


def make_tokenizer(stop: Sequence[str]) -> Callable[[str], list[str]]:
    """The tutorial's tokenizer over the stopword list ``stop``.

    Tags go, emoticons are collected from the lower-cased text and appended
    (nose dropped) after the words, non-word runs become spaces, stopwords
    are dropped. ``stop`` stays the list the pickle holds: the tutorial
    looks every token up in a list, and so does its baseline.
    """

    def tokenize(text: str) -> list[str]:
        text = re.sub(HTML_TAG, "", text)
        emoticons = re.findall(EMOTICON, text.lower())
        text = re.sub(NON_WORD, " ", text.lower()) + " " + " ".join(emoticons).replace("-", "")
        return [word for word in text.split() if word not in stop]

    return tokenize


def make_vectorizer(stop: Sequence[str], n_features: int = 2**21) -> HashingVectorizer:
    """The tutorial's vectorizer (``n_features``: the classifier's, 2**21 for the book's)."""
    return HashingVectorizer(decode_error="ignore", n_features=n_features,
                             preprocessor=None, tokenizer=make_tokenizer(stop))


class ReviewForm(Form):
    """The tutorial's form: a plain wtforms Form, no CSRF token."""

    moviereview = TextAreaField("", [validators.DataRequired(), validators.Length(min=15)])


def check_model_dir(model_dir: Path) -> Path:
    """``model_dir``, if it holds the book preset's pickles this app loads (TutorialError
    if not): checked before anything else, here and by ``bench.serving``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise TutorialError(f"model folder not found: {model_dir}")
    for name in ("classifier.pkl", "stopwords.pkl"):
        if not (model_dir / name).is_file():
            raise TutorialError(f"{model_dir} has no {name} (write it with "
                                f"python -m train --preset book --out {model_dir})")
    return model_dir


class Tutorial:
    """The tutorial's module-level state (classifier, vectorizer, database) and functions.

    Kept on an object rather than in globals so that a test can build two
    apps in one process; each app still has one classifier that every
    request thread reads and updates without a lock, as the tutorial's.
    """

    def __init__(self, model_dir: Path, db_path: Path) -> None:
        model_dir, self.db = check_model_dir(model_dir), Path(db_path)
        try:
            with open(model_dir / "stopwords.pkl", "rb") as fh:
                stop = pickle.load(fh)
            with open(model_dir / "classifier.pkl", "rb") as fh:
                self.clf = pickle.load(fh)
            n_features = self.clf.coef_.shape[1]
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            raise TutorialError(f"cannot load the model in {model_dir}: {exc}") from exc
        self.vect = make_vectorizer(stop, n_features)
        try:
            with sqlite3.connect(self.db) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS review_db "
                             "(review TEXT, sentiment INTEGER, date TEXT)")
            conn.close()
        except sqlite3.Error as exc:
            raise TutorialError(f"cannot use the database {self.db}: {exc}") from exc

    def classify(self, document: str) -> tuple[str, float]:
        """The predicted label and its probability, with the tutorial's three calls."""
        X = self.vect.transform([document])
        y = self.clf.predict(X)[0]
        proba = np.max(self.clf.predict_proba(X))
        return LABELS[y], proba

    def train(self, document: str, y: int) -> None:
        """One verdict applied at once to the live classifier."""
        X = self.vect.transform([document])
        self.clf.partial_fit(X, [y])

    def sqlite_entry(self, document: str, y: int) -> None:
        """One stored verdict: a fresh connection, INSERT, commit, close."""
        conn = sqlite3.connect(self.db)
        cursor = conn.cursor()
        cursor.execute("INSERT INTO review_db (review, sentiment, date) "
                       "VALUES (?, ?, DATETIME('now'))", (document, y))
        conn.commit()
        conn.close()

    def update_model(self, batch_size: int = REPLAY_BATCH) -> None:
        """Replay the whole table into the classifier, ``batch_size`` rows per partial_fit.

        The tutorial does this at every start, onto the pickled classifier
        (it never saves the updated one), so start-up grows with the table.
        """
        conn = sqlite3.connect(self.db)
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT * FROM review_db")
            rows = cursor.fetchmany(batch_size)
            while rows:
                reviews = [row[0] for row in rows]
                labels = np.array([row[1] for row in rows]).astype(int)
                self.clf.partial_fit(self.vect.transform(reviews), labels, classes=[0, 1])
                rows = cursor.fetchmany(batch_size)
        finally:
            conn.close()


def create_app(model_dir: Path, db_path: Path) -> Flask:
    """The tutorial's Flask app on the pickles in ``model_dir``, its table replayed.

    Raises :class:`TutorialError` when the model or the database cannot be used.
    """
    tutorial = Tutorial(model_dir, db_path)
    tutorial.update_model()
    app = Flask(__name__)
    app.jinja_loader = DictLoader(TEMPLATES)
    app.extensions["tutorial"] = tutorial

    @app.route("/")
    def index() -> str:
        form = ReviewForm(request.form)
        return render_template("reviewform.html", form=form)

    @app.route("/results", methods=["POST"])
    def results() -> str:
        form = ReviewForm(request.form)
        if request.method == "POST" and form.validate():
            review = request.form["moviereview"]
            y, proba = tutorial.classify(review)
            return render_template("results.html", content=review, prediction=y,
                                   probability=round(proba * 100, 2))
        return render_template("reviewform.html", form=form)

    @app.route("/thanks", methods=["POST"])
    def feedback() -> str:
        feedback = request.form["feedback_button"]
        review = request.form["review"]
        prediction = request.form["prediction"]
        inv_label = {"negative": 0, "positive": 1}
        y = inv_label[prediction]
        if feedback == "Incorrect":
            y = int(not y)
        tutorial.train(review, y)
        tutorial.sqlite_entry(review, y)
        return render_template("thanks.html")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tutorial_app",
        description="Serve the tutorial's movie-review app (a benchmark baseline) with "
                    "waitress, 4 threads.",
    )
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="folder with the book preset's classifier.pkl and stopwords.pkl")
    parser.add_argument("--db", type=Path, required=True, metavar="PATH",
                        help="SQLite file of stored verdicts (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="default: 5000")
    args = parser.parse_args(argv)
    try:
        app = create_app(args.model, args.db)
    except TutorialError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from waitress import serve

    # waitress warns for every request that waits for a free thread, as app.py notes.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    serve(app, host=args.host, port=args.port, threads=THREADS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
