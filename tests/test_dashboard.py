"""/stats: the figures of /api/stats as charts and tables people can read."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from sentiment.web.charts import Point, bars, line
from tests.fakes import make_reviews


def judged(app: Flask, n: int) -> None:
    client = app.test_client()
    for i, (review, _) in enumerate(make_reviews(n, seed=5)):
        token = client.post("/api/predict", json={"review": review}).get_json()["prediction_id"]
        assert client.post("/api/feedback", json={"prediction_id": token,
                                                   "correct": i % 4 != 0}).status_code == 201


@pytest.mark.both_backends
def test_the_page_shows_verdicts_versions_and_their_figures(make_app) -> None:
    app = make_app(CHECKPOINT_EVERY=4)
    judged(app, 8)
    html = app.test_client().get("/stats").get_data(as_text=True)
    assert "8 verdicts" in html and "(25% of them Incorrect)" in html
    assert "a live accuracy of\n  75%" in html
    # One day of verdicts: its table, no chart of one point; two versions scored: a chart.
    assert html.count('<svg class="chart"') == 1
    assert ">Holdout accuracy of each model version</title>" in html
    assert html.count("<tr><td>20") == 1  # one row per day
    assert re.search(r"<td>v000002 \(current\)</td>", html)
    assert "Nothing is quarantined." in html


@pytest.mark.both_backends
def test_an_empty_log_is_a_page_too(make_app) -> None:
    response = make_app().test_client().get("/stats")
    assert response.status_code == 200
    assert "No prediction yet." in response.get_data(as_text=True)


def test_charts_scale_to_their_values_and_escape_their_labels() -> None:
    svg = str(bars("b", [Point("<a>", 2), Point("b", 4), Point("c", None)], "T", "D"))
    heights = [float(h) for h in re.findall(r'<rect[^>]* height="([\d.]+)"', svg)]
    assert heights[1] == 2 * heights[0] and heights[2] == 0
    assert "&lt;a&gt;" in svg and "<a>" not in svg
    svg = str(line("l", [Point("v1", 0.9), Point("v2", None), Point("v3", 0.95)], "T", "D",
                   low=0.85, high=0.95))
    assert svg.count("<circle") == 2 and "<polyline" in svg
    assert 'aria-labelledby="l-title l-desc"' in svg
