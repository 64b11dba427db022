"""The JSON API described: ``/api/openapi.json`` from the pydantic models, ``/api/docs`` to try it.

The document is generated from the same models that validate requests and
shape answers (:mod:`sentiment.web.schemas`), so it cannot drift from the code.
The docs page is Swagger UI from the pinned ``swagger-ui-bundle-v2`` package,
served from this app (there may be no internet), started by a script file of
ours, as the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import functools
from typing import Any

import swagger_ui_bundle
from flask import Blueprint, Response, abort, jsonify, render_template, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sentiment.web.schemas import (
    BatchOut,
    ErrorOut,
    FeedbackOut,
    FeedbackRequest,
    HealthOut,
    PredictBatch,
    PredictionOut,
    PredictOne,
    StatsOut,
)

MODELS: tuple[type[BaseModel], ...] = (
    PredictOne, PredictBatch, FeedbackRequest, PredictionOut, BatchOut, FeedbackOut, HealthOut,
    StatsOut, ErrorOut)
# Swagger UI's files that the docs page loads.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                    "favicon-32x32.png"})
EXAMPLE_REVIEW = "A moving, beautifully acted film. I loved it."
EXAMPLE_TOKEN = "Xq3mV8f0TqkV2bYt1cQx4w"
STATS_EXAMPLE = {
    "model_version": "v000003+613", "predictions": 2410, "verdicts": 640,
    "incorrect_share": 0.21, "live_accuracy": 0.79, "repeats": 12, "accepted": 603,
    "quarantined": 25, "released": 0, "held_by_trust": 10,
    "days": [{"day": "2026-12-06", "predictions": 2410, "verdicts": 640,
              "incorrect_share": 0.21, "live_accuracy": 0.79}],
    "versions": [{"name": "v000003", "parent": "v000002", "created": "2026-12-06T18:02:11Z",
                  "holdout_accuracy": 0.9185, "last_feedback_id": 600, "current": True}],
    "quarantines": [{"reason": "guard: holdout accuracy 0.9010 < 0.9085", "verdicts": 15},
                    {"reason": "trust: the client contradicts too many of its confident "
                               "predictions", "verdicts": 10}],
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema, "example": example}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "the body is not a valid request (the message names the field)",
        403: "sent by another website's page (Origin or Sec-Fetch-Site)",
        404: "no prediction has that id",
        409: "the prediction already has a verdict",
        413: "the body is larger than the limit",
        415: "the body is not application/json",
        429: "too many requests from this address (Retry-After says when to come back)",
    }
    return {str(status): {"description": reasons[status], "content": _json(
        _ref(ErrorOut), {"error": reasons[status]})} for status in statuses}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API."""
    _, definitions = models_json_schema([(model, "validation") for model in MODELS],
                                        ref_template="#/components/schemas/{model}")
    prediction = {"label": "positive", "probability": 0.994, "prediction_id": EXAMPLE_TOKEN,
                  "model_version": "v000003+612"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Movie review sentiment", "version": "1",
                 "description": "Predict whether movie reviews read positive or negative, "
                                "and tell the model when it was wrong: it learns from each "
                                "verdict at once."},
        "paths": {
            "/api/predict": {"post": {
                "summary": "Predict one review, or a batch of up to 1,000",
                "operationId": "predict",
                "requestBody": {"required": True, "content": _json(
                    {"oneOf": [_ref(PredictOne), _ref(PredictBatch)]},
                    {"review": EXAMPLE_REVIEW})},
                "responses": {
                    "200": {"description": "the label and its probability; for a batch, one "
                                           "result per review, in order",
                            "content": _json({"oneOf": [_ref(PredictionOut), _ref(BatchOut)]},
                                             prediction)},
                    **_errors(400, 403, 413, 415, 429)},
            }},
            "/api/feedback": {"post": {
                "summary": "Say whether a prediction was correct; the model learns from it",
                "operationId": "feedback",
                "requestBody": {"required": True, "content": _json(
                    _ref(FeedbackRequest), {"prediction_id": EXAMPLE_TOKEN, "correct": False})},
                "responses": {
                    "201": {"description": "stored; learned unless held for an operator "
                                           "(the trust policy or the guard)",
                            "content": _json(_ref(FeedbackOut), {
                                "feedback_id": 613, "prediction_id": EXAMPLE_TOKEN,
                                "correct": False, "label": "negative",
                                "model_version": "v000003+613"})},
                    **_errors(400, 403, 404, 409, 413, 415, 429)},
            }},
            "/api/health": {"get": {
                "summary": "The model being served, with a digest of its exact state",
                "operationId": "health",
                "responses": {"200": {"description": "serving", "content": _json(
                    _ref(HealthOut), {"status": "ok", "model_version": "v000003+613",
                                      "model_digest": "9f86d081884c7d65...",
                                      "version": "v000003", "applied_feedback_id": 613,
                                      "unsaved_verdicts": 13, "base": "4c74c58be80c0972",
                                      "preset": "default"})}},
            }},
            "/api/stats": {"get": {
                "summary": "How the model is doing: verdicts per day, the share of Incorrect "
                           "presses, versions with their holdout accuracy, quarantines",
                "operationId": "stats",
                "responses": {"200": {"description": "read from the log (at most 5 s old)",
                                      "content": _json(_ref(StatsOut), STATS_EXAMPLE)}},
            }},
        },
        "components": {"schemas": definitions["$defs"]},
    }


def make_blueprint() -> Blueprint:
    docs = Blueprint("apidocs", __name__, url_prefix="/api")

    @docs.get("/openapi.json")
    def document() -> Response:
        return jsonify(openapi_document())

    @docs.get("/docs")
    def page() -> str:
        return render_template("apidocs.html")

    @docs.get("/docs/assets/<name>")
    def asset(name: str) -> Response:
        if name not in ASSETS:
            abort(404, "No such file.")
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, name, max_age=86400)

    return docs
