"""The JSON API's request and response bodies, as pydantic models.

One definition serves three purposes: validating what clients send, shaping
what the API answers, and (through ``model_json_schema``) describing both.
Every refusal becomes one readable sentence naming the field, in the one
error shape ``{"error": "..."}`` (see :func:`describe`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from sentiment.web.body import MAX_BATCH
from sentiment.web.forms import MAX_REVIEW, MIN_REVIEW, TOKEN_PATTERN


def _review_text(value: str) -> str:
    """A review as the model reads it: valid Unicode, stripped, of a sensible length."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from a JSON escape
        raise PydanticCustomError("unicode", "is not valid Unicode text") from None
    text = value.strip()
    if not MIN_REVIEW <= len(text) <= MAX_REVIEW:
        raise PydanticCustomError(
            "review_length",
            f"must be {MIN_REVIEW} to {MAX_REVIEW:,} characters long (got {len(text):,})")
    return text


ReviewText = Annotated[str, AfterValidator(_review_text),
                       Field(description=f"{MIN_REVIEW} to {MAX_REVIEW:,} characters once "
                                         "stripped, at least one of them a letter or a digit",
                             json_schema_extra={"minLength": MIN_REVIEW,
                                                "maxLength": MAX_REVIEW})]


class Strict(BaseModel):
    """Types as JSON has them (no "1" for 1, no 1 for true) and no field but these."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class PredictOne(Strict):
    """Predict one review."""

    review: ReviewText


class PredictBatch(Strict):
    """Predict a batch of reviews; the answers come in the same order."""

    reviews: list[ReviewText] = Field(min_length=1, max_length=MAX_BATCH)


class FeedbackRequest(Strict):
    """A verdict on a prediction: was its label correct?"""

    prediction_id: str = Field(pattern=TOKEN_PATTERN,
                               description="the token /api/predict returned with the prediction")
    correct: bool


class PredictionOut(BaseModel):
    label: Literal["negative", "positive"]
    probability: float = Field(ge=0.5, le=1.0, description="of the label given")
    prediction_id: str | None = Field(
        description="what /api/feedback takes: an unguessable token, given only to whoever "
                    "asked for the prediction; null while the feedback log is out of reach "
                    "(the prediction is served, but not recorded, so it takes no verdict)")
    model_version: str = Field(description="the version that answered, plus the last verdict "
                                           "it had learned")


class BatchOut(BaseModel):
    results: list[PredictionOut]


class FeedbackOut(BaseModel):
    feedback_id: int
    prediction_id: str
    correct: bool
    label: Literal["negative", "positive"] = Field(description="the label the verdict gives")
    model_version: str = Field(description="the live model's version once it learned this (or "
                                           "held it)")


class LagOut(BaseModel):
    p50: float | None
    p99: float | None
    verdicts: int = Field(description="how many verdicts (the last 10,000 at most) the "
                                      "figures describe")


class HealthOut(BaseModel):
    status: Literal["ok"]
    model_version: str
    model_digest: str = Field(description="sha256 of the exact model state")
    version: str
    applied_feedback_id: int
    unsaved_verdicts: int
    base: str
    preset: str | None
    follow_lag_ms: LagOut = Field(description="how long after their commit this process "
                                              "learned the verdicts other processes took")



class DayOut(BaseModel):
    day: str = Field(description="UTC, YYYY-MM-DD")
    predictions: int
    verdicts: int
    incorrect_share: float | None = Field(description="share of Incorrect presses")
    live_accuracy: float | None = Field(
        description="share of Correct presses: each verdict judges a prediction made before "
                    "the model learned it (progressive validation); lower than the model's "
                    "accuracy when users press only when it is wrong")


class VersionOut(BaseModel):
    name: str
    parent: str | None
    created: str | None
    holdout_accuracy: float | None
    last_feedback_id: int
    current: bool


class QuarantineOut(BaseModel):
    reason: str
    verdicts: int


class StatsOut(BaseModel):
    model_version: str
    predictions: int
    verdicts: int
    incorrect_share: float | None = Field(
        description="share of Incorrect presses among verdicts: what users said of the "
                    "predictions they judged (higher than the error rate when users press "
                    "only when the model is wrong)")
    live_accuracy: float | None = Field(
        description="share of Correct presses: each verdict judges a prediction made before "
                    "the model learned it (progressive validation); lower than the model's "
                    "accuracy when users press only when it is wrong")
    repeats: int = Field(description="verdicts repeating the same client's on the same text "
                                     "(stored, not learned)")
    accepted: int
    quarantined: int
    released: int
    held_by_trust: int = Field(description="of the quarantined, verdicts the trust policy held "
                                           "as they came (the rest: the guard's, or an "
                                           "operator's rollback)")
    days: list[DayOut]
    versions: list[VersionOut]
    quarantines: list[QuarantineOut]


class ErrorOut(BaseModel):
    error: str


# What a missing value or one of the wrong type is told, per field.
FIELD_MESSAGES = {
    "review": "review must be a string",
    "reviews": '"reviews" must be a non-empty list of strings',
    "prediction_id": '"prediction_id" must be the id /api/predict returned (a string)',
    "correct": '"correct" must be true or false',
}


def describe(exc: ValidationError) -> str:
    """The first problem pydantic found, as one sentence naming the field."""
    error = exc.errors()[0]
    loc = error["loc"]
    field = str(loc[0]) if loc else ""
    where = field + "".join(f"[{part}]" for part in loc[1:])
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f'the request body has an unknown field "{where}"'
    if kind in ("unicode", "review_length"):
        return f"{where} {error['msg']}"
    if kind == "too_long" and field == "reviews":
        return f'"reviews" holds {ctx["actual_length"]:,} reviews; at most {MAX_BATCH:,}'
    if len(loc) > 1 and kind == "string_type":
        return f"{where} must be a string"
    return FIELD_MESSAGES.get(field, f"{where}: {error['msg']}")
