"""``bench/tutorial_app.py``: the tutorial's app, the baseline ``bench.serving`` measures.

Its figures only mean something if it behaves as the tutorial's does: the
same pages, a verdict applied at once and stored with the label the browser
sent (flipped when "Incorrect"), and the whole table replayed at each start.
"""

from __future__ import annotations

import html
import pickle
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from sklearn.linear_model import SGDClassifier

from bench.serving import REVIEW
from bench.tutorial_app import create_app, main, make_tokenizer, make_vectorizer
from tests.tiny_aclimdb import TrainedRun

pytest_plugins = ["tests.train_fixtures"]

NEGATIVE_REVIEW = "Dull, tedious and far too long: the worst film I have seen in years."


@pytest.fixture
def book_dir(trained: dict[str, TrainedRun]) -> Path:
    return trained["book"].out


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "reviews.sqlite"


def pickled_classifier(book_dir: Path) -> SGDClassifier:
    with open(book_dir / "classifier.pkl", "rb") as fh:
        return pickle.load(fh)


def coef(app: Flask) -> np.ndarray:
    return app.extensions["tutorial"].clf.coef_.copy()


def rows(db_path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db_path) as conn:
        found = conn.execute("SELECT review, sentiment FROM review_db").fetchall()
    conn.close()
    return found


def results_page(app: Flask, review: str) -> tuple[str, float, str]:
    """POST /results: the label, the probability shown and the page."""
    response = app.test_client().post("/results", data={"moviereview": review})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    label = re.search(r"<strong>(\w+)</strong>", page).group(1)
    probability = float(re.search(r"probability ([\d.]+)%", page).group(1))
    return label, probability, page


def test_the_tokenizer_keeps_emoticons_and_drops_tags_and_stopwords() -> None:
    tokenize = make_tokenizer(["the", "was"])
    # Emoticons are looked for in the lower-cased text: ";D" is no longer one.
    assert tokenize("The <br />movie :-) was GREAT;D =(") == ["movie", "great", "d", ":)", "=("]


def test_the_form_and_a_results_page_with_label_and_probability(
    book_dir: Path, db_path: Path
) -> None:
    app = create_app(book_dir, db_path)
    form = app.test_client().get("/")
    assert form.status_code == 200
    assert 'name="moviereview"' in form.get_data(as_text=True)

    label, probability, page = results_page(app, REVIEW)
    clf = pickled_classifier(book_dir)
    X = make_vectorizer(pickle.loads((book_dir / "stopwords.pkl").read_bytes()),
                        clf.coef_.shape[1]).transform([REVIEW])
    assert label == {0: "negative", 1: "positive"}[clf.predict(X)[0]]
    assert probability == round(float(np.max(clf.predict_proba(X))) * 100, 2)
    # The feedback form sends the review and the label back: the tutorial trusts them.
    assert f'value="{label}" name="prediction"' in page
    assert f'value="{html.escape(REVIEW)}" name="review"' in page
    assert page.count('name="feedback_button"') == 2
    assert rows(db_path) == []  # a prediction stores nothing


def test_a_too_short_review_gets_the_form_again(book_dir: Path, db_path: Path) -> None:
    app = create_app(book_dir, db_path)
    response = app.test_client().post("/results", data={"moviereview": "Too short."})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="moviereview"' in page and "at least 15 characters" in page
    assert "<strong>" not in page


def test_an_incorrect_verdict_is_stored_flipped_and_applied_at_once(
    book_dir: Path, db_path: Path
) -> None:
    app = create_app(book_dir, db_path)
    label, _, _ = results_page(app, REVIEW)
    before = coef(app)
    response = app.test_client().post("/thanks", data={
        "feedback_button": "Incorrect", "review": REVIEW, "prediction": label})
    assert response.status_code == 200
    assert "Thank you" in response.get_data(as_text=True)
    flipped = 0 if label == "positive" else 1
    assert rows(db_path) == [(REVIEW, flipped)]
    assert not np.array_equal(coef(app), before)


def test_a_restart_replays_the_whole_table_into_the_pickled_classifier(
    book_dir: Path, db_path: Path
) -> None:
    app = create_app(book_dir, db_path)
    client = app.test_client()
    for review, button, prediction in [(REVIEW, "Correct", "positive"),
                                       (NEGATIVE_REVIEW, "Incorrect", "positive"),
                                       (NEGATIVE_REVIEW, "Correct", "negative")]:
        client.post("/thanks", data={"feedback_button": button, "review": review,
                                     "prediction": prediction})
    stored = rows(db_path)
    assert [label for _, label in stored] == [1, 0, 0]

    restarted = create_app(book_dir, db_path)
    clf = pickled_classifier(book_dir)
    assert not np.array_equal(coef(restarted), clf.coef_)
    vect = make_vectorizer(pickle.loads((book_dir / "stopwords.pkl").read_bytes()),
                           clf.coef_.shape[1])
    clf.partial_fit(vect.transform([review for review, _ in stored]),
                    [label for _, label in stored], classes=[0, 1])
    np.testing.assert_array_equal(coef(restarted), clf.coef_)
    np.testing.assert_array_equal(restarted.extensions["tutorial"].clf.intercept_,
                                  clf.intercept_)


def test_a_missing_model_folder_is_one_line_and_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--model", str(tmp_path / "nowhere"), "--db", str(tmp_path / "r.sqlite")])
    assert status != 0
    assert capsys.readouterr().err == f"error: model folder not found: {tmp_path / 'nowhere'}\n"
