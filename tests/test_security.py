"""What the app owes browsers: no verdict or prediction posted from another site, strict
headers on every route, no caching of pages that hold a review or a token."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from tests.fakes import PNG_1x1

REVIEW = "A wonderful, brilliant film: superb acting and a moving story."


def predict(client) -> int:
    response = client.post("/api/predict", json={"review": REVIEW})
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.get_json()["prediction_id"])


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a file: page
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://localhost.evil.example", "Sec-Fetch-Site": "cross-site"},
])
def test_requests_from_another_site_change_nothing(app: Flask, client, headers) -> None:
    """The issue's repro: a text/plain cross-site post of a verdict answered 201."""
    pid = predict(client)
    for path, body in (("/api/feedback", {"prediction_id": pid, "correct": False}),
                       ("/api/predict", {"review": REVIEW})):
        response = client.post(path, data=json.dumps(body), headers=headers,
                               content_type="application/json")
        assert response.status_code == 403, (path, response.get_data(as_text=True))
        assert "other websites" in response.get_json()["error"]
    form = client.post("/results", data={"review": REVIEW}, headers=headers)
    assert form.status_code == 403 and "other websites" in form.get_data(as_text=True)
    learner = app.extensions["learner"]
    assert learner.feedback.counts() == {"predictions": 1}


def test_requests_from_this_site_and_without_origin_are_served(client) -> None:
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    pid = predict(client)
    response = client.post("/api/feedback", json={"prediction_id": pid, "correct": True},
                           headers=same)
    assert response.status_code == 201
    typed = client.post("/api/predict", json={"review": REVIEW},
                        headers={"Sec-Fetch-Site": "none"})  # typed in the address bar, a tool
    assert typed.status_code == 200


def test_every_route_sends_the_security_headers(make_app, tmp_path) -> None:
    folder = tmp_path / "explore"
    folder.mkdir()
    (folder / "report.md").write_text("# Report\n")
    (folder / "plot.png").write_bytes(PNG_1x1)
    app = make_app(WTF_CSRF_ENABLED=False, EXPLORE_DIR=folder)
    client = app.test_client()
    pid = predict(client)
    responses = {
        "/": client.get("/"),
        "/results": client.post("/results", data={"review": REVIEW}),
        "/thanks": client.post("/thanks", data={"prediction_id": pid, "correct": "Correct"}),
        "/api/predict": client.post("/api/predict", json={"review": REVIEW}),
        "/api/health": client.get("/api/health"),
        "/explore/": client.get("/explore/"),
        "/explore/plot.png": client.get("/explore/plot.png"),
        "/static/style.css": client.get("/static/style.css"),
        "404": client.get("/nope"),
        "405": client.get("/results"),
    }
    for name, response in responses.items():
        headers = response.headers
        policy = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, name
        assert "unsafe-inline" not in policy, name
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert headers.get("X-Frame-Options") == "DENY", name
        assert headers.get("Referrer-Policy") == "same-origin", name
        cached = name in ("/explore/plot.png", "/static/style.css")
        assert (headers.get("Cache-Control") == "no-store") != cached, (name, headers)
        response.close()


def test_the_session_cookie_is_same_site_and_secure_when_asked(make_app) -> None:
    for secure in (False, True):
        client = make_app(SECURE_COOKIES=secure).test_client()
        client.get("/")  # the form's CSRF token starts a session
        cookie = client.get_cookie("session")
        assert cookie is not None and cookie.same_site == "Lax"
        assert cookie.secure is secure


def test_limits_count_what_was_served_and_retry_after_means_refused(make_app) -> None:
    """A refused over-budget batch used up the client's minute; Retry-After came on every 200."""
    app = make_app(RATE_LIMITS=True, PREDICT_LIMIT="10 per minute", VERDICT_LIMIT="2 per minute")
    client = app.test_client()
    ok = client.post("/api/predict", json={"reviews": [REVIEW] * 6})
    assert ok.status_code == 200 and "Retry-After" not in ok.headers
    assert ok.headers["X-RateLimit-Remaining"] == "4"
    over = client.post("/api/predict", json={"reviews": [REVIEW] * 5})  # 5 > the 4 left
    assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
    bad = client.post("/api/predict", json={"review": "too short"})  # refused: costs nothing
    assert bad.status_code == 400
    for _ in range(4):  # the 4 left are still there
        assert client.post("/api/predict", json={"review": REVIEW}).status_code == 200
    assert client.post("/api/predict", json={"review": REVIEW}).status_code == 429
    pid = 1
    for _ in range(3):  # unknown verdicts (404) cost nothing either
        assert client.post("/api/feedback", json={"prediction_id": 10**6, "correct": True}
                           ).status_code == 404
    for _ in range(2):
        response = client.post("/api/feedback", json={"prediction_id": pid, "correct": True})
        assert response.status_code in (201, 409)
        pid += 1
