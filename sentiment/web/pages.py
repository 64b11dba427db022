"""The HTML pages: the review form, the results with their verdict buttons, the thanks.

Every result has a permalink, ``/results/<view token>``: the same page, for
anyone the link is shared with, showing the verdict once one is given. Its
token only shows; voting takes the prediction's own token, which only the
browser that asked holds. The prediction is stored with that browser's random
id (kept in its signed session), which is how the permalink knows to offer
that browser, and no other, the buttons.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from sentiment.learning.learner import Learner
from sentiment.models.state import LABELS, Prediction
from sentiment.storage.log import DuplicateVerdict, new_token
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
from sentiment.web.highlight import as_html, highlighted
from sentiment.web.limits import Limits, client_id

Page = str | tuple[str, int] | Response
# Phrases listed under the review, and phrases whose words are marked in it.
LISTED, MARKED = 6, 10  # LIME shows ten by default


def make_blueprint(limits: Limits) -> Blueprint:
    pages = Blueprint("pages", __name__)

    @pages.get("/")
    def index() -> Page:
        """The form; ``?example=KEY`` fills it with an example (JavaScript does it in place,
        this is the same without JavaScript)."""
        form = ReviewForm()
        _browser()  # with the form's CSRF secret: one session write, before any result
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
        token, prediction, version = learner.predict([review], client_id(), X,
                                                     browser=_browser())[0]
        view_token = None if token is None else learner.feedback.view_token_for(token)
        return render_template(
            "results.html",
            review=review,
            prediction=prediction,
            prediction_id=token,
            model_version=version,
            **_explained(review, learner.model.explain(review, MARKED, X=X, tokens=tokens)),
            verdicts=VERDICT_BUTTONS,
            permalink=_permalink_to(view_token),
            verdict=None,
            can_vote=token is not None,
            unrecorded=token is None,
        )

    @pages.get("/results/<view_token>")
    def result(view_token: str) -> Page:
        """A result again, by its permalink: for anyone; the buttons only for its asker."""
        learner: Learner = current_app.extensions["learner"]
        stored = learner.feedback.prediction_to_view(view_token)
        if stored is None:
            abort(404, "No result has this address: the link may be cut short or mistyped. "
                       "You can analyse the review again from the form.")
        verdict = learner.feedback.verdict_on(stored.id)
        positive = stored.probability if stored.label == 1 else 1.0 - stored.probability
        mine = stored.browser is not None and stored.browser == session.get("browser")
        return render_template(
            "results.html",
            review=stored.review,
            prediction=Prediction(LABELS[stored.label], stored.probability, positive),
            prediction_id=stored.token if mine else None,
            model_version=stored.model_version,
            **_explained(stored.review, learner.model.explain(stored.review, MARKED)),
            explained_now=learner.model_version,
            verdicts=VERDICT_BUTTONS,
            permalink=_permalink_to(stored.view_token),
            verdict=verdict,
            can_vote=mine and verdict is None,
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
        token = form.prediction_id.data
        try:
            stored = learner.verdict(token, verdict, client_id())
        except DuplicateVerdict:
            # A second press, a reload or the back button: show what was recorded.
            link = _permalink_to(learner.feedback.view_token_for(token))
            if link is None:  # stored before permalinks: the error page says it
                raise
            flash("Your verdict on this result was already recorded; here it is.")
            return redirect(link, 303)
        return render_template("thanks.html", verdict=stored,
                               permalink=_permalink_to(learner.feedback.view_token_for(token)))

    @pages.get("/thanks")
    def thanks_again() -> Page:
        return redirect(url_for("pages.index"))

    return pages


def _explained(review: str, explanation: list[tuple[str, float]]) -> dict[str, object]:
    """The strongest phrases to list, and the review with their words marked."""
    segments = highlighted(review, explanation)
    return {"explanation": explanation[:LISTED], "marked_review": as_html(segments),
            "marks": any(s.push is not None for s in segments)}


def _browser() -> str:
    """This browser's random id, kept in its session (set once, like the CSRF token's
    secret): a prediction stored with it offers its buttons on its permalink here."""
    browser = session.get("browser")
    if not isinstance(browser, str):
        browser = session["browser"] = new_token()
    return browser


def _permalink_to(view_token: str | None) -> str | None:
    """The result's own address (None for a prediction stored before permalinks)."""
    if view_token is None:
        return None
    return url_for("pages.result", view_token=view_token, _external=True)


def _form_again(form: ReviewForm) -> tuple[str, int]:
    """The form with what was typed and why it was refused."""
    return render_template("index.html", form=form, examples=EXAMPLES, min_review=MIN_REVIEW,
                           max_review=MAX_REVIEW), 400
