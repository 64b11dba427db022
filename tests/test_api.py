"""The JSON API: /api/predict, /api/feedback, /api/health and its error answers."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

POSITIVE_REVIEW = ("A wonderful and brilliant film. The cast was superb, the story moving "
                   "and the ending beautiful. I loved it.")
NEGATIVE_REVIEW = ("An awful and boring film. The plot was terrible, the script dull "
                   "and the ending a mess. What a waste.")


def query(app: Flask, sql: str, *args) -> list[tuple]:
    path = Path(app.instance_path) / "reviews.sqlite"
    assert path.is_file()
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def counts(app: Flask) -> tuple[int, int]:
    """(predictions, feedback) rows."""
    return (query(app, "SELECT COUNT(*) FROM predictions")[0][0],
            query(app, "SELECT COUNT(*) FROM feedback")[0][0])


def p_positive(result: dict) -> float:
    return result["probability"] if result["label"] == "positive" else 1 - result["probability"]


def predict(client, review: str) -> dict:
    response = client.post("/api/predict", json={"review": review})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def assert_error(response, status: int, message: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert message in body["error"]


# -- /api/predict ------------------------------------------------------------------------
def test_predict_one(app: Flask, client) -> None:
    result = predict(client, "  " + POSITIVE_REVIEW + "\n")
    assert set(result) == {"label", "probability", "prediction_id", "model_version"}
    assert result["label"] == "positive"
    assert 0.5 <= result["probability"] <= 1.0
    assert result["model_version"] == "base+0"
    rows = query(app, "SELECT token, review, label, probability, model_version FROM predictions")
    assert rows == [(result["prediction_id"], POSITIVE_REVIEW, 1,
                     pytest.approx(result["probability"], abs=1e-6), "base+0")]
    negative = predict(client, NEGATIVE_REVIEW)
    assert negative["label"] == "negative" and negative["probability"] >= 0.5
    # Unguessable (was: sequential integers anyone could vote on): 128 random bits,
    # after the time they were made (hex milliseconds), so that later ones sort later.
    for token in (result["prediction_id"], negative["prediction_id"]):
        assert isinstance(token, str) and re.fullmatch(r"[0-9a-f]{11}[A-Za-z0-9_-]{22}", token)
    assert negative["prediction_id"] != result["prediction_id"]
    assert negative["prediction_id"][:11] >= result["prediction_id"][:11]


def test_predict_batch_keeps_order(app: Flask, client) -> None:
    reviews = [POSITIVE_REVIEW, NEGATIVE_REVIEW, NEGATIVE_REVIEW + " Dull.",
               POSITIVE_REVIEW + " Great!", "The film was superb and gripping."]
    response = client.post("/api/predict", json={"reviews": reviews})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["label"] for r in results] == [
        "positive", "negative", "negative", "positive", "positive"]
    tokens = [r["prediction_id"] for r in results]
    stored = query(app, "SELECT token, review FROM predictions ORDER BY id")
    assert stored == list(zip(tokens, reviews, strict=True))
    for review, result in zip(reviews, results, strict=True):
        assert predict(client, review)["probability"] == result["probability"]


def test_predict_batch_of_the_maximum_size(app: Flask, client) -> None:
    # Commas, brackets and quotes inside the reviews are text, not JSON values.
    review = POSITIVE_REVIEW + ' Ten out of ten, "really" [sic] {sic}, \\", ' * 3
    response = client.post("/api/predict", json={"reviews": [review] * 1000})
    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 1000
    assert counts(app) == (1000, 0)


def test_the_default_limits_let_a_maximum_batch_through_once_a_minute(make_app) -> None:
    app = make_app(WTF_CSRF_ENABLED=False, RATE_LIMITS=True)  # the default limits
    client = app.test_client()
    batch = {"reviews": [POSITIVE_REVIEW] * 1000}
    response = client.post("/api/predict", json=batch)
    assert response.status_code == 200
    assert int(response.headers["X-RateLimit-Remaining"]) == 200  # of 1,200 a minute
    assert client.post("/api/predict", json=batch).status_code == 429


@pytest.mark.parametrize("value", ["{}", "[]", '""', "0"])
def test_a_body_of_millions_of_values_is_refused_before_parsing(app: Flask, client,
                                                                value: str) -> None:
    """Parsed, 32 MB of '{},' are 11 million dicts and 1 GB of memory."""
    body = '{"reviews": [' + ",".join([value] * 2_000_000) + "]}"
    response = client.post("/api/predict", data=body, content_type="application/json")
    assert_error(response, 400, "too many JSON values for a request (at most 1,000 reviews)")
    assert counts(app) == (0, 0)
    small = '{"reviews": [' + ",".join([value] * 1_001) + "]}"  # counted by the parser
    response = client.post("/api/predict", data=small, content_type="application/json")
    assert response.status_code == 400
    assert "too many JSON values" not in response.get_json()["error"]


LONG = "wonderful " * 2000 + "x"  # 20,001 characters
BAD_PREDICT: dict[str, tuple[str | bytes, str]] = {
    "not json": ("review=hello", "not valid JSON"),
    "truncated json": ('{"review": "a wonderful film indeed"', "not valid JSON"),
    "empty body": ("", "not valid JSON"),
    "invalid utf-8": (b'{"review": "\xff\xfe wonderful brilliant film"}', "not valid JSON"),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, "too many JSON values"),  # was a 500
    "nested, small": ("[" * 20_000 + "]" * 20_000, "nests arrays or objects too deeply"),
    "an unknown field": (json.dumps({"review": POSITIVE_REVIEW, "bogus": 1}),  # was 200
                         'unknown field "bogus"'),
    "a key twice": ('{"review": "' + POSITIVE_REVIEW + '", "review": "' + POSITIVE_REVIEW
                    + '"}', 'the key "review" more than once'),  # the last one won
    "NaN": ('{"review": "' + POSITIVE_REVIEW + '", "x": NaN}', "NaN, which is not a JSON"),
    "Infinity": ('{"reviews": [-Infinity]}', "-Infinity, which is not a JSON number"),
    "a number too large for a float": ('{"review": 1e999999}', "a number too large to read"),
    "number of 5,000 digits": ('{"review": "a wonderful brilliant film", "n": 1' + "0" * 4999
                               + "}", "a number of 5,000 digits, too long to read"),  # valid JSON
    "array": ('["a wonderful brilliant film"]', "must be a JSON object, not array"),
    "string": ('"a wonderful brilliant film"', "must be a JSON object, not string"),
    "null": ("null", "must be a JSON object, not null"),
    "number": ("42", "must be a JSON object, not number"),
    "no field": ('{"text": "a wonderful brilliant film"}', "exactly one of"),
    "both fields": (json.dumps({"review": POSITIVE_REVIEW, "reviews": [POSITIVE_REVIEW]}),
                    "exactly one of"),
    "review not a string": ('{"review": 12345678901234567890}', "review must be a string"),
    "review a list": (json.dumps({"review": [POSITIVE_REVIEW]}), "review must be a string"),
    "review null": ('{"review": null}', "review must be a string"),
    "empty review": ('{"review": ""}', "15 to 20,000 characters long (got 0)"),
    "blank review": ('{"review": "   \\n\\t     \\n         "}', "(got 0)"),
    "short review": ('{"review": "   too short    "}', "(got 9)"),
    "long review": (json.dumps({"review": LONG}), "(got 20,001)"),
    "lone surrogate": ('{"review": "a wonderful brilliant film \\ud800"}',  # was a 500
                       "review is not valid Unicode text"),
    "no words": ('{"review": "!!!!!!!!!!!!!!!!!!!!"}',  # its verdict was a 500 (test_learner)
                 "review has no words the model can read"),
    "only markup": ('{"review": "<b></b><i></i><p></p><br>"}', "review has no words"),
    "reviews item without words": (json.dumps({"reviews": [POSITIVE_REVIEW, "?? ... !! -- ::"]}),
                                   "reviews[1] has no words the model can read"),
    "reviews not a list": (json.dumps({"reviews": POSITIVE_REVIEW}), "non-empty list"),
    "reviews empty": ('{"reviews": []}', "non-empty list"),
    "reviews item not a string": (json.dumps({"reviews": [POSITIVE_REVIEW, 7]}),
                                  "reviews[1] must be a string"),
    "reviews item null": (json.dumps({"reviews": [None]}), "reviews[0] must be a string"),
    "reviews item short": (json.dumps({"reviews": [POSITIVE_REVIEW, POSITIVE_REVIEW, "short"]}),
                           "reviews[2] must be 15 to 20,000 characters long"),
    "reviews item long": (json.dumps({"reviews": [LONG]}), "reviews[0] must be 15"),
    "1,001 reviews": (json.dumps({"reviews": [POSITIVE_REVIEW] * 1001}),
                      '"reviews" holds 1,001 reviews; at most 1,000'),
}


@pytest.mark.parametrize("case", BAD_PREDICT)
def test_predict_rejects_bad_requests(app: Flask, client, case: str) -> None:
    body, message = BAD_PREDICT[case]
    response = client.post("/api/predict", data=body, content_type="application/json")
    assert_error(response, 400, message)
    assert counts(app) == (0, 0)


def test_a_form_type_body_that_is_not_utf8_gets_the_json_message(app: Flask, client) -> None:
    response = client.post("/api/predict", data=b"review=\xff\xfe wonderful brilliant film",
                           content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "must be JSON")  # not the HTML form's message
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_the_api_reads_only_json_bodies(app: Flask, client, content_type: str | None) -> None:
    """What a cross-site form can send without a preflight is refused (was: 200 and 201)."""
    body = json.dumps({"review": POSITIVE_REVIEW})
    response = client.post("/api/predict", data=body, content_type=content_type)
    assert_error(response, 415, 'sent with "Content-Type: application/json"')
    pid = predict(client, POSITIVE_REVIEW)["prediction_id"]
    response = client.post("/api/feedback", data=json.dumps({"prediction_id": pid,
                                                               "correct": False}),
                           content_type=content_type)
    assert_error(response, 415, "must be JSON")
    assert counts(app) == (1, 0)


# -- /api/feedback ---------------------------------------------------------------------------
def test_feedback_is_stored_and_201(app: Flask, client) -> None:
    pid = predict(client, POSITIVE_REVIEW)["prediction_id"]
    response = client.post("/api/feedback", json={"prediction_id": pid, "correct": False})
    assert response.status_code == 201
    body = response.get_json()
    assert body["prediction_id"] == pid and body["correct"] is False
    assert body["label"] == "negative"
    assert body["model_version"] == "base+1"
    assert query(app, "SELECT f.id, p.token, correct, f.label, status FROM feedback f"
                      " JOIN predictions p ON p.id = f.prediction_id") == [
        (body["feedback_id"], pid, 0, 0, "accepted")]


def log_odds(result: dict) -> float:
    p = p_positive(result)
    return math.log(p) - math.log1p(-p)


def test_incorrect_verdict_moves_the_next_prediction(app: Flask, client) -> None:
    # A short review: the tiny model is sure of it, but not to the six decimals
    # the API rounds to, where one step could not show.
    review = "A wonderful film."
    before = predict(client, review)
    assert before["label"] == "positive" and before["probability"] < 0.9999
    response = client.post("/api/feedback",
                           json={"prediction_id": before["prediction_id"], "correct": False})
    assert response.status_code == 201
    after = predict(client, review)  # no sleep, no retry: applied before the 201
    assert log_odds(after) < log_odds(before) - 0.1
    assert after["model_version"] != before["model_version"]
    assert after["model_version"] == response.get_json()["model_version"]
    health = client.get("/api/health").get_json()
    assert health["model_version"] == after["model_version"]


def test_correct_verdict_on_a_negative_review_does_not_raise_p_positive(client) -> None:
    before = predict(client, NEGATIVE_REVIEW)
    assert before["label"] == "negative"
    response = client.post("/api/feedback",
                           json={"prediction_id": before["prediction_id"], "correct": True})
    assert response.status_code == 201
    after = predict(client, NEGATIVE_REVIEW)
    assert p_positive(after) <= p_positive(before)  # tiny (rounded) step: already confident
    assert after["model_version"] != before["model_version"]


# PID: the token of the one prediction that exists.
BAD_FEEDBACK: dict[str, tuple[str, int, str]] = {
    "not json": ("prediction_id=PID&correct=true", 400, "not valid JSON"),
    "array": ('["PID", true]', 400, "must be a JSON object, not array"),
    "no fields": ("{}", 400, '"prediction_id" must be the id /api/predict returned'),
    "no correct": ('{"prediction_id": "PID"}', 400, '"correct" must be true or false'),
    "no id": ('{"correct": true}', 400, '"prediction_id" must be the id /api/predict returned'),
    "bool as id": ('{"prediction_id": true, "correct": true}', 400, "a string"),
    "the integer id": ('{"prediction_id": 1, "correct": true}', 400, "a string"),  # was 201
    "a guessed token": ('{"prediction_id": "AAAAAAAAAAAAAAAAAAAAAA", "correct": true}', 404,
                        "no prediction with that id"),
    "not a token": ('{"prediction_id": "PID; DROP TABLE", "correct": true}', 400, "a string"),
    "string correct": ('{"prediction_id": "PID", "correct": "true"}', 400, "true or false"),
    "int correct": ('{"prediction_id": "PID", "correct": 1}', 400, "true or false"),
    "null correct": ('{"prediction_id": "PID", "correct": null}', 400, "true or false"),
    "an added label": ('{"prediction_id": "PID", "correct": false, "label": 1}', 400,  # was 201
                       'unknown field "label"'),
    "a key twice": ('{"prediction_id": "PID", "correct": true, "correct": false}', 400,
                    'the key "correct" more than once'),
    "id of 5,000 digits": ('{"prediction_id": -' + "9" * 5000 + ', "correct": true}', 400,
                           "a number of 5,000 digits, too long to read"),
}


@pytest.mark.parametrize("case", BAD_FEEDBACK)
def test_feedback_rejects_bad_requests(app: Flask, client, case: str) -> None:
    pid = predict(client, POSITIVE_REVIEW)["prediction_id"]
    body, status, message = BAD_FEEDBACK[case]
    response = client.post("/api/feedback", data=body.replace("PID", pid),
                           content_type="application/json")
    assert_error(response, status, message)
    assert counts(app) == (1, 0)
    assert app.extensions["learner"].applied_id == 0


def test_repeated_feedback_is_409(app: Flask, client) -> None:
    pid = predict(client, POSITIVE_REVIEW)["prediction_id"]
    assert client.post("/api/feedback",
                       json={"prediction_id": pid, "correct": True}).status_code == 201
    version = client.get("/api/health").get_json()["model_version"]
    response = client.post("/api/feedback", json={"prediction_id": pid, "correct": False})
    assert_error(response, 409, "this prediction already has a verdict")
    assert query(app, "SELECT correct, label FROM feedback") == [(1, 1)]
    assert client.get("/api/health").get_json()["model_version"] == version


# -- health, routing, limits ------------------------------------------------------------------
def test_health(client) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["model_version"] == "base+0"


def test_unknown_api_route_is_404_json(client) -> None:
    assert_error(client.get("/api/nope"), 404, "not found")
    assert_error(client.post("/api/predictions", json={"review": POSITIVE_REVIEW}), 404,
                 "not found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/api/predict", "POST"), ("PUT", "/api/predict", "POST"),
    ("GET", "/api/feedback", "POST"), ("POST", "/api/health", "GET"),
    ("DELETE", "/api/health", "GET"),
])
def test_wrong_method_is_405_json(app: Flask, client, method: str, path: str,
                                  allowed: str) -> None:
    response = client.open(path, method=method, json={"review": POSITIVE_REVIEW})
    assert_error(response, 405, "not allowed")
    assert allowed in response.headers["Allow"]
    assert counts(app) == (0, 0)


def test_oversized_body_is_413_json(make_app: Callable[..., Flask]) -> None:
    app = make_app(WTF_CSRF_ENABLED=False, MAX_CONTENT_LENGTH=4096)
    client = app.test_client()
    response = client.post("/api/predict", json={"review": "wonderful " * 1000})
    assert_error(response, 413, "larger than the 4 KB limit")
    response = client.post("/api/predict", json={"reviews": [POSITIVE_REVIEW] * 100})
    assert_error(response, 413, "4 KB")
    assert counts(app) == (0, 0)
    assert predict(client, POSITIVE_REVIEW)["label"] == "positive"  # small bodies still served


def test_api_needs_no_csrf_token_when_csrf_is_on(make_app: Callable[..., Flask]) -> None:
    app = make_app()  # CSRF on: the HTML forms need a token, JSON clients do not
    client = app.test_client()
    pid = predict(client, POSITIVE_REVIEW)["prediction_id"]
    response = client.post("/api/feedback", json={"prediction_id": pid, "correct": True})
    assert response.status_code == 201
    assert counts(app) == (1, 1)


GARBAGE = [b"", b"{", b"}", b"\x00", b"[]" * 10_000, b'{"review": {"review": "x"}}',
           b'{"reviews": [[], {}, null]}', b'{"prediction_id": 1e400, "correct": true}',
           b'{"review": NaN}', b'{"review": ' + b"9" * 5000 + b"}", b'{"review": "\\u0000"}',
           b'{"prediction_id": -9223372036854775809, "correct": false}']


@pytest.mark.parametrize("path", ["/api/predict", "/api/feedback"])
def test_garbage_never_500(app: Flask, client, path: str) -> None:
    for body in GARBAGE:
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 400, (body[:40], response.get_data(as_text=True))
        assert "error" in response.get_json()
    assert counts(app) == (0, 0)


def test_rate_limits_answer_429_with_retry_after(make_app):
    """Per-client limits on predictions and on verdicts, each with its own budget."""
    app = make_app(WTF_CSRF_ENABLED=False, RATE_LIMITS=True,
                   PREDICT_LIMIT="3 per minute", VERDICT_LIMIT="1 per minute")
    client = app.test_client()
    review = {"review": "A wonderful, brilliant and moving film."}
    ids = [client.post("/api/predict", json=review).json["prediction_id"] for _ in range(3)]
    refused = client.post("/api/predict", json=review)
    assert refused.status_code == 429
    assert "error" in refused.json and int(refused.headers["Retry-After"]) > 0
    # The HTML form shares the prediction budget.
    assert client.post("/results", data={"review": review["review"]}).status_code == 429
    assert client.post("/api/feedback", json={"prediction_id": ids[0], "correct": True}
                       ).status_code == 201
    refused = client.post("/api/feedback", json={"prediction_id": ids[1], "correct": True})
    assert refused.status_code == 429 and refused.headers.get("Retry-After")
    learner = app.extensions["learner"]
    assert learner.feedback.counts() == {"predictions": 3, "accepted": 1}
    # Another client still has its whole budget.
    other = client.post("/api/predict", json=review, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert other.status_code == 200


def test_each_review_of_a_batch_counts_against_the_prediction_limit(make_app) -> None:
    app = make_app(WTF_CSRF_ENABLED=False, RATE_LIMITS=True,
                   PREDICT_LIMIT="5 per minute; 50 per hour")
    client = app.test_client()
    review = "A wonderful, brilliant and moving film."
    assert client.post("/api/predict", json={"reviews": [review] * 3}).status_code == 200
    # A batch over the smallest limit could never pass: a 400 saying what
    # would, which costs nothing (only what is served counts).
    too_big = client.post("/api/predict", json={"reviews": [review] * 6})
    assert_error(too_big, 400, "more than the rate limit allows at once (5 per 1 minute")
    assert "send at most 5 per request" in too_big.json["error"]
    both = client.post("/api/predict", json={"review": review, "reviews": [review] * 9})
    assert_error(both, 400, "exactly one of")  # refused, so it costs nothing, not nine
    # 3 used, the refusals free: 2 left, then nothing, not even for a request the
    # API would refuse.
    assert client.post("/api/predict", json={"reviews": [review] * 2}).status_code == 200
    assert client.post("/api/predict", json={"reviews": [review]}).status_code == 429
    refused = client.post("/api/predict", json={"reviews": "not a list"})
    assert refused.status_code == 429
    assert "each review of a batch counting one" in refused.json["error"]
    assert counts(app) == (5, 0)


def test_apps_share_a_preloaded_base_model_and_never_train_it(
        make_app, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the server does: load the base model before forking, every worker's app uses it."""
    from sentiment.models.linear import SentimentModel

    base = SentimentModel.load(tiny_model_dir)
    before = base.state()
    first, second = make_app(base_model=base), make_app(base_model=base)
    assert first.extensions["learner"].base is base is second.extensions["learner"].base
    client = first.test_client()
    pid = predict(client, "A dull, lifeless film with a silly plot.")["prediction_id"]
    response = client.post("/api/feedback", json={"prediction_id": pid, "correct": False})
    assert response.status_code == 201
    assert not first.extensions["learner"].model.state().equals(before)
    assert base.state().equals(before)
    assert second.extensions["learner"].model.state().equals(before)
