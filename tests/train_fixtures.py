"""Pytest fixtures for the training tests: a tiny aclImdb archive and models trained on it.

Test modules load them with ``pytest_plugins = ["tests.train_fixtures"]`` (and
import plain helpers from ``tests.tiny_aclimdb``), so that the two presets are
trained once per session however many modules read the results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_aclimdb import TrainedRun, train_tiny, write_archive


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("archive") / "aclImdb_tiny.tar.gz")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path) -> dict[str, TrainedRun]:
    """Both presets trained once on the tiny archive, shared by the tests that read them."""
    pytest.importorskip("nltk")
    from train.stopwords import MissingStopwordsError, nltk_english

    try:
        nltk_english()
    except MissingStopwordsError as exc:
        pytest.skip(f"the book preset needs NLTK's stopwords: {exc}")
    folder = tmp_path_factory.mktemp("trained")
    return {name: train_tiny(name, tiny_archive, folder / name) for name in ("default", "book")}
