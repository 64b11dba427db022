"""The app's settings: one typed object, read from the environment once and checked at start.

Every setting is a ``SENTIMENT_<NAME>`` environment variable (the table in
README.md lists them), except three names that the tools around a Flask app
already know: ``INSTANCE_PATH`` (where runtime state lives), ``SECRET_KEY``
and ``NLTK_DATA`` (read by NLTK itself, for training only).

A value of the wrong kind stops the app before anything starts, with one line
per bad value naming the variable as it is set: a typo such as
``SENTIMENT_GUARD=maybe`` would otherwise be taken as true, a rate limit that
Flask-Limiter cannot parse would silently switch that limit off, and a
misspelt ``SENTIMENT_*`` name would silently be ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from limits import parse_many
from pydantic import AfterValidator, AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentiment.text.vectorizer import PKL_DIR

PREFIX = "SENTIMENT_"
# Request threads per server process. With one, a long request (a batch of
# long reviews) stalls its process's other connections; each thread more
# costs CPU in GIL hand-offs (docs/measurements.md, Serving).
DEFAULT_THREADS = 4


class SettingsError(ValueError):
    """Settings the app cannot run with; the message has one line per bad value."""


def _rate_limits(value: str) -> str:
    try:
        if not parse_many(value):
            raise ValueError
    except (ValueError, TypeError):
        raise ValueError('must be rate limits such as "1200 per minute; 12000 per hour"') from None
    return value


RateLimits = Annotated[str, AfterValidator(_rate_limits)]
NonEmptyPath = Annotated[Path, AfterValidator(lambda p: _non_empty(p))]


def _non_empty(path: Path) -> Path:
    if not str(path) or str(path) == ".":
        raise ValueError("must be a path")
    return path


class Settings(BaseSettings):
    """What the app, its server and its operator commands can be told.

    Field names are the variables' names without the prefix, in lower case.
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid",
                                      populate_by_name=True)

    # -- where things are
    model_dir: NonEmptyPath = Field(PKL_DIR, description="the base model")
    explore_dir: NonEmptyPath = Field(PKL_DIR.parent / "reports" / "explore",
                                      description="the data exploration report shown on "
                                                  "/explore/")
    instance_path: Path | None = Field(
        None, validation_alias=AliasChoices("INSTANCE_PATH", "instance_path"),
        description="runtime state: the feedback log, model versions, the generated secret key "
                    "(default: instance/ beside app.py)")
    database: NonEmptyPath | None = Field(None, description="the feedback log (default: "
                                                            "<instance>/reviews.sqlite)")
    models_dir: NonEmptyPath | None = Field(None, description="model versions (default: "
                                                              "<instance>/models)")
    secret_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SECRET_KEY", "secret_key"),
        description="signs sessions and CSRF tokens (default: generated once into the instance "
                    "folder)")
    trusted_proxies: int = Field(0, ge=0, description="reverse proxies in front (nginx: 1): "
                                                      "the client's address is then read "
                                                      "from X-Forwarded-For")
    secure_cookies: bool = Field(False, description="send cookies over https only (set it "
                                                     "when served over https)")
    # -- learning
    durable_commits: bool = Field(True, description="fsync every verdict before answering")
    checkpoint_every: int = Field(200, ge=1, description="publish a version after this many "
                                                         "verdicts ...")
    checkpoint_seconds: float = Field(60.0, ge=0.001, description="... or this many seconds")
    background_checkpoints: bool = Field(True, description="a server thread checkpoints "
                                                           "waiting verdicts with no traffic")
    guard: bool = Field(True, description="score each version on the shipped holdout")
    guard_margin: float = Field(0.01, ge=0.0, description="quarantine a batch that costs more "
                                                          "holdout accuracy than this")
    keep_versions: int = Field(10, ge=1, description="versions whose state file stays on disk")
    trust: bool = Field(True, description="hold verdicts that the client's record does not "
                                          "vouch for (sentiment.learning.trust)")
    # -- requests
    max_content_length: int | None = Field(32 * 1024 * 1024, ge=1,
                                           description="largest request body in bytes")
    rate_limits: bool = Field(True, description="per-client rate limits")
    predict_limit: RateLimits = Field("1200 per minute; 12000 per hour",
                                      description="reviews predicted per client (a batch of N "
                                                  "counts N)")
    verdict_limit: RateLimits = Field("30 per minute; 300 per hour",
                                      description="verdicts per client")
    ratelimit_storage_uri: str = Field("memory://", description="where limits are counted "
                                                                "(memory: per process)")
    # -- serving (python app.py)
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(5000, ge=1, le=65535, description="port to listen on")
    workers: int | None = Field(None, ge=1, description="server processes (default: one per "
                                                        "usable CPU core)")
    threads: int = Field(DEFAULT_THREADS, ge=1, description="request threads per process")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The environment's settings, then ``overrides`` (field names, any case).

        Raises SettingsError naming every bad value, and every ``SENTIMENT_*``
        variable that is no setting.
        """
        fields = set(cls.model_fields)
        unknown = sorted(name for name in os.environ if name.startswith(PREFIX)
                         and name[len(PREFIX):].lower() not in fields)
        values = {key.lower(): value for key, value in (overrides or {}).items()}
        problems = [_unknown(name) for name in unknown]
        try:
            settings = cls(**values)
        except ValidationError as exc:
            problems = [_describe(error, values) for error in exc.errors()] + problems
        if problems:
            raise SettingsError("\n".join(problems))
        return settings

    def flask_config(self) -> dict[str, Any]:
        """The settings Flask and its extensions read from ``app.config``."""
        return {
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "RATELIMIT_ENABLED": self.rate_limits,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_HEADERS_ENABLED": True,
        }


def _variable(field: str) -> str:
    return {"instance_path": "INSTANCE_PATH", "secret_key": "SECRET_KEY"}.get(
        field, PREFIX + field.upper())


def _unknown(name: str) -> str:
    return f"{name} is not a setting (README.md, Settings, lists them)"


def _describe(error: Any, overrides: dict[str, Any]) -> str:
    """One line for one bad value: the variable, what it must be, what it was."""
    field = str(error["loc"][0]) if error["loc"] else "?"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = overrides.get(field, os.environ.get(_variable(field), error.get("input")))
    return f"{_variable(field)} {_lower_first(message)}, not {given!r}"


def _lower_first(text: str) -> str:
    text = text.replace("Input should be", "must be")
    return text[:1].lower() + text[1:]
