"""The HTML side: review form, results page, feedback buttons, thanks page, error pages.

Every check that something was stored (or was not) reads the SQLite file the
app writes, ``instance/reviews.sqlite``, with a separate connection.
"""

from __future__ import annotations

import datetime as dt
import html as htmllib
import io
import re
import sqlite3
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask

POSITIVE_REVIEW = ("A wonderful and brilliant film. The cast was superb, the story moving "
                   "and the ending beautiful. I loved it.")
NEGATIVE_REVIEW = ("An awful and boring film. The plot was terrible, the script dull "
                   "and the ending a mess. What a waste.")


# -- helpers ------------------------------------------------------------------------
class Forms(HTMLParser):
    """The forms of a page: action, method and their named fields."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"),
                               "fields": []})
        elif tag in ("input", "textarea", "button", "select") and self.forms and a.get("name"):
            self.forms[-1]["fields"].append(
                {"tag": tag, "name": a["name"], "type": a.get("type"), "value": a.get("value")})

    def form(self, action: str) -> dict:
        matches = [f for f in self.forms if f["action"] == action]
        assert len(matches) == 1, f"expected one form posting to {action}: {self.forms}"
        return matches[0]


def field(form: dict, name: str) -> str | None:
    values = [f["value"] for f in form["fields"] if f["name"] == name]
    assert len(values) == 1, f"expected one field {name!r}: {form['fields']}"
    return values[0]


def db_path(app: Flask) -> Path:
    path = Path(app.instance_path) / "reviews.sqlite"
    assert path.is_file()
    return path


def query(app: Flask, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db_path(app)) as db:
        return db.execute(sql, args).fetchall()


def counts(app: Flask) -> tuple[int, int]:
    """(predictions, feedback) rows."""
    return (query(app, "SELECT COUNT(*) FROM predictions")[0][0],
            query(app, "SELECT COUNT(*) FROM feedback")[0][0])


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no element #{element_id} in the page"
    return match.group(1).strip()


def error_message(html: str) -> str:
    return text_of(html, "error")


def assert_shown_probability(shown: str, probability: float) -> None:
    """The page rounds to 0.1 % but never shows a certainty of 100.0 %."""
    shown = htmllib.unescape(shown)
    if probability >= 0.9995:
        assert shown == "> 99.9%"
    else:
        assert re.fullmatch(r"\d{2}\.\d%", shown), shown
        assert float(shown.rstrip("%")) == round(probability * 100, 1)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def analyse(client, review: str, token: str | None = None):
    data = {"review": review}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/results", data=data)


def assert_readable_error(response, status: int, message: str) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == status, body[:500]
    assert response.mimetype == "text/html"
    assert "Traceback" not in body and "Internal Server Error" not in body
    assert message in error_message(body)
    assert 'href="/"' in body  # a way back to the form


@pytest.fixture
def csrf_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()  # CSRF on, as in production


@pytest.fixture
def csrf_client(csrf_app: Flask):
    return csrf_app.test_client()


@pytest.fixture
def results_page(csrf_app: Flask, csrf_client):
    """A CSRF-protected round trip to the results page of POSITIVE_REVIEW."""
    token = csrf_token(csrf_client.get("/").get_data(as_text=True))
    response = analyse(csrf_client, POSITIVE_REVIEW, token)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    form = Forms(html).form("/thanks")
    return html, form


# -- the form -------------------------------------------------------------------------
def test_index_renders_the_form_with_a_csrf_token(csrf_client) -> None:
    response = csrf_client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    form = Forms(html).form("/results")
    assert form["method"] == "post"
    names = {f["name"]: f["tag"] for f in form["fields"]}
    assert names["review"] == "textarea"
    assert len(csrf_token(html)) > 20


TOO_SHORT = "A review must be 15 to 20,000 characters long."


@pytest.mark.parametrize("review, message", [
    ("too short", TOO_SHORT),
    ("x" * 14, TOO_SHORT),
    ("   " + "x" * 14 + "   \n\t", TOO_SHORT),  # 20 characters, but 14 once stripped
    ("              \n\n          ", TOO_SHORT),
    ("?!?!?!?!?!?!?!?!?!?! <br /> 🎬🎬🎬", "Your review has no words the model can read"),
])
def test_unreadable_review_is_rejected_on_the_form(app: Flask, client, review: str,
                                                   message: str) -> None:
    response = analyse(client, review)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    form_html = html[html.index("<form"):html.index("</form>")]
    assert message in form_html
    assert 'aria-invalid="true"' in form_html
    assert counts(app) == (0, 0)


def test_review_sent_as_a_file_is_rejected(csrf_app: Flask, csrf_client) -> None:
    token = csrf_token(csrf_client.get("/").get_data(as_text=True))
    upload = (io.BytesIO(POSITIVE_REVIEW.encode()), "review.txt")
    response = csrf_client.post("/results", data={"csrf_token": token, "review": upload})
    assert_readable_error(response, 400, "This form takes typed text, not uploaded files.")
    assert counts(csrf_app) == (0, 0)


@pytest.mark.parametrize("encoded, status", [
    # Percent-encoded: Werkzeug made them U+FFFD, and the form took a text the API refuses.
    (b"Great film %FF%FE, loved it a lot", 400),
    (b"Great film \xff\xfe, loved it a lot", 400),  # raw: Werkzeug would drop the whole form
])
def test_a_form_body_that_is_not_utf8_says_so(csrf_app: Flask, csrf_client, encoded: bytes,
                                              status: int) -> None:
    token = csrf_token(csrf_client.get("/").get_data(as_text=True))
    body = b"csrf_token=" + token.encode() + b"&review=" + encoded.replace(b" ", b"+")
    response = csrf_client.post("/results", data=body,
                                content_type="application/x-www-form-urlencoded")
    if status == 400:  # the raw bytes got the CSRF message, which blamed an expired form
        assert_readable_error(response, 400, "must be URL-encoded UTF-8 text")
    assert response.status_code == status
    assert counts(csrf_app) == (status == 200, 0)


def test_missing_review_field_is_rejected(app: Flask, client) -> None:
    response = client.post("/results", data={})
    assert response.status_code == 400
    assert "Please write a review." in response.get_data(as_text=True)
    assert counts(app) == (0, 0)


def test_too_long_review_is_rejected(app: Flask, client) -> None:
    response = analyse(client, "wonderful " * 2000 + "x")  # 20,001 characters
    assert response.status_code == 400
    assert "A review must be 15 to 20,000 characters long." in response.get_data(as_text=True)
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("review", ["x" * 15, "  " + "x" * 15 + "  ", "wonderful " * 2000])
def test_boundary_lengths_are_accepted(app: Flask, client, review: str) -> None:
    response = analyse(client, review)
    assert response.status_code == 200
    assert query(app, "SELECT review FROM predictions") == [(review.strip(),)]


def test_review_form_without_csrf_token_is_refused(csrf_app: Flask, csrf_client) -> None:
    response = analyse(csrf_client, POSITIVE_REVIEW)
    assert_readable_error(response, 400, "CSRF check failed")
    assert counts(csrf_app) == (0, 0)


# -- the results page -------------------------------------------------------------------
def test_results_page_shows_and_stores_the_prediction(csrf_app: Flask, results_page) -> None:
    html, form = results_page
    assert text_of(html, "label") == "positive"
    words = re.findall(r"<code>([^<]+)</code>", html.split('class="pushes"')[1].split("</ul>")[0])
    assert words and {"wonderful", "brilliant", "superb"} & {w for gram in words
                                                            for w in gram.split()}
    buttons = {f["name"]: (f["type"], f["value"]) for f in form["fields"]
               if f["name"] in ("correct", "incorrect")}
    assert buttons == {"correct": ("submit", "Correct"), "incorrect": ("submit", "Incorrect")}

    rows = query(csrf_app, "SELECT token, review, label, probability, model_version, created "
                           "FROM predictions")
    assert len(rows) == 1
    pid, review, label, probability, version, created = rows[0]
    assert review == POSITIVE_REVIEW and label == 1
    assert_shown_probability(text_of(html, "probability"), probability)
    assert version == "base+0" and f"<code>{version}</code>" in html
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(created)
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=1)
    assert field(form, "prediction_id") == pid  # the unguessable token, not the row id
    assert counts(csrf_app) == (1, 0)


def test_feedback_form_carries_only_id_and_verdict(results_page) -> None:
    html, form = results_page
    assert form["method"] == "post"
    assert sorted(f["name"] for f in form["fields"]) == [
        "correct", "csrf_token", "incorrect", "prediction_id"]
    assert {f["type"] for f in form["fields"] if f["name"] == "prediction_id"} == {"hidden"}
    for f in form["fields"]:
        assert "wonderful" not in (f["value"] or "")


def test_review_is_escaped(app: Flask, client) -> None:
    review = "<script>alert('boo')</script> a wonderful <b>brilliant</b> film"
    response = analyse(client, review)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<script>alert" not in html and "<b>brilliant" not in html
    assert "&lt;script&gt;alert(&#x27;boo&#x27;)&lt;/script&gt;" in html
    assert shown_review(html) == review  # what the reader sees is the review, whole
    assert query(app, "SELECT review FROM predictions") == [(review,)]


@pytest.mark.parametrize(("review", "label"), [
    (POSITIVE_REVIEW, "positive"),  # P = 0.9996 with the tiny model: "> 99.9%", not "100.0%"
    (NEGATIVE_REVIEW, "negative"),
    ("The film was superb and gripping.", "positive"),  # about 99.0%
])
def test_label_and_probability_shown(app: Flask, client, review: str, label: str) -> None:
    html = analyse(client, review).get_data(as_text=True)
    assert text_of(html, "label") == label
    [(stored_label, probability)] = query(app, "SELECT label, probability FROM predictions")
    assert stored_label == (label == "positive")
    assert 0.5 <= probability < 1.0
    assert_shown_probability(text_of(html, "probability"), probability)
    meter = r'<meter class="meter" dir="rtl" min="0" max="1" value="([\d.]+)"'
    shown = re.search(meter, html).group(1)
    p_positive = probability if label == "positive" else 1 - probability
    assert float(shown) == round(p_positive, 4)


# -- feedback -------------------------------------------------------------------------------
@pytest.mark.parametrize(("button", "correct", "label"), [("incorrect", 0, 0), ("correct", 1, 1)])
def test_verdict_is_stored_and_thanked(csrf_app: Flask, csrf_client, results_page,
                                       button: str, correct: int, label: int) -> None:
    _, form = results_page
    token = field(form, "prediction_id")
    pid = query(csrf_app, "SELECT id FROM predictions WHERE token = ?", token)[0][0]
    response = csrf_client.post("/thanks", data={
        "csrf_token": field(form, "csrf_token"), "prediction_id": token,
        button: field(form, button)})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Thank you" in html
    assert re.search(r'<a href="/"[^>]*id="again"', html)
    if not correct:
        assert "the model now learns that this review is" in html and "negative" in html
    rows = query(csrf_app, "SELECT prediction_id, correct, label, status FROM feedback")
    assert rows == [(pid, correct, label, "accepted")]
    assert csrf_app.extensions["learner"].applied_id == 1  # applied before "thanks"


def test_server_ignores_review_and_label_sent_back(app: Flask, client) -> None:
    html = analyse(client, POSITIVE_REVIEW).get_data(as_text=True)
    token = re.search(r'name="prediction_id" type="hidden" value="([^"]+)"', html).group(1)
    response = client.post("/thanks", data={"prediction_id": token, "incorrect": "Incorrect",
                                            "review": NEGATIVE_REVIEW, "label": "1"})
    assert response.status_code == 200
    assert query(app, "SELECT correct, label FROM feedback") == [(0, 0)]
    assert query(app, "SELECT review FROM predictions") == [(POSITIVE_REVIEW,)]


def test_a_second_vote_shows_the_verdict_already_recorded(csrf_app: Flask, csrf_client,
                                                            results_page) -> None:
    _, form = results_page
    data = {"csrf_token": field(form, "csrf_token"),
            "prediction_id": field(form, "prediction_id"), "correct": "Correct"}
    assert csrf_client.post("/thanks", data=data).status_code == 200
    before = counts(csrf_app)
    # Another press, a reload of /thanks or the back button: no error code, the result
    response = csrf_client.post("/thanks", data={**data, "correct": "", "incorrect": "Incorrect"})
    assert response.status_code == 303
    view_token = query(csrf_app, "SELECT view_token FROM predictions")[0][0]
    assert response.headers["Location"].endswith(f"/results/{view_token}")
    html = csrf_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "already recorded" in html and 'id="recorded"' in html
    assert "the model was\n  <strong>right</strong>" in html and 'id="correct"' not in html
    assert counts(csrf_app) == before == (1, 1)
    assert query(csrf_app, "SELECT correct FROM feedback") == [(1,)]


def test_a_result_has_a_permalink_that_shows_but_does_not_vote(app: Flask, client) -> None:
    html = analyse(client, POSITIVE_REVIEW).get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" id="permalink"', html).group(1)
    vote_token, view_token = query(app, "SELECT token, view_token FROM predictions")[0]
    assert link.endswith(f"/results/{view_token}") and vote_token not in link
    assert len(view_token) >= 22 and view_token != vote_token  # 128 random bits, its own
    mine = client.get(link)  # the browser that asked: the same page, with its buttons
    assert mine.status_code == 200
    page = mine.get_data(as_text=True)
    label = re.search(r'id="label">(\w+)<', html).group(1)
    assert re.search(r'id="label">(\w+)<', page).group(1) == label
    assert re.search(r'id="probability">([^<]+)<', page).group(1) == \
        re.search(r'id="probability">([^<]+)<', html).group(1)
    assert shown_review(page) == POSITIVE_REVIEW and f'value="{vote_token}"' in page
    shared = app.test_client().get(link)  # anyone else the link reaches
    assert shared.status_code == 200
    other = shared.get_data(as_text=True)
    assert shown_review(other) == POSITIVE_REVIEW and 'id="no-verdict"' in other
    assert vote_token not in other and 'id="correct"' not in other
    client.post("/thanks", data={"prediction_id": vote_token, "incorrect": "Incorrect"})
    after = app.test_client().get(link).get_data(as_text=True)
    assert 'id="recorded"' in after and "<strong>wrong</strong>" in after


def test_an_unknown_permalink_is_a_readable_404(client) -> None:
    assert_readable_error(client.get("/results/" + "A" * 22), 404, "No result has this address")


TAMPERED: dict[str, tuple[Callable[[dict], dict], int, str]] = {
    "a guessed token": (lambda d: {**d, "prediction_id": "A" * 22}, 404,
                        "no prediction with that id"),
    "the integer id": (lambda d: {**d, "prediction_id": "1"}, 400, "tampered with"),  # was 200
    "not a token": (lambda d: {**d, "prediction_id": "1 OR 1=1"}, 400, "tampered with"),
    "a huge token": (lambda d: {**d, "prediction_id": "9" * 80}, 400, "tampered with"),
    "no id": (lambda d: {k: v for k, v in d.items() if k != "prediction_id"}, 400,
              "tampered with"),
    "no button": (lambda d: {k: v for k, v in d.items() if k != "incorrect"}, 400,
                  "tampered with"),
    "both buttons": (lambda d: {**d, "correct": "Correct"}, 400, "tampered with"),
    "id sent as a file": (lambda d: {**d, "prediction_id": (io.BytesIO(b"1"), "id.txt")}, 400,
                          "typed text, not uploaded files"),  # was a 500
    "missing csrf": (lambda d: {k: v for k, v in d.items() if k != "csrf_token"}, 400,
                     "CSRF check failed"),
    "invalid csrf": (lambda d: {**d, "csrf_token": "forged" + d["csrf_token"][6:]}, 400,
                     "CSRF check failed"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_feedback_changes_nothing(csrf_app: Flask, csrf_client, results_page,
                                           case: str) -> None:
    _, form = results_page
    valid = {"csrf_token": field(form, "csrf_token"),
             "prediction_id": field(form, "prediction_id"), "incorrect": "Incorrect"}
    mutate, status, message = TAMPERED[case]
    before = counts(csrf_app)
    response = csrf_client.post("/thanks", data=mutate(valid))
    assert_readable_error(response, status, message)
    assert counts(csrf_app) == before == (1, 0)
    assert csrf_app.extensions["learner"].applied_id == 0
    # ... and the untampered form still works afterwards
    assert csrf_client.post("/thanks", data=valid).status_code == 200
    assert counts(csrf_app) == (1, 1)


def test_get_thanks_redirects_to_the_form(client) -> None:
    response = client.get("/thanks")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


# -- error pages ---------------------------------------------------------------------------
def test_unknown_page_is_a_readable_404(client) -> None:
    assert_readable_error(client.get("/no/such/page"), 404, "not found")


def test_wrong_method_is_a_readable_405(client) -> None:
    # was a 500: the handler set the Allow header on a str instead of a response
    response = client.get("/results")
    assert_readable_error(response, 405, "not allowed")
    assert "POST" in response.headers["Allow"]


def test_oversized_form_is_a_readable_413(make_app: Callable[..., Flask]) -> None:
    app = make_app(WTF_CSRF_ENABLED=False, MAX_CONTENT_LENGTH=4096)
    response = analyse(app.test_client(), "wonderful " * 1000)
    # was "larger than the 0 MB limit": the limit was always printed in whole megabytes
    assert_readable_error(response, 413, "larger than the 4 KB limit")
    assert counts(app) == (0, 0)


def test_oversized_multipart_field_is_a_413_naming_the_limits(csrf_app: Flask,
                                                               csrf_client) -> None:
    token = csrf_token(csrf_client.get("/").get_data(as_text=True))
    response = csrf_client.post("/results", content_type="multipart/form-data",
                                data={"csrf_token": token, "review": "wonderful " * 60_000})
    # was "The request is too large.", with the request far under MAX_CONTENT_LENGTH
    assert_readable_error(response, 413, "The form is too large: at most 488 KB of text per "
                                         "field and 1,000 fields.")
    assert counts(csrf_app) == (0, 0)


def test_secret_key_is_created_once_by_concurrent_starts(tmp_path, monkeypatch):
    """Processes starting together on a new instance folder all get the same full key."""
    import threading

    from sentiment.web.factory import secret_key

    monkeypatch.delenv("SECRET_KEY", raising=False)
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(secret_key(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary left behind


def test_failed_checkpoint_does_not_fail_the_verdict(make_app, monkeypatch):
    """A snapshot that cannot be written (disk full) leaves the committed verdict answered 201."""
    app = make_app(WTF_CSRF_ENABLED=False, CHECKPOINT_EVERY=1)
    learner = app.extensions["learner"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(learner.store, "write", disk_full)
    client = app.test_client()
    pid = client.post("/api/predict", json={"review": "A wonderful, brilliant film."}).json[
        "prediction_id"]
    response = client.post("/api/feedback", json={"prediction_id": pid, "correct": False})
    assert response.status_code == 201
    assert learner.applied_id == response.json["feedback_id"]
    assert learner.version.name == "base"  # nothing was published


def test_health_reports_a_digest_of_the_exact_model(make_app):
    app = make_app(WTF_CSRF_ENABLED=False)
    client = app.test_client()
    before = client.get("/api/health").json
    pid = client.post("/api/predict", json={"review": "A wonderful, brilliant film."}).json[
        "prediction_id"]
    client.post("/api/feedback", json={"prediction_id": pid, "correct": False})
    after = client.get("/api/health").json
    assert before["status"] == after["status"] == "ok"
    assert len(before["model_digest"]) == 64 and before["model_digest"] != after["model_digest"]
    restarted = make_app(WTF_CSRF_ENABLED=False).test_client().get("/api/health").json
    assert restarted["model_digest"] == after["model_digest"]


@pytest.mark.parametrize("setting, message", [
    ({"GUARD": "maybe"}, "SENTIMENT_GUARD must be a valid boolean"),  # a string was true
    ({"CHECKPOINT_EVERY": 2.5}, "SENTIMENT_CHECKPOINT_EVERY must be a valid integer"),
    ({"CHECKPOINT_EVERY": "x"}, "SENTIMENT_CHECKPOINT_EVERY must be a valid integer"),
    ({"CHECKPOINT_EVERY": 0}, "SENTIMENT_CHECKPOINT_EVERY must be greater than or equal to 1"),
    ({"GUARD_MARGIN": -1}, "SENTIMENT_GUARD_MARGIN must be greater than or equal to 0"),
    ({"MODEL_DIR": ""}, "SENTIMENT_MODEL_DIR must be a path"),
    ({"PREDICT_LIMIT": "often"}, "SENTIMENT_PREDICT_LIMIT must be rate limits"),  # was: no limit
])
def test_settings_of_the_wrong_kind_are_refused_by_name(make_app, setting, message) -> None:
    from sentiment.web.factory import StartupError

    with pytest.raises(StartupError, match=re.escape(message)):
        make_app(**setting)


def test_settings_of_the_right_kind_are_taken(make_app, tiny_model_dir: Path) -> None:
    app = make_app(MODEL_DIR=tiny_model_dir, MAX_CONTENT_LENGTH=None, CHECKPOINT_SECONDS=5,
                   PREDICT_LIMIT="5 per second")
    assert app.extensions["learner"].config.checkpoint_seconds == 5.0


def test_examples_fill_the_form_without_javascript(client) -> None:
    from sentiment.web.examples import EXAMPLES

    page = client.get("/").get_data(as_text=True)
    for key, name, _ in EXAMPLES:
        assert f'href="/?example={key}"' in page and f">{name}</a>" in page
    html = client.get("/?example=sarcastic").get_data(as_text=True)
    assert re.search(r"<textarea[^>]*>\s*Oh great, another two hours", html)
    unknown = client.get("/?example=nope").get_data(as_text=True)
    assert re.search(r"<textarea[^>]*>\s*</textarea>", unknown)


def test_the_results_page_names_both_classes_and_its_title_the_result(client) -> None:
    html = analyse(client, POSITIVE_REVIEW).get_data(as_text=True)
    legend = re.search(r'<p class="meter-legend"><span>(\d+)% negative</span>'
                       r"<span>(\d+)% positive</span>", html)
    assert legend and int(legend.group(1)) + int(legend.group(2)) in (99, 100, 101)
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert title.endswith("positive – Movie review sentiment") and "%" in title


def test_the_review_is_shown_with_its_deciding_words_marked(client) -> None:
    review = "Brilliant. Brilliant! A <b>wonderful</b> film,\nbut the ending was awful."
    html = analyse(client, review).get_data(as_text=True)
    quoted = re.search(r'id="review-text">(.*?)</blockquote>', html, re.S).group(1)
    marks = re.findall(r'<mark class="(pos|neg) w([1-4])" title="pushed towards '
                       r'(positive|negative)">([^<]*)</mark>', quoted)
    assert {(m[0], m[2]) for m in marks} <= {("pos", "positive"), ("neg", "negative")}
    assert ("pos", "4", "positive", "Brilliant") in marks or \
        any(word.lower() == "wonderful" for *_, word in marks)
    # the marks wrap words of the text, which stays escaped and whole
    assert html_text(quoted) == review and "&lt;b&gt;" in quoted and "<b>" not in quoted
    assert 'id="legend"' in html
    chips = re.findall(r"<li class=\"(?:pos|neg)\"><code>([^<]+)</code>", html)
    assert chips and len(chips) == len(set(chips))
    assert not any(c in (".", "!", ",") for chip in chips for c in chip.split(" "))


def shown_review(page: str) -> str:
    return html_text(re.search(r'id="review-text">(.*?)</blockquote>', page, re.S).group(1))


def html_text(fragment: str) -> str:
    """What a browser shows of an HTML fragment: tags dropped, entities read."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", fragment))
