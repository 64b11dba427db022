"""``python -m bench.pipeline``: the results page's cost and batch predictions, measured."""

from __future__ import annotations

import pytest

from bench import pipeline
from tests.tiny_aclimdb import TrainedRun, write_archive

pytest_plugins = ["tests.train_fixtures"]

OURS = ["whole page", "without the explanation", "without storing the prediction",
        "without either"]


def test_the_page_is_timed_whole_and_without_what_the_tutorials_lacks(monkeypatch,
                                                                     tmp_path) -> None:
    """Each variant's page is checked as it is timed: explained or not, stored or not."""
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    costs = pipeline.page_costs(blocks=2, per_block=3)
    assert list(costs) == OURS
    assert all(0 < us < 1_000_000 for us in costs.values())


@pytest.mark.slow  # trains the book preset (shared with the other training tests)
def test_the_tutorials_page_is_timed_beside_ours(monkeypatch, tmp_path,
                                                 trained: dict[str, TrainedRun]) -> None:
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    costs = pipeline.page_costs(trained["book"].out, blocks=1, per_block=2)
    assert list(costs) == [*OURS, "the tutorial's page"] and costs["the tutorial's page"] > 0


def test_batch_predictions_are_counted_on_the_test_split(tmp_path) -> None:
    figures = pipeline.batch(write_archive(tmp_path / "tiny.tar.gz"), n=30)
    assert figures["reviews"] == 80 and figures["reviews_per_s"] > 0
    assert figures["reviews_per_s_all_cores"] > 0 and figures["cores"] >= 1
    assert figures["peak_growth_mb"] >= 0


def test_storing_is_timed_with_checkpoints_by_the_commits_and_by_the_upkeep(tmp_path) -> None:
    rows = [(f"review {i} " + "x" * 2000, i % 2, 0.6, b"\x01" * 2000) for i in range(100)]
    for upkeep in (False, True):
        cost = pipeline.storing_cost(tmp_path / f"upkeep-{upkeep}.sqlite", rows, stored=300,
                                     timed=300, upkeep=upkeep)
        assert cost["cpu_us"] > 0 and cost["wall_us"] > 0
