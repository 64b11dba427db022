"""``python -m bench.peers``: each peer trained from an archive and measured, and the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import peers
from tests.tiny_aclimdb import write_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_archive(tmp_path_factory.mktemp("peers") / "tiny.tar.gz")


@pytest.mark.slow  # trains each peer: seconds
@pytest.mark.parametrize("name", ["sklearn", "vw-2", "fasttext"])
def test_a_peer_is_trained_from_the_archive_and_measured(archive, tmp_path, name) -> None:
    if peers.missing_package(name):
        pytest.skip(f"{peers.missing_package(name)} is not installed (requirements-bench.txt)")
    figures = peers.run_one(name, archive, tmp_path, single=10)
    assert figures["accuracy_test"] > 0.85  # the generated reviews are easy
    assert figures["train_wall_s"] > 0 and figures["train_cpu_s"] > 0
    assert figures["batch_per_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["size_mb"] > 0
    if name == "sklearn":  # C chosen on the held-out part of train
        assert figures["chosen"]["C"] in peers.C_GRID


@pytest.mark.slow
def test_each_run_is_a_process_of_its_own_with_its_peak_memory(archive, tmp_path) -> None:
    figures = peers.run_in_subprocess("sklearn", archive, tmp_path, single=5)
    assert figures["accuracy_test"] > 0.85 and figures["peak_rss_mb"] > 50


def test_the_table_gives_ratios_to_the_best_peer() -> None:
    common = {"train_cpu_s": 1.0, "p50_ms": 1.0, "p99_ms": 2.0, "peak_rss_mb": 100.0,
              "size_mb": 1.0, "batch_one_process_per_s": 1000.0}
    results = {
        "default": {"accuracy_test": 0.92, "train_wall_s": 10.0, "batch_per_s": 4000.0,
                    **common},
        "vw-2": {"accuracy_test": 0.90, "train_wall_s": 5.0, "batch_per_s": 8000.0, **common},
        "sklearn": {"accuracy_test": 0.80, "train_wall_s": 20.0, "batch_per_s": 2000.0,
                    **common},
        "fasttext": {"error": "not run: fasttext missing"},
    }
    rows = peers.table(results).splitlines()
    default = rows[2]
    assert "0.9200 (x1.02)" in default  # against VW's 0.90, the best peer's accuracy
    assert "10.0 (x2.00)" in default and "4,000 (x0.50)" in default
    assert "not run: fasttext missing" in rows[5]
