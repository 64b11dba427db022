"""Every refusal as a readable 4xx: an HTML page for the pages, ``{"error": ...}`` for /api/.

No request ever gets a traceback; an unexpected error is logged and answered
with a 500 that says nothing was lost (a verdict is committed before anything
can fail after it).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from sentiment.storage.log import FeedbackError, LogUnavailable
from sentiment.web.body import BodyError

log = logging.getLogger(__name__)


def size_text(n: int) -> str:
    """4096 -> '4 KB', 32 MiB -> '32 MB', 1000 -> '1,000 bytes'."""
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,} bytes"


def render_error(status: int, message: str) -> Response:
    if request.path.startswith("/api/"):
        return make_response(jsonify(error=message), status)
    return make_response(render_template("error.html", status=status, message=message), status)


def register(app: Flask) -> None:
    @app.errorhandler(BodyError)
    def bad_body(exc: BodyError) -> Response:
        return render_error(exc.status, exc.message)

    @app.errorhandler(FeedbackError)
    def feedback_error(exc: FeedbackError) -> Response:
        response = render_error(exc.status, str(exc))
        if isinstance(exc, LogUnavailable):  # the database restarts: soon back
            g.retry_after = exc.retry_after  # (kept by the limits' last hook)
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Response:
        return render_error(400, "The form expired or was tampered with (CSRF check failed). "
                                 "Please reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = _too_large(app)
        if status == 429:
            counted = (", each review of a batch counting one"
                       if request.endpoint == "api.predict" else "")
            message = (f"Too many requests from your address (limit: {exc.description}"
                       f"{counted}). Please wait a little and try again.")
        response = render_error(status, message)
        if status == 405:
            response.headers["Allow"] = ", ".join(getattr(exc, "valid_methods", None) or [])
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return render_error(500, "Something went wrong on our side; nothing you sent was lost.")


def _too_large(app: Flask) -> str:
    limit = app.config.get("MAX_CONTENT_LENGTH")
    # Within MAX_CONTENT_LENGTH, only parsing a multipart form answers 413.
    if limit and (request.content_length or 0) > limit:
        return f"The request is larger than the {size_text(limit)} limit."
    return (f"The form is too large: at most {size_text(app.config['MAX_FORM_MEMORY_SIZE'])} "
            f"of text per field and {app.config['MAX_FORM_PARTS']:,} fields.")
