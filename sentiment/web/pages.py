"""The HTML pages: the review form, the results with their verdict buttons, the thanks."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from sentiment.learning.learner import Learner
from sentiment.text.tokenizer import has_words
from sentiment.web.examples import BY_KEY, EXAMPLES
from sentiment.web.forms import (
    MAX_REVIEW,
    MIN_REVIEW,
    VERDICT_BUTTONS,
    WORDLESS,
    FeedbackForm,
    ReviewForm,
    typed_text_only,
)
from sentiment.web.limits import Limits, client_id

Page = str | tuple[str, int] | Response


def make_blueprint(limits: Limits) -> Blueprint:
    pages = Blueprint("pages", __name__)

    @pages.get("/")
    def index() -> Page:
        """The form; ``?example=KEY`` fills it with an example (JavaScript does it in place,
        this is the same without JavaScript)."""
        form = ReviewForm()
        example = BY_KEY.get(request.args.get("example", ""))
        if example is not None:
            form.review.data = example
        return render_template("index.html", form=form, examples=EXAMPLES,
                               min_review=MIN_REVIEW, max_review=MAX_REVIEW)

    @pages.post("/results")
    @limits.predictions
    def results() -> Page:
        typed_text_only()
        form = ReviewForm()
        if not form.validate_on_submit():
            return _form_again(form)
        review = form.review.data
        learner: Learner = current_app.extensions["learner"]
        # Tokenized once, for the prediction and its explanation.
        tokens = learner.model.tokenize(review)
        if not tokens or not has_words(review):
            form.review.errors.append(f"Your review {WORDLESS}")
            return _form_again(form)
        X = learner.model.transform_tokens([tokens])
        prediction_id, prediction, version = learner.predict([review], client_id(), X)[0]
        return render_template(
            "results.html",
            review=review,
            prediction=prediction,
            prediction_id=prediction_id,
            model_version=version,
            explanation=learner.model.explain(review, X=X, tokens=tokens),
            verdicts=VERDICT_BUTTONS,
        )

    @pages.post("/thanks")
    @limits.verdicts
    def thanks() -> Page:
        typed_text_only()
        form = FeedbackForm()
        verdict = form.verdict() if form.validate_on_submit() else None
        if verdict is None:
            abort(400, "This feedback form is incomplete or was tampered with. "
                       "Please analyse your review again.")
        learner: Learner = current_app.extensions["learner"]
        stored = learner.verdict(form.prediction_id.data, verdict, client_id())
        return render_template("thanks.html", verdict=stored)

    @pages.get("/thanks")
    def thanks_again() -> Page:
        return redirect(url_for("pages.index"))

    return pages


def _form_again(form: ReviewForm) -> tuple[str, int]:
    """The form with what was typed and why it was refused."""
    return render_template("index.html", form=form, examples=EXAMPLES, min_review=MIN_REVIEW,
                           max_review=MAX_REVIEW), 400
