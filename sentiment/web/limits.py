"""Per-client rate limits (Flask-Limiter): predictions count reviews, verdicts count one.

Counted per client address. With the default ``memory://`` store each process
counts alone, so N processes let a client through N times its limits.
``RATELIMIT_STORAGE_URI=redis://host:6379`` (or ``SENTIMENT_RATELIMIT_STORAGE_URI``)
counts in Redis instead: every process of every host given the same Redis draws
on one budget per client, a counter per client, limit and window that Redis
expires with the window. While Redis is down or unreachable, requests are still
served and each process counts in memory, with the same limits, until Redis
answers again (``Settings.flask_config`` sets Flask-Limiter up for this); each
store then counts from where it was, so a client may get up to one budget more
per process in the window of a switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many

from sentiment.settings import Settings
from sentiment.web.body import MAX_BATCH, BodyError, json_body

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class Limits:
    """The two shared limits, as decorators for the views they count."""

    predictions: Decorator
    verdicts: Decorator


def client_id() -> str:
    return request.remote_addr or "unknown"


def install_limits(app: Flask, settings: Settings) -> Limits:
    # Registered first, so that it runs after Flask-Limiter's own (after-request
    # functions run in reverse order), which adds the headers.
    app.after_request(_retry_after_only_when_refused)
    limiter = Limiter(client_id, app=app)
    app.extensions["rate_limiter"] = limiter  # Flask-Limiter itself keeps only a weak reference
    # The largest batch the prediction limits could ever let through (see predictions_asked).
    app.extensions["batch_limit"] = min(parse_many(settings.predict_limit),
                                        key=lambda limit: limit.amount)
    return Limits(
        predictions=limiter.shared_limit(settings.predict_limit, scope="predictions",
                                         cost=predictions_asked, deduct_when=served),
        verdicts=limiter.shared_limit(settings.verdict_limit, scope="verdicts",
                                      deduct_when=served),
    )


def served(response: Response) -> bool:
    """Whether a request counts against its client's limits: only what was served.

    With ``deduct_when``, Flask-Limiter first tests whether the request's cost
    still fits and deducts it after the response: a refused request (a batch
    larger than what is left, a 400) costs nothing, where deducting first let
    one over-budget batch use up the rest of the minute.
    """
    return response.status_code < 400


def _retry_after_only_when_refused(response: Response) -> Response:
    """Flask-Limiter's headers give Retry-After on every response; it means "wait" (RFC
    9110), so only a 429 keeps it. A 503 for a log out of reach gets back the error
    handler's own (``g.retry_after``), which Flask-Limiter's hook had replaced by the
    end of the client's rate-limit window (an hour, say)."""
    own = g.get("retry_after")
    if own is not None:
        response.headers["Retry-After"] = str(own)
    elif response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def batch_limit() -> RateLimitItem:
    limit: RateLimitItem = current_app.extensions["batch_limit"]
    return limit


def predictions_asked() -> int:
    """What this request costs against the prediction limit: the reviews it asks to predict.

    Counted per request, a limit of 2,000 an hour would let one client ask for
    two million predictions (and store as many rows), 1,000 at a time. A
    request the API refuses costs 1, like any other, and so does a batch
    larger than the smallest limit: it could never pass, so the API refuses it
    with a 400 saying so (see ``g.batch_over_limit``). Only what is served is
    deducted (see :func:`served`).
    """
    if request.endpoint != "api.predict":
        return 1
    try:
        data = json_body()
    except BodyError:
        return 1
    reviews = data.get("reviews")
    if "review" in data or not isinstance(reviews, list) or not 0 < len(reviews) <= MAX_BATCH:
        return 1
    smallest = batch_limit()
    if len(reviews) > smallest.amount:
        g.batch_over_limit = smallest
        return 1
    return len(reviews)
