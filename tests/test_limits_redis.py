"""Rate limits shared across hosts through Redis, and what happens when Redis goes away.

Each app object stands for one host (or process): it has its own Flask-Limiter
and its own memory, as a server process would. They all see one
``redis-server`` started for this module (tests/redis_server.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import flask_limiter._extension
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sentiment.settings import REDIS_TIMEOUT_SECONDS, Settings, SettingsError
from tests.redis_server import RedisServer, throwaway_redis

LIMIT = "4 per minute"
REVIEW = "A wonderful, brilliant film: superb acting and a moving story."
MakeApp = Callable[..., Flask]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The module's Redis, running and empty: each test starts with no counts."""
    redis_server.start()  # in case a test stopped it and failed before starting it again
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def hosts(make_app: MakeApp, storage_uri: str, count: int = 2) -> list[FlaskClient]:
    """``count`` hosts serving the API, each with its own limiter, counting in ``storage_uri``."""
    return [make_app(WTF_CSRF_ENABLED=False, RATE_LIMITS=True, PREDICT_LIMIT=LIMIT,
                     RATELIMIT_STORAGE_URI=storage_uri).test_client()
            for _ in range(count)]


def predict(client: FlaskClient) -> TestResponse:
    return client.post("/api/predict", json={"review": REVIEW})


def assert_served(*responses: TestResponse) -> None:
    for response in responses:
        assert response.status_code == 200, response.get_data(as_text=True)


def assert_refused(response: TestResponse) -> None:
    """A 429 a client can act on: why, in words, and when to come back."""
    assert response.status_code == 429, response.get_data(as_text=True)
    error = (response.get_json() or {}).get("error", "")
    assert "Too many requests from your address (limit: 4 per 1 minute" in error
    assert int(response.headers["Retry-After"]) > 0


def counts(db: redis.Redis) -> list[int]:
    """The prediction counters in Redis (one per client, limit and window)."""
    keys = sorted(db.scan_iter(match="LIMITS:*predictions*"))
    return [int(db.get(key) or 0) for key in keys]


def clock_moves_on(monkeypatch: pytest.MonkeyPatch, seconds: float = 120) -> None:
    """Let Flask-Limiter see ``seconds`` pass: it pings a store it found down only every
    1 to 32 seconds, and the test should neither sleep nor depend on its timing."""
    later = SimpleNamespace(**vars(time))
    later.time = lambda: time.time() + seconds
    monkeypatch.setattr(flask_limiter._extension, "time", later)


# -- one budget across hosts ------------------------------------------------------------------
def test_hosts_on_one_redis_share_one_budget(make_app: MakeApp, redis_db: redis.Redis,
                                             redis_server: RedisServer) -> None:
    a, b = hosts(make_app, redis_server.url)
    assert_served(predict(a), predict(a), predict(b), predict(b))
    assert counts(redis_db) == [4]
    assert_refused(predict(a))
    assert_refused(predict(b))
    # Another client still has its whole budget, on either host.
    other = b.post("/api/predict", json={"review": REVIEW},
                   environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert_served(other)


def test_hosts_counting_in_memory_each_have_a_budget(make_app: MakeApp) -> None:
    """The contrast: with memory://, two hosts let a client through twice the limit."""
    a, b = hosts(make_app, "memory://")
    for client in (a, b):
        assert_served(*(predict(client) for _ in range(4)))
        assert_refused(predict(client))


# -- Redis down -------------------------------------------------------------------------------
def test_while_redis_is_down_each_host_counts_in_memory_then_in_redis_again(
        make_app: MakeApp, redis_db: redis.Redis, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = hosts(make_app, redis_server.url)
    assert_served(predict(a))
    redis_server.stop()
    try:
        # Still served, no 500: each host counts alone, with the same limits.
        for client in (a, b):
            assert_served(*(predict(client) for _ in range(4)))
            assert_refused(predict(client))
    finally:
        redis_server.start()  # on the same port, empty (it saves nothing)
    with monkeypatch.context() as later:
        clock_moves_on(later)
        assert_served(predict(a), predict(b))  # both budgets in memory were spent
    assert counts(redis_db) == [2]  # ... so these two were counted in Redis
    assert_served(predict(a), predict(b))
    assert_refused(predict(a))  # one budget across hosts again
    assert_refused(predict(b))


def test_redis_lost_between_the_check_and_the_count_still_serves(
        make_app: MakeApp, redis_db: redis.Redis, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request is counted after its response (only what is served counts): an error
    there must not turn a prediction already made into a 500."""
    (client,) = hosts(make_app, redis_server.url, count=1)
    limiter = client.application.extensions["rate_limiter"]

    def gone(*args: object, **kwargs: object) -> int:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(limiter.storage, "incr", gone)
    assert_served(predict(client))
    assert counts(redis_db) == []


# -- settings ---------------------------------------------------------------------------------
@pytest.fixture
def no_storage_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RATELIMIT_STORAGE_URI", "SENTIMENT_RATELIMIT_STORAGE_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_storage_variables")
@pytest.mark.parametrize("name", ["RATELIMIT_STORAGE_URI", "SENTIMENT_RATELIMIT_STORAGE_URI"])
def test_the_storage_uri_is_read_from_either_name(monkeypatch: pytest.MonkeyPatch,
                                                  name: str) -> None:
    monkeypatch.setenv(name, "redis://cache.internal:6379/2")
    settings = Settings.load()
    assert settings.ratelimit_storage_uri == "redis://cache.internal:6379/2"
    config = settings.flask_config()
    assert config["RATELIMIT_STORAGE_URI"] == "redis://cache.internal:6379/2"
    assert config["RATELIMIT_SWALLOW_ERRORS"] is True
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    assert config["RATELIMIT_STORAGE_OPTIONS"] == {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS}
    # What the app is given still wins over the environment.
    assert Settings.load({"RATELIMIT_STORAGE_URI": "memory://"}).ratelimit_storage_uri == \
        "memory://"


@pytest.mark.usefixtures("no_storage_variables")
def test_memory_counts_with_flask_limiters_defaults() -> None:
    config = Settings.load().flask_config()
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert not {"RATELIMIT_SWALLOW_ERRORS", "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED",
                "RATELIMIT_STORAGE_OPTIONS"} & set(config)


@pytest.mark.usefixtures("no_storage_variables")
@pytest.mark.parametrize("uri", ["ftp://x", "", "redis", "redis://cache:port",
                                 "async+redis://cache:6379"])
def test_a_storage_uri_flask_limiter_cannot_use_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                           uri: str) -> None:
    monkeypatch.setenv("SENTIMENT_RATELIMIT_STORAGE_URI", uri)
    with pytest.raises(SettingsError) as refused:
        Settings.load()
    assert str(refused.value) == (
        "SENTIMENT_RATELIMIT_STORAGE_URI must be a storage URI such as memory:// or "
        f"redis://host:6379, not {uri!r}")


@pytest.mark.usefixtures("no_storage_variables")
@pytest.mark.parametrize("uri", ["memory://", "redis://:secret@cache:6379/0",
                                 "rediss://cache", "redis+unix:///run/redis.sock",
                                 "redis+sentinel://s1:26379,s2:26379/primary",
                                 "memcached://cache:11211"])
def test_the_stores_flask_limiter_knows_are_accepted(uri: str) -> None:
    assert Settings.load({"ratelimit_storage_uri": uri}).ratelimit_storage_uri == uri
