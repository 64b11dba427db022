"""The JSON API: /api/predict, /api/feedback, /api/health.

Bodies are read by :mod:`sentiment.web.body` and checked by the pydantic
models of :mod:`sentiment.web.schemas`; every refusal is ``{"error": "..."}``
with a 4xx status (see :mod:`sentiment.web.errors`).
"""

from __future__ import annotations

from typing import TypeVar

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ValidationError

from sentiment.learning.learner import Learner
from sentiment.learning.stats import CachedStats
from sentiment.models.state import LABELS
from sentiment.text.tokenizer import has_words
from sentiment.web.body import BodyError, json_body
from sentiment.web.forms import WORDLESS
from sentiment.web.limits import Limits, client_id
from sentiment.web.schemas import (
    BatchOut,
    FeedbackOut,
    FeedbackRequest,
    HealthOut,
    PredictBatch,
    PredictionOut,
    PredictOne,
    StatsOut,
    describe,
)


def _learner() -> Learner:
    learner: Learner = current_app.extensions["learner"]
    return learner


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M]) -> M:
    try:
        return model.model_validate(json_body())
    except ValidationError as exc:
        raise BodyError(describe(exc)) from None


def _answer(body: BaseModel, status: int = 200) -> tuple[Response, int]:
    return jsonify(body.model_dump()), status


def make_blueprint(limits: Limits) -> Blueprint:
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.post("/predict")
    @limits.predictions
    def predict() -> tuple[Response, int]:
        data = json_body()
        if limit := g.get("batch_over_limit"):
            raise BodyError(f'"reviews" holds {len(data["reviews"]):,} reviews, more than the '
                            f"rate limit allows at once ({limit}, each review counting one): "
                            f"send at most {limit.amount:,} per request")
        if ("review" in data) == ("reviews" in data):
            raise BodyError('give exactly one of "review" (a string) or "reviews" (a list)')
        one = "review" in data
        reviews = [_validated(PredictOne).review] if one else _validated(PredictBatch).reviews
        learner = _learner()
        X = learner.model.transform(reviews)
        counts = learner.model.feature_counts(X)
        wordless = [i for i, (text, n) in enumerate(zip(reviews, counts, strict=True))
                    if n == 0 or not has_words(text)]
        if wordless:
            raise BodyError(f"{'review' if one else f'reviews[{wordless[0]}]'} {WORDLESS}")
        results = [
            PredictionOut(label=p.label, probability=round(p.probability, 6),
                          prediction_id=pid, model_version=version)
            for pid, p, version in learner.predict(reviews, client_id(), X)
        ]
        return _answer(results[0] if one else BatchOut(results=results))

    @api.post("/feedback")
    @limits.verdicts
    def feedback() -> tuple[Response, int]:
        request = _validated(FeedbackRequest)
        pid = request.prediction_id
        learner = _learner()
        verdict = learner.verdict(pid, request.correct, client_id())
        return _answer(FeedbackOut(feedback_id=verdict.id, prediction_id=pid,
                                   correct=request.correct, label=LABELS[verdict.label],
                                   model_version=learner.model_version), 201)

    @api.get("/health")
    def health() -> tuple[Response, int]:
        return _answer(HealthOut(status="ok", **_learner().status()))

    @api.get("/stats")
    def stats() -> tuple[Response, int]:
        cached: CachedStats = current_app.extensions["stats"]
        return _answer(StatsOut(**cached.get()))

    return api

