"""The web app: review form, results, feedback, JSON API.

``create_app`` builds it around one :class:`~learner.Learner`, which owns the
live model and the feedback log. ``python app.py`` serves it with waitress.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import pickle
import re
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from flask import (
    Config,
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFError, CSRFProtect
from limits import parse_many
from threadpoolctl import threadpool_limits
from werkzeug.exceptions import HTTPException

import heap
from cli import register_cli
from feedback import MAX_ID, FeedbackError, FeedbackLog, UnknownPrediction
from forms import MAX_REVIEW, MIN_REVIEW, VERDICT_BUTTONS, WORDLESS, FeedbackForm, ReviewForm
from learner import Learner, LearnerConfig
from model import SentimentModel
from vectorizer import PKL_DIR, has_words
from workers import DEFAULT_THREADS, bind, serve_forked, usable_cores

ROOT = Path(__file__).resolve().parent
MAX_BATCH = 1_000

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": str(PKL_DIR),
    "DATABASE": None,  # default: <instance>/reviews.sqlite
    "MODELS_DIR": None,  # default: <instance>/models
    "DURABLE_COMMITS": True,
    "CHECKPOINT_EVERY": 200,
    "CHECKPOINT_SECONDS": 60.0,
    "GUARD": True,
    "GUARD_MARGIN": 0.01,
    "KEEP_VERSIONS": 10,
    "MAX_CONTENT_LENGTH": 32 * 1024 * 1024,
    "BACKGROUND_CHECKPOINTS": True,
    # Per client (remote address), per process. Limits use Flask-Limiter's
    # notation; point RATELIMIT_STORAGE_URI at memcached or redis to share
    # the counts between processes. Predictions count reviews: a batch of N
    # reviews counts N (see predictions_asked).
    "RATE_LIMITS": True,
    "PREDICT_LIMIT": "1200 per minute; 12000 per hour",
    "VERDICT_LIMIT": "30 per minute; 300 per hour",
    "RATELIMIT_STORAGE_URI": "memory://",
}


class StartupError(click.ClickException):
    """The app cannot be built as configured: one line for whoever started it.

    A ClickException, so that ``flask --app app ...`` prints "Error: ..." and
    exits 1 instead of a traceback; ``python app.py`` prints it the same way.
    """


class ConfigError(StartupError, ValueError):
    """A setting the app cannot run with; the message names it as it is set."""


# (key, kind, smallest value): the settings checked before anything starts.
NUMBERS = (("CHECKPOINT_EVERY", int, 1), ("CHECKPOINT_SECONDS", float, 0.001),
           ("GUARD_MARGIN", float, 0.0), ("KEEP_VERSIONS", int, 1),
           ("MAX_CONTENT_LENGTH", int, 1))
SWITCHES = ("GUARD", "DURABLE_COMMITS", "RATE_LIMITS", "BACKGROUND_CHECKPOINTS")
FOLDERS = ("MODEL_DIR", "DATABASE", "MODELS_DIR")  # DATABASE and MODELS_DIR: None for default
RATES = ("PREDICT_LIMIT", "VERDICT_LIMIT")


def check_settings(config: dict[str, Any]) -> None:
    """Refuse a setting of the wrong kind with its name, before it fails deep inside.

    Environment values are read as JSON (``SENTIMENT_GUARD=false``); a typo
    such as ``no`` stays a string, which would be true, and a rate limit
    Flask-Limiter cannot parse would silently turn that limit off.
    """
    def wrong(key: str, what: str) -> ConfigError:
        return ConfigError(f"SENTIMENT_{key} must be {what}, not {config[key]!r}")

    for key, kind, least in NUMBERS:
        value = config[key]
        if key == "MAX_CONTENT_LENGTH" and value is None:
            continue
        whole = isinstance(value, int) or kind is float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not whole \
                or value < least:
            raise wrong(key, f"{'an integer' if kind is int else 'a number'} >= {least}")
    for key in SWITCHES:
        if not isinstance(config[key], bool):
            raise wrong(key, "true or false")
    for key in FOLDERS:
        value = config[key]
        if not (isinstance(value, (str, os.PathLike)) and str(value)
                or value is None and key != "MODEL_DIR"):
            raise wrong(key, "a path")
    for key in RATES:
        try:
            parse_many(config[key])
        except (ValueError, TypeError):
            raise wrong(key, 'rate limits such as "1200 per minute; 12000 per hour"') from None


# What loading a damaged model folder raises, besides OSError (see SentimentModel.load).
MODEL_ERRORS = (ValueError, KeyError, EOFError, pickle.UnpicklingError)

# Base models loaded ahead of any app (see preload_model), by resolved folder.
_preloaded: dict[str, SentimentModel] = {}


def settings(overrides: dict[str, Any] | None = None) -> Config:
    """DEFAULTS overridden by SENTIMENT_* variables, then ``overrides``; checked
    (raises ConfigError)."""
    config = Config(str(ROOT))
    config.update(DEFAULTS)
    config.from_prefixed_env("SENTIMENT")
    config.update(overrides or {})
    check_settings(config)
    return config


def preload_model(model_dir: Path | None = None) -> SentimentModel:
    """Load the base model now, for every app this process and its forks will build.

    The pre-forked server calls this in the parent: the ~8 MB of weights and
    feature scales are then shared by all workers instead of loaded into
    each. Sharing is safe because nobody trains a base model (every learner
    trains its own clone). ``model_dir``: default, MODEL_DIR as
    :func:`create_app` resolves it from DEFAULTS and SENTIMENT_* variables.
    """
    if model_dir is None:
        model_dir = Path(settings()["MODEL_DIR"])
    model = SentimentModel.load(model_dir)
    _preloaded[str(Path(model_dir).resolve())] = model
    return model


def secret_key(instance: Path) -> str:
    """SECRET_KEY from the environment, else one generated once into the instance folder.

    Several processes may start at once on a new instance folder: the key is
    written to a private temporary file and linked into place, which fails
    if another process won; everyone then reads the winner's complete key.
    """
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = instance / "secret_key"
    if not path.exists():
        tmp = instance / f".secret_key.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app around one learner; ``config`` overrides DEFAULTS and SENTIMENT_* env.

    Everything the app writes lives in the instance folder (``INSTANCE_PATH``),
    so several processes given the same folder share one log and one model.
    Raises StartupError when the settings, the instance folder, the database or
    the model cannot be used.
    """
    try:
        return _build_app(config)
    except StartupError:
        raise
    except (OSError, sqlite3.Error, *MODEL_ERRORS) as exc:
        raise StartupError(f"cannot start the app: {exc}") from exc


def _build_app(config: dict[str, Any] | None) -> Flask:
    app = Flask(__name__, instance_path=(config or {}).get("INSTANCE_PATH")
                or os.environ.get("INSTANCE_PATH") or str(ROOT / "instance"))
    app.config.update(settings(config))
    instance = Path(app.instance_path)
    if instance.exists() and not instance.is_dir():
        raise NotADirectoryError(f"the instance folder {instance} is a file (INSTANCE_PATH)")
    instance.mkdir(parents=True, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(instance)
    refuse_unreadable_forms(app)  # before CSRFProtect: it would report the missing token
    CSRFProtect(app)
    app.config["RATELIMIT_ENABLED"] = bool(app.config["RATE_LIMITS"])
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter = Limiter(client_id, app=app)
    app.extensions["rate_limiter"] = limiter  # Flask-Limiter itself keeps only a weak reference

    # The app multiplies one review at a time: BLAS threads only add hand-offs
    # (they made each single-review partial_fit ~8x slower on 2 cores).
    threadpool_limits(limits=1, user_api="blas")
    model_dir = Path(app.config["MODEL_DIR"])
    feedback = FeedbackLog(Path(app.config["DATABASE"] or instance / "reviews.sqlite"),
                           durable=app.config["DURABLE_COMMITS"])
    learner = Learner(
        _preloaded.get(str(model_dir.resolve())) or SentimentModel.load(model_dir),
        feedback,
        Path(app.config["MODELS_DIR"] or instance / "models"),
        holdout_path=model_dir / "holdout.csv.gz",
        config=LearnerConfig(
            checkpoint_every=int(app.config["CHECKPOINT_EVERY"]),
            checkpoint_seconds=float(app.config["CHECKPOINT_SECONDS"]),
            guard=bool(app.config["GUARD"]),
            guard_margin=float(app.config["GUARD_MARGIN"]),
            keep_versions=int(app.config["KEEP_VERSIONS"]),
        ),
    )
    app.extensions["learner"] = learner
    if app.config["BACKGROUND_CHECKPOINTS"]:
        _start_checkpoint_timer(learner)

    # The largest batch the prediction limits could ever let through (see predictions_asked).
    app.extensions["batch_limit"] = min(parse_many(app.config["PREDICT_LIMIT"]),
                                        key=lambda limit: limit.amount)
    predictions = limiter.shared_limit(lambda: app.config["PREDICT_LIMIT"], scope="predictions",
                                       cost=predictions_asked)
    verdicts = limiter.shared_limit(lambda: app.config["VERDICT_LIMIT"], scope="verdicts")
    register_routes(app, learner, predictions, verdicts)
    register_api(app, learner, predictions, verdicts)
    register_errors(app)
    register_cli(app)
    return app


def _start_checkpoint_timer(learner: Learner) -> None:
    """Checkpoint every few seconds when verdicts are waiting, even with no traffic."""
    interval = max(1.0, min(learner.config.checkpoint_seconds, 10.0))

    def run() -> None:
        while True:
            try:
                learner.sync()
            except Exception:  # keep the timer alive; the next request will retry
                log.exception("background checkpoint failed")
            time.sleep(interval)

    threading.Thread(target=run, name="checkpoint-timer", daemon=True).start()


def refuse_unreadable_forms(app: Flask) -> None:
    """A URL-encoded form body that is not UTF-8 gets a 400 saying so.

    Werkzeug drops such a form whole (browsers percent-encode every byte, so
    only a hand-made request has one), and the first check to notice would be
    the CSRF one, whose message about an expired form would mislead.
    """
    @app.before_request
    def form_is_utf8() -> None:
        if (request.method != "POST" or request.path.startswith("/api/")  # JSON, any type
                or request.mimetype != "application/x-www-form-urlencoded"):
            return
        try:
            request.get_data(cache=True).decode("utf-8")  # Werkzeug parses these cached bytes
        except UnicodeDecodeError:
            abort(400, "This form could not be read: its body must be URL-encoded UTF-8 "
                       "text, as browsers send it.")


def client_id() -> str:
    return request.remote_addr or "unknown"


# -- HTML pages ---------------------------------------------------------------
def register_routes(app: Flask, learner: Learner, predictions: Callable,
                    verdicts: Callable) -> None:
    @app.get("/")
    def index():
        return render_template("index.html", form=ReviewForm())

    def typed_text_only() -> None:
        """The forms take typed text; a field sent as a file would reach the validators
        as a file object (multipart parts with a file name are files, not text)."""
        if request.files:
            abort(400, "This form takes typed text, not uploaded files.")

    @app.post("/results")
    @predictions
    def results():
        typed_text_only()
        form = ReviewForm()
        if not form.validate_on_submit():
            return render_template("index.html", form=form), 400
        review = form.review.data
        # Tokenized once, for the prediction and its explanation.
        tokens = learner.model.vectorizer.tokenize(review)
        if not tokens or not has_words(review):
            form.review.errors.append(f"Your review {WORDLESS}")
            return render_template("index.html", form=form), 400
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

    @app.post("/thanks")
    @verdicts
    def thanks():
        typed_text_only()
        form = FeedbackForm()
        verdict = form.verdict() if form.validate_on_submit() else None
        if verdict is None:
            abort(400, "This feedback form is incomplete or was tampered with. "
                       "Please analyse your review again.")
        stored = learner.verdict(int(form.prediction_id.data), verdict, client_id())
        return render_template("thanks.html", verdict=stored)

    @app.get("/thanks")
    def thanks_get():
        return redirect(url_for("index"))


# -- JSON API -------------------------------------------------------------------
class ApiError(Exception):
    """A JSON API request that cannot be served; answered as {"error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
              bool: "boolean", type(None): "null"}


# A JSON string (escapes included), or a character that opens a value in a list or object.
JSON_STRING_OR_SEPARATOR = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{,]')
# A valid request holds one object and at most one list of MAX_BATCH reviews.
MAX_SEPARATORS = MAX_BATCH + 16
# Smaller bodies parse into a few MB at most, whatever they hold: not counted.
COUNT_VALUES_ABOVE = 64 * 1024


def too_many_values(raw: bytes) -> bool:
    """Whether ``raw`` holds more JSON values than any valid request.

    Counted before parsing: parsed, 32 MB of ``{},`` are 11 million dicts and
    1 GB of memory, only to be refused for holding too many reviews. Commas and
    opening brackets outside strings bound the number of values; the count
    stops at the limit, so that a body of millions costs no more than a valid one.
    """
    separators = 0
    for match in JSON_STRING_OR_SEPARATOR.finditer(raw):
        if match.end() - match.start() == 1:
            separators += 1
            if separators > MAX_SEPARATORS:
                return True
    return False


def json_int(digits: str) -> int:
    """A JSON integer; ApiError for one longer than Python converts (4,300 digits).

    Such a number is valid JSON, so "not valid JSON" would mislead.
    """
    try:
        return int(digits)
    except ValueError:
        raise ApiError(f"the request body holds a number of {len(digits.lstrip('-')):,} "
                       "digits, too long to read") from None


def predictions_asked() -> int:
    """What this request costs against ``PREDICT_LIMIT``: the reviews it asks to predict.

    Counted per request, a limit of 2,000 an hour would let one client ask for
    two million predictions (and store as many rows), 1,000 at a time. A
    request the API refuses costs 1, like any other, and so does a batch
    larger than the smallest limit: it could never pass, so rather than
    spending the client's budget on it, :func:`api_predict` refuses it with a
    400 saying so (see ``g.batch_over_limit``).
    """
    if request.endpoint != "api_predict":
        return 1
    try:
        data = json_body()
    except ApiError:
        return 1
    reviews = data.get("reviews")
    if "review" in data or not isinstance(reviews, list) or not 0 < len(reviews) <= MAX_BATCH:
        return 1
    smallest = current_app.extensions["batch_limit"]
    if len(reviews) > smallest.amount:
        g.batch_over_limit = smallest
        return 1
    return len(reviews)


def json_body() -> dict[str, Any]:
    """The request's JSON object, parsed once per request (the rate limiter reads it too)."""
    if "json_body" not in g:
        try:
            g.json_body = parse_json_body()
        except ApiError as exc:
            g.json_body = exc
    if isinstance(g.json_body, ApiError):
        raise g.json_body
    return g.json_body


def parse_json_body() -> dict[str, Any]:
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    if len(raw) > COUNT_VALUES_ABOVE and too_many_values(raw):
        raise ApiError(f"the request body holds too many JSON values for a request "
                       f"(at most {MAX_BATCH:,} reviews)")
    try:
        data = json.loads(raw, parse_int=json_int)
    except (ValueError, RecursionError):  # bad JSON or UTF-8; absurdly deep nesting
        raise ApiError("the request body is not valid JSON (in UTF-8)") from None
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object, not "
                       + JSON_TYPES.get(type(data), type(data).__name__))
    return data


def check_review(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ApiError(f"{where} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from a JSON escape
        raise ApiError(f"{where} is not valid Unicode text") from None
    text = value.strip()
    if not MIN_REVIEW <= len(text) <= MAX_REVIEW:
        raise ApiError(
            f"{where} must be {MIN_REVIEW} to {MAX_REVIEW:,} characters long (got {len(text):,})"
        )
    return text


def register_api(app: Flask, learner: Learner, predictions: Callable,
                 verdicts: Callable) -> None:
    csrf = app.extensions["csrf"]

    @app.errorhandler(ApiError)
    def bad_request(exc: ApiError):
        return jsonify(error=exc.message), exc.status

    @app.post("/api/predict")
    @csrf.exempt
    @predictions
    def api_predict():
        data = json_body()
        if limit := g.get("batch_over_limit"):
            raise ApiError(f'"reviews" holds {len(data["reviews"]):,} reviews, more than the '
                           f"rate limit allows at once ({limit}, each review counting one): "
                           f"send at most {limit.amount:,} per request")
        if ("review" in data) == ("reviews" in data):
            raise ApiError('give exactly one of "review" (a string) or "reviews" (a list)')
        if "review" in data:
            reviews = [check_review(data["review"], "review")]
        else:
            items = data["reviews"]
            if not isinstance(items, list) or not items:
                raise ApiError('"reviews" must be a non-empty list of strings')
            if len(items) > MAX_BATCH:
                raise ApiError(f'"reviews" holds {len(items):,} reviews; at most {MAX_BATCH:,}')
            reviews = [check_review(r, f"reviews[{i}]") for i, r in enumerate(items)]
        X = learner.model.transform(reviews)
        wordless = [i for i, (text, n) in enumerate(zip(reviews, np.diff(X.indptr), strict=True))
                    if n == 0 or not has_words(text)]
        if wordless:
            where = "review" if "review" in data else f"reviews[{wordless[0]}]"
            raise ApiError(f"{where} {WORDLESS}")
        results = [
            {"label": p.label, "probability": round(p.probability, 6),
             "prediction_id": pid, "model_version": version}
            for pid, p, version in learner.predict(reviews, client_id(), X)
        ]
        return jsonify(results[0] if "review" in data else {"results": results})

    @app.post("/api/feedback")
    @csrf.exempt
    @verdicts
    def api_feedback():
        data = json_body()
        pid, correct = data.get("prediction_id"), data.get("correct")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
            raise ApiError('"prediction_id" must be a positive integer')
        if not isinstance(correct, bool):
            raise ApiError('"correct" must be true or false')
        if pid > MAX_ID:  # cannot exist; SQLite would overflow on it
            raise UnknownPrediction(f"no prediction with id {pid}")
        verdict = learner.verdict(pid, correct, client_id())
        return jsonify(feedback_id=verdict.id, prediction_id=pid, correct=correct,
                       label=("negative", "positive")[verdict.label],
                       model_version=learner.model_version), 201

    @app.get("/api/health")
    def api_health():
        return jsonify(status="ok", **learner.status())


# -- errors -----------------------------------------------------------------------
def size_text(n: int) -> str:
    """4096 -> '4 KB', 32 MiB -> '32 MB', 1000 -> '1,000 bytes'."""
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,} bytes"


def register_errors(app: Flask) -> None:
    def wants_json() -> bool:
        return request.path.startswith("/api/")

    def render_error(status: int, message: str) -> Response:
        if wants_json():
            return make_response(jsonify(error=message), status)
        return make_response(render_template("error.html", status=status, message=message), status)

    @app.errorhandler(FeedbackError)
    def feedback_error(exc: FeedbackError):
        return render_error(exc.status, str(exc))

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return render_error(400, "The form expired or was tampered with (CSRF check failed). "
                                 "Please reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            # Within MAX_CONTENT_LENGTH, only parsing a multipart form answers 413.
            message = (f"The request is larger than the {size_text(limit)} limit."
                       if limit and (request.content_length or 0) > limit
                       else "The form is too large: at most "
                       f"{size_text(app.config['MAX_FORM_MEMORY_SIZE'])} of text per field "
                       f"and {app.config['MAX_FORM_PARTS']:,} fields.")
        if status == 429:
            counted = (", each review of a batch counting one"
                       if request.endpoint == "api_predict" else "")
            message = (f"Too many requests from your address (limit: {exc.description}"
                       f"{counted}). Please wait a little and try again.")
        response = render_error(status, message)
        if status == 405:
            response.headers["Allow"] = ", ".join(exc.valid_methods or [])
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return render_error(500, "Something went wrong on our side; nothing you sent was lost.")


# -- serving ---------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through serve() to the checkpoint in serve_app


def body_limit(app: Flask) -> dict[str, int]:
    """waitress's own limit on request bodies: twice the app's.

    waitress receives a whole body (spooled to disk past 512 KB) before the app
    sees it, up to 1 GB by default. A body a little over MAX_CONTENT_LENGTH
    still gets the app's readable 413; one declaring more than twice as much is
    refused by waitress as its headers arrive, without being received.
    """
    limit = app.config["MAX_CONTENT_LENGTH"]
    return {"max_request_body_size": 2 * limit} if limit else {}


def serve_app(threads: int, sock: socket.socket, ready: Callable[[], None]) -> None:
    """Build the app and serve it on ``sock`` with waitress until SIGTERM or SIGINT,
    then checkpoint. ``ready()``: called once the app is built."""
    from waitress import serve

    try:
        app = create_app()
    except StartupError as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    ready()
    learner: Learner = app.extensions["learner"]
    heap.release_free_memory()  # what loading the model and replaying the log left
    # The ~130,000 objects that exist now (the libraries, the model) live as
    # long as the process. Left to the cyclic collector, each full collection
    # walks them all: a 60 ms pause for every request in flight. Frozen, the
    # collector skips them.
    gc.freeze()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve(app, threads=threads, sockets=[sock], **body_limit(app))
    except KeyboardInterrupt:
        pass
    finally:
        # A second signal (Ctrl-C reaches a pre-forked worker directly and
        # through its parent) must not cut the final checkpoint short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        learner.close()


def whole_number(what: str, least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [least, most], or a message naming ``what``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the sentiment app with waitress.")
    # Defaults from the environment are strings: argparse checks them with the type too.
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="address to listen on (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", default=os.environ.get("PORT", "5000"),
                        type=whole_number("a port number (1-65535; --port or $PORT)", 1, 65535),
                        help="default: $PORT or 5000")
    parser.add_argument("--threads", default=os.environ.get("THREADS", str(DEFAULT_THREADS)),
                        type=whole_number("a number of threads (1 or more; --threads or "
                                          "$THREADS)", 1),
                        help="waitress worker threads per process (default: $THREADS or "
                             f"{DEFAULT_THREADS})")
    parser.add_argument("--workers", default=os.environ.get("WORKERS", str(usable_cores())),
                        type=whole_number("a number of processes (1 or more; --workers or "
                                          "$WORKERS)", 1),
                        help="processes sharing the port (default: $WORKERS or one per CPU "
                             f"core, {usable_cores()} here; see workers.py)")
    parser.add_argument("--debug", action="store_true",
                        help="Flask's debug server (never in production)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # waitress warns for every request that waits for a free thread: at load that
    # is a log line per request, costly and useless; latency shows it anyway.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    heap.configure()  # before any thread starts; forked workers inherit it
    try:
        preload_model()  # before forking, so that the workers share it
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, *MODEL_ERRORS) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 1
    if args.debug:
        app = create_app()
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            app.run(host=args.host, port=args.port, debug=True, use_reloader=False)
        finally:
            app.extensions["learner"].close()
        return 0
    try:  # before building anything: a port in use is told at once
        sockets = bind(args.host, args.port, args.workers)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    try:
        if args.workers > 1:
            return serve_forked(functools.partial(serve_app, args.threads), sockets,
                                args.workers)
        serve_app(args.threads, sockets[0],
                  lambda: print(f"Serving on http://{args.host}:{args.port}", flush=True))
    finally:
        for sock in sockets:
            sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
