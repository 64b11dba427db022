"""The app's settings: one typed object, read from the environment once and checked at start.

Every setting is a ``SENTIMENT_<NAME>`` environment variable (the table in
README.md lists them), except names that the tools and platforms around a
Flask app already know: ``INSTANCE_PATH`` (where runtime state lives),
``SECRET_KEY``, ``DATABASE_URL`` (also ``SENTIMENT_DATABASE_URL``),
``RATELIMIT_STORAGE_URI`` (also with the prefix), ``WEB_CONCURRENCY`` (the
server processes, when ``SENTIMENT_WORKERS`` is unset) and ``NLTK_DATA``
(read by NLTK itself, for training only).

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
from urllib.parse import urlparse

from limits import parse_many
from limits._storage_scheme import SCHEMES
from limits.storage import MemoryStorage, RedisStorage, Storage
from pydantic import AfterValidator, AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentiment.text.vectorizer import PKL_DIR

PREFIX = "SENTIMENT_"
# Request threads per server process. With one, a long request (a batch of
# long reviews) stalls its process's other connections. Short requests take
# turns (sentiment.serving.turns), so the others serve long ones beside them
# without the GIL hand-offs that several busy threads cost (docs/measurements.md,
# Serving).
DEFAULT_THREADS = 4
# The longest a request waits on the rate limits' Redis (connecting, or for an
# answer) before its process counts in memory instead (Settings.flask_config):
# Redis answers in well under a millisecond when it answers at all.
REDIS_TIMEOUT_SECONDS = 0.5


class SettingsError(ValueError):
    """Settings the app cannot run with; the message has one line per bad value."""


def _rate_limits(value: str) -> str:
    try:
        if not parse_many(value):
            raise ValueError
    except (ValueError, TypeError):
        raise ValueError('must be rate limits such as "1200 per minute; 12000 per hour"') from None
    return value


def _storage_uri(value: str) -> str:
    """Refuse a store Flask-Limiter cannot count in, without connecting to it.

    Flask-Limiter builds the store with ``limits.storage.storage_from_string``
    when the app starts, and some stores connect as they are built (a Redis
    cluster); a typo in the scheme would only show then, as a traceback. The
    scheme registry that function looks the URI up in (``limits``' own
    ``SCHEMES``) tells the same without building anything; the async stores it
    also holds are no ``Storage``.
    """
    parsed = urlparse(value)
    storage = SCHEMES.get(parsed.scheme)
    if storage is None or not issubclass(storage, Storage) or not _ports(parsed.netloc):
        raise ValueError("must be a storage URI such as memory:// or redis://host:6379")
    return value


def _ports(netloc: str) -> bool:
    """Whether each host of ``user:password@host:port,host:port`` has a numeric port, if any."""
    try:
        for location in netloc.rpartition("@")[2].split(","):
            urlparse(f"//{location}").port  # noqa: B018 -- raises on a port that is no number
    except ValueError:
        return False
    return True


RateLimits = Annotated[str, AfterValidator(_rate_limits)]
StorageUri = Annotated[str, AfterValidator(_storage_uri)]
NonEmptyPath = Annotated[Path, AfterValidator(lambda p: _non_empty(p))]


def _postgres_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL (unset it for the embedded SQLite log)")
    return url


DatabaseUrl = Annotated[str, AfterValidator(_postgres_url)]


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
    database_url: DatabaseUrl | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "SENTIMENT_DATABASE_URL",
                                            "database_url"),
        description="a PostgreSQL log shared by several hosts (postgresql://user:password@"
                    "host/db); unset: the SQLite file")
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
    ratelimit_storage_uri: StorageUri = Field(
        "memory://", validation_alias=AliasChoices("RATELIMIT_STORAGE_URI",
                                                   "SENTIMENT_RATELIMIT_STORAGE_URI",
                                                   "ratelimit_storage_uri"),
        description="where limits are counted: memory:// in each process, or "
                    "redis://host:6379 shared by every process and host given it")
    # -- serving (python app.py)
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(5000, ge=1, le=65535, description="port to listen on")
    workers: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("SENTIMENT_WORKERS", "WEB_CONCURRENCY",
                                                  "workers"),
        description="server processes (default: $WEB_CONCURRENCY, which platforms of the "
                    "Heroku kind set, else one per usable CPU core)")
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

    @property
    def instance(self) -> Path:
        """Where runtime state lives: ``INSTANCE_PATH``, else ``instance/`` beside app.py."""
        return Path(self.instance_path or PKL_DIR.parent / "instance")

    @property
    def sqlite_path(self) -> Path:
        """The SQLite log's file (used when no ``DATABASE_URL`` is given)."""
        return Path(self.database or self.instance / "reviews.sqlite")

    def flask_config(self) -> dict[str, Any]:
        """The settings Flask and its extensions read from ``app.config``."""
        return {
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "RATELIMIT_ENABLED": self.rate_limits,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_HEADERS_ENABLED": True,
            # Its keys in a shared store: another app's limits there are not ours.
            "RATELIMIT_KEY_PREFIX": "sentiment",
            **self._shared_limits_config(),
        }

    def _shared_limits_config(self) -> dict[str, Any]:
        """How Flask-Limiter rides out an outage of a shared store (Redis ...).

        A rate limiter must not turn the store's outage into 500s. On the first
        error, the in-memory fallback counts in each process, with the same
        limits, and Flask-Limiter pings the store now and then (1, 2, 4 ... 32
        seconds apart, then from 1 again) to go back to it. The fallback covers
        only the check before a request, though: our limits deduct after the
        response (``deduct_when``), where an error would turn a request already
        served into a 500, so errors are also swallowed (and logged). Redis gets
        short timeouts: one that hangs would hold the request that finds it out,
        and each ping's, 5 s (redis-py's default); ``?socket_timeout=`` in the
        URI still wins.
        """
        storage = SCHEMES[urlparse(self.ratelimit_storage_uri).scheme]
        if issubclass(storage, MemoryStorage):
            return {}
        config: dict[str, Any] = {"RATELIMIT_SWALLOW_ERRORS": True,
                                  "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True}
        if issubclass(storage, RedisStorage):
            config["RATELIMIT_STORAGE_OPTIONS"] = {
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_TIMEOUT_SECONDS}
        return config


def _field_of(name: str) -> str:
    """The field a name of pydantic's error locations is: a field's name, or one of its
    aliases (pydantic reports a field with aliases by its first)."""
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if name == field or (isinstance(alias, AliasChoices) and name in alias.choices):
            return field
    return name


def _variable(field: str) -> str:
    """The variable a field is read from: of its names, the one set in the environment."""
    field = _field_of(field)
    alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields \
        else None
    names = ([name for name in alias.choices if isinstance(name, str) and name.isupper()]
             if isinstance(alias, AliasChoices) else [PREFIX + field.upper()])
    return next((name for name in names if name in os.environ), names[0])


def _unknown(name: str) -> str:
    return f"{name} is not a setting (README.md, Settings, lists them)"


def _describe(error: Any, overrides: dict[str, Any]) -> str:
    """One line for one bad value: the variable, what it must be, what it was."""
    field = _field_of(str(error["loc"][0])) if error["loc"] else "?"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = overrides.get(field, os.environ.get(_variable(field), error.get("input")))
    return f"{_variable(field)} {_lower_first(message)}, not {given!r}"


def _lower_first(text: str) -> str:
    text = text.replace("Input should be", "must be")
    return text[:1].lower() + text[1:]
