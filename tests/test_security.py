"""What the app owes browsers: no verdict or prediction posted from another site, strict
headers on every route, no caching of pages that hold a review or a token."""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask

from tests.fakes import PNG_1x1

REVIEW = "A wonderful, brilliant film: superb acting and a moving story."


def predict(client, review: str = REVIEW) -> str:
    response = client.post("/api/predict", json={"review": review})
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["prediction_id"])


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
        "/stats": client.get("/stats"),
        "/api/stats": client.get("/api/stats"),
        "/api/docs": client.get("/api/docs"),
        "/api/openapi.json": client.get("/api/openapi.json"),
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


def test_a_log_out_of_reach_says_retry_after_its_own_seconds_not_the_limits(
        make_app, monkeypatch: pytest.MonkeyPatch) -> None:
    """With rate limits on, Flask-Limiter's hook put the end of the client's window (an
    hour here) in the 503's Retry-After, where the database is back in seconds."""
    from sentiment.storage.log import LogUnavailable

    app = make_app(RATE_LIMITS=True, VERDICT_LIMIT="3 per hour")
    client = app.test_client()
    ids = [client.post("/api/predict", json={"review": REVIEW}).json["prediction_id"]
           for _ in range(2)]
    assert client.post("/api/feedback", json={"prediction_id": ids[0], "correct": True}
                       ).status_code == 201

    def out_of_reach(*args: object, **kwargs: object) -> None:
        raise LogUnavailable("down")

    monkeypatch.setattr(app.extensions["learner"].feedback, "add_verdict", out_of_reach)
    down = client.post("/api/feedback", json={"prediction_id": ids[1], "correct": True})
    assert down.status_code == 503 and down.headers["Retry-After"] == str(
        LogUnavailable.retry_after)


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
    for _ in range(3):  # unknown predictions (404) cost nothing either
        assert client.post("/api/feedback", json={"prediction_id": "A" * 22, "correct": True}
                           ).status_code == 404
    tokens = [r["prediction_id"] for r in ok.get_json()["results"]]
    for token in tokens[:2]:
        response = client.post("/api/feedback", json={"prediction_id": token, "correct": True})
        assert response.status_code == 201
    response = client.post("/api/feedback", json={"prediction_id": tokens[2], "correct": True})
    assert response.status_code == 429


def test_a_client_repeating_a_verdict_on_one_text_weighs_as_one(make_app) -> None:
    """The issue's attack on the committed model: five "incorrect" verdicts on five
    predictions of one review turned it from positive 0.993 to negative 0.62."""
    from sentiment.text.vectorizer import PKL_DIR

    app = make_app(MODEL_DIR=PKL_DIR, CHECKPOINT_EVERY=10**6)
    client = app.test_client()
    review = "An excellent, touching film with superb acting and a great script."
    first = client.post("/api/predict", json={"review": review}).get_json()
    assert first["label"] == "positive" and first["probability"] > 0.95
    for _ in range(5):
        token = predict(client, review)
        response = client.post("/api/feedback", json={"prediction_id": token, "correct": False})
        assert response.status_code == 201  # stored, as every verdict is
    after = client.post("/api/predict", json={"review": review}).get_json()
    assert after["label"] == "positive", after
    learner = app.extensions["learner"]
    verdicts = learner.feedback.verdicts()
    assert [v.repeat_of for v in verdicts] == [None] + [verdicts[0].id] * 4
    assert len(learner.feedback.accepted_after(0)) == 1  # one verdict learned


def test_only_whoever_got_the_prediction_can_vote_on_it(make_app) -> None:
    """Ids were sequential: another session, or a cookieless API client, voted on them."""
    app = make_app(WTF_CSRF_ENABLED=False)
    alice = app.test_client()
    html = alice.post("/results", data={"review": REVIEW}).get_data(as_text=True)
    assert 'name="prediction_id"' in html
    mallory = app.test_client()
    for guess in ("1", "2", "AAAAAAAAAAAAAAAAAAAAAA", "0" * 22):
        response = mallory.post("/api/feedback", json={"prediction_id": guess, "correct": False})
        assert response.status_code in (400, 404)
        response = mallory.post("/thanks", data={"prediction_id": guess, "incorrect": "x"})
        assert response.status_code in (400, 404)
    assert app.extensions["learner"].feedback.counts() == {"predictions": 1}


@pytest.mark.parametrize("body", [b"review=%FF" + b"wonderful+brilliant+film",
                                  b"review=wonderful+brilliant+film+%ED%A0%80"])
def test_the_form_refuses_what_the_api_refuses(app: Flask, client, body: bytes) -> None:
    """An invalid %FF, or a lone surrogate's UTF-8, reached the model as U+FFFD by the form."""
    form = client.post("/results", data=body, content_type="application/x-www-form-urlencoded")
    assert form.status_code == 400
    assert "URL-encoded UTF-8" in form.get_data(as_text=True)
    api = client.post("/api/predict", data=b'{"review": "wonderful brilliant film \\ud800"}',
                      content_type="application/json")
    assert api.status_code == 400
    assert app.extensions["learner"].feedback.counts() == {"predictions": 0}


def test_one_model_state_has_one_name_in_every_process(make_app) -> None:
    """Each worker reported its own checkpoint's name: v000007+21 here, v000008+21 there."""
    writer, reader = make_app(CHECKPOINT_EVERY=3), make_app(CHECKPOINT_EVERY=3)
    client = writer.test_client()
    for i in range(3):
        token = predict(client, f"{REVIEW} Take {i}.")
        assert client.post("/api/feedback", json={"prediction_id": token, "correct": i == 0}
                           ).status_code == 201
    assert writer.extensions["learner"].model_version == "v000001+3"
    time.sleep(0.25)
    health = reader.test_client().get("/api/health").get_json()
    assert health["model_version"] == "v000001+3"  # was base+3, the same weights
    assert health["unsaved_verdicts"] == 0
    assert health["model_digest"] == writer.test_client().get("/api/health").get_json()[
        "model_digest"]


@pytest.mark.parametrize("proxies", [0, 1])
def test_clients_behind_a_trusted_proxy_are_told_apart(make_app, proxies: int) -> None:
    """Behind nginx every client had the proxy's address; without a proxy configured, a
    client cannot pick its address with a header."""
    app = make_app(TRUSTED_PROXIES=proxies)
    client = app.test_client()
    for address in ("203.0.113.7", "198.51.100.9"):
        headers = {"X-Forwarded-For": address}
        token = client.post("/api/predict", json={"review": REVIEW}, headers=headers
                            ).get_json()["prediction_id"]
        assert client.post("/api/feedback", json={"prediction_id": token, "correct": False},
                           headers=headers).status_code == 201
    verdicts = app.extensions["learner"].feedback.verdicts()
    learned = [v for v in verdicts if v.repeat_of is None]
    assert len(learned) == (2 if proxies else 1)
