"""The two HTML forms. Flask-WTF adds a CSRF token to both."""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Flask, abort, request
from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, Regexp

MIN_REVIEW = 15
# A prediction token (sentiment.storage.log.prediction_tokens: 11 hex digits of
# time, then URL-safe base64 of 16 random bytes; before, only the latter); a
# little room in the length for tokens of another size.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
MAX_REVIEW = 20_000
# A review with no word the model reads (only punctuation, symbols or markup)
# would get the model's bias as its prediction, and a verdict on it would
# teach nothing but that bias: refused, like a too-short one.
WORDLESS = "has no words the model can read: please write a few words about the movie."


def strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class ReviewForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped: FlaskForm is Any
    review = TextAreaField(
        "Your movie review",
        filters=[strip],
        validators=[
            InputRequired(message="Please write a review."),
            Length(min=MIN_REVIEW, max=MAX_REVIEW,
                   message=f"A review must be {MIN_REVIEW} to {MAX_REVIEW:,} characters long."),
        ],
    )
    submit = SubmitField("Analyse")


# The verdict buttons' labels (results.html writes the form's fields out itself).
VERDICT_BUTTONS = {"correct": "Correct", "incorrect": "Incorrect"}


class FeedbackForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped: FlaskForm is Any
    """Carries only the prediction's token and the verdict: the server never trusts
    a review text or a label sent back by the browser."""

    prediction_id = HiddenField(validators=[InputRequired(), Regexp(TOKEN_PATTERN)])
    correct = SubmitField(VERDICT_BUTTONS["correct"])
    incorrect = SubmitField(VERDICT_BUTTONS["incorrect"])

    def verdict(self) -> bool | None:
        """True/False for the button pressed; None if it is not exactly one."""
        if self.correct.data == self.incorrect.data:
            return None
        return bool(self.correct.data)


def refuse_unreadable_forms(app: Flask) -> None:
    """A URL-encoded form body that is not UTF-8 gets a 400 saying so.

    Werkzeug drops such a form whole (browsers percent-encode every byte, so
    only a hand-made request has one), and the first check to notice would be
    the CSRF one, whose message about an expired form would mislead. Registered
    before CSRFProtect, whose check runs on every POST.
    """
    @app.before_request
    def form_is_utf8() -> None:
        if (request.method != "POST" or request.path.startswith("/api/")  # JSON, any type
                or request.mimetype != "application/x-www-form-urlencoded"):
            return
        try:
            body = request.get_data(cache=True).decode("utf-8")  # Werkzeug parses these bytes
            # Percent-escapes too: Werkzeug would turn %FF, or a lone surrogate's
            # %ED%A0%80, into U+FFFD, and the form would take a text the API refuses.
            parse_qsl(body, keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            abort(400, "This form could not be read: its body must be URL-encoded UTF-8 "
                       "text, as browsers send it.")


def typed_text_only() -> None:
    """The forms take typed text; a field sent as a file would reach the validators
    as a file object (multipart parts with a file name are files, not text)."""
    if request.files:
        abort(400, "This form takes typed text, not uploaded files.")
