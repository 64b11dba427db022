"""The app factory: one Flask app around one learner, built from the settings.

The factory has no effect outside the app it returns: it starts no thread and
changes no process-wide setting, so a test may build many apps in one process.
What a serving process needs besides (BLAS thread limits, the background
checkpoint thread, signal handling) is :mod:`sentiment.serving`'s job.
"""

from __future__ import annotations

import os
import pickle
import secrets
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from sentiment.cli import feedback_cli, model_cli
from sentiment.learning.learner import Learner, LearnerConfig
from sentiment.learning.stats import CachedStats
from sentiment.learning.trust import TrustPolicy
from sentiment.models import LINEAR, load_model
from sentiment.models.protocol import ServedModel
from sentiment.settings import Settings, SettingsError
from sentiment.storage import LogUnavailable, open_log
from sentiment.storage.migrations import MigrationNeeded
from sentiment.web import api, dashboard, errors, explore, openapi, pages, security
from sentiment.web.forms import refuse_unreadable_forms
from sentiment.web.limits import install_limits

# The project's root: templates/, static/ and the default instance/ live there.
ROOT = Path(__file__).resolve().parents[2]

# What loading a damaged model folder raises, besides OSError (see SentimentModel.load).
MODEL_ERRORS = (ValueError, KeyError, EOFError, pickle.UnpicklingError)


class StartupError(click.ClickException):
    """The app cannot be built as configured: one line for whoever started it.

    A ClickException, so that ``flask --app app ...`` prints "Error: ..." and
    exits 1 instead of a traceback; ``python app.py`` prints it the same way.
    """


def create_app(config: Mapping[str, Any] | None = None, *,
               base_model: ServedModel | None = None) -> Flask:
    """Build the app; ``config`` overrides the settings (and may set any Flask config key).

    Keys naming a :class:`~sentiment.settings.Settings` field (any case) override
    that setting; others (``TESTING``, ``WTF_CSRF_ENABLED`` ...) go to
    ``app.config`` as they are. ``base_model``: the base model already loaded
    (a server loads it once before forking, so that its workers share it);
    default, loaded from ``model_dir``. It is never trained: the learner trains
    a clone. Everything the app writes lives in the instance folder, so
    several processes given the same folder share one log and one model.

    Raises StartupError when the settings, the instance folder, the database
    or the model cannot be used.
    """
    config = dict(config or {})
    fields = {name.lower() for name in config} & set(Settings.model_fields)
    overrides = {key: config.pop(key) for key in list(config) if key.lower() in fields}
    try:
        settings = Settings.load(overrides)
    except SettingsError as exc:
        raise StartupError(str(exc)) from None
    try:
        return _build(settings, config, base_model)
    except StartupError:
        raise
    except (OSError, sqlite3.Error, LogUnavailable, MigrationNeeded, *MODEL_ERRORS) as exc:
        raise StartupError(f"cannot start the app: {exc}") from exc


def _build(settings: Settings, flask_config: dict[str, Any],
           base_model: ServedModel | None) -> Flask:
    instance = settings.instance
    app = Flask(__name__, instance_path=str(instance.absolute()),
                template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    if instance.exists() and not instance.is_dir():
        raise NotADirectoryError(f"the instance folder {instance} is a file (INSTANCE_PATH)")
    instance.mkdir(parents=True, exist_ok=True)
    app.config.update(settings.flask_config())
    app.config.update(flask_config)
    app.extensions["settings"] = settings
    if not app.config.get("SECRET_KEY"):
        given = settings.secret_key
        app.config["SECRET_KEY"] = given.get_secret_value() if given else secret_key(instance)

    errors.register(app)
    refuse_unreadable_forms(app)  # before CSRFProtect: it would report a missing token
    csrf = CSRFProtect(app)
    limits = install_limits(app, settings)
    app.register_blueprint(pages.make_blueprint(limits))
    app.register_blueprint(explore.make_blueprint())
    app.register_blueprint(openapi.make_blueprint())
    app.register_blueprint(dashboard.make_blueprint())
    app.register_blueprint(csrf.exempt(api.make_blueprint(limits)))  # JSON: no cookies, no forms
    if settings.trusted_proxies:
        # The client's address, scheme and host as the proxies saw them: limits and
        # repeated verdicts are counted per client, not per proxy.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    security.install(app)  # its checks run first: a refused request costs nothing
    app.config["SESSION_COOKIE_SECURE"] = settings.secure_cookies
    app.cli.add_command(model_cli)
    app.cli.add_command(feedback_cli)

    model_dir = Path(settings.model_dir)
    feedback = open_log(settings.database_url, settings.sqlite_path,
                        durable=settings.durable_commits,
                        # + the checkpoint timer's, the follower's and the versions lock's
                        connections=settings.threads + 3)
    app.extensions["learner"] = Learner(
        base_model or load_model(model_dir),
        feedback,
        Path(settings.models_dir or instance / "models"),
        holdout_path=model_dir / "holdout.csv.gz",
        config=LearnerConfig(
            checkpoint_every=settings.checkpoint_every,
            checkpoint_seconds=settings.checkpoint_seconds,
            guard=settings.guard,
            guard_margin=settings.guard_margin,
            keep_versions=settings.keep_versions,
            trust=TrustPolicy() if settings.trust else None,
        ),
    )
    app.extensions["stats"] = CachedStats(app.extensions["learner"])
    manifest = app.extensions["learner"].base.manifest
    app.jinja_env.globals["served_model"] = (  # the footer of every page
        "A linear model trained out-of-core" if manifest.get("kind", LINEAR) == LINEAR
        else f"A Keras model ({manifest.get('preset')}) trained")
    return app


def learner_of(app: Flask) -> Learner:
    learner: Learner = app.extensions["learner"]
    return learner


def secret_key(instance: Path) -> str:
    """A key generated once into the instance folder and read back by every process.

    Several processes may start at once on a new instance folder: the key is
    written to a private temporary file and linked into place, which fails
    if another process won; everyone then reads the winner's complete key.
    """
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
