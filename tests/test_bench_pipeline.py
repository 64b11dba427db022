"""``python -m bench.pipeline``: the results page's cost and batch predictions, measured."""

from __future__ import annotations

from bench import pipeline
from tests.tiny_aclimdb import write_archive


def test_the_page_is_timed_through_the_app(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    assert 0 < pipeline.page_ms(blocks=2, per_block=3) < 1000


def test_batch_predictions_are_counted_on_the_test_split(tmp_path) -> None:
    figures = pipeline.batch(write_archive(tmp_path / "tiny.tar.gz"), n=30)
    assert figures["reviews"] == 80 and figures["reviews_per_s"] > 0
    assert figures["reviews_per_s_all_cores"] > 0 and figures["cores"] >= 1
    assert figures["peak_growth_mb"] >= 0
