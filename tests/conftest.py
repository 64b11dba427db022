"""Shared fixtures: a tiny model trained by the real pipeline, and app factories."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.fakes import write_csv
from tests.requires import unavailable

ROOT = Path(__file__).resolve().parent.parent
SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "aclImdb_v1_labeled.tar.gz"
SHARED_NLTK = ROOT.parent / "shared" / "nltk_data"

if SHARED_NLTK.is_dir():
    os.environ.setdefault("NLTK_DATA", str(SHARED_NLTK))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default preset, shrunk, trained on generated reviews: same code path as production."""
    from train.presets import DEFAULT, OFFICIAL_TEST
    from train.train import run

    folder = tmp_path_factory.mktemp("tiny_model")
    csv_path = write_csv(folder / "reviews.csv")
    preset = replace(DEFAULT, holdout=100, batch_size=100, epochs=3,
                     evaluations=(OFFICIAL_TEST,),
                     vectorizer=replace(DEFAULT.vectorizer, n_features=2**16))
    run(preset, None, csv_path, folder / "pkl", None, workers=1, skip_csv=True, progress=False)
    return folder / "pkl"


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_backends`` run once per log backend (``backend`` fixture);
    any other test that uses a log runs on SQLite alone."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "both_backends"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs on PostgreSQL ``postgresql`` (``make test-fast`` leaves
    them to the whole suite: starting a cluster and the second backend's runs take
    longer than the quick tests' minute)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") == "postgresql"
        if on_postgres or "postgres_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the session, started on first use.

    Without PostgreSQL the tests that need it are skipped, except in CI
    (``CI`` set), where ``make test`` has installed it and a missing one fails.
    """
    from bench.services import PostgresCluster

    try:
        cluster = PostgresCluster().start()
    except FileNotFoundError as exc:
        unavailable(str(exc))
    yield cluster
    cluster.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str | None:
    """The log the test's apps use: None (SQLite in the instance folder), or the URL of a
    fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    cluster = request.getfixturevalue("postgres_cluster")
    url: str = cluster.new_database()
    return url


@pytest.fixture
def make_app(tmp_path: Path, tiny_model_dir: Path, backend: str | None) -> Callable[..., Flask]:
    """Build apps on one temporary instance folder and one log (call again to "restart")."""
    from app import create_app

    apps: list[Flask] = []

    def factory(base_model: Any = None, **config: Any) -> Flask:
        # TRUST off: these tests send corrections of confident predictions from
        # clients with no record, which the trust policy holds (tests/test_trust.py).
        settings = {"INSTANCE_PATH": str(tmp_path / "instance"), "MODEL_DIR": str(tiny_model_dir),
                    "TESTING": True, "RATE_LIMITS": False, "TRUST": False,
                    **({"DATABASE_URL": backend} if backend else {}), **config}
        app = create_app(settings, base_model=base_model)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        learner = app.extensions["learner"]
        learner.stop_threads()
        learner.feedback.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(WTF_CSRF_ENABLED=False)


@pytest.fixture
def client(app: Flask):
    return app.test_client()
