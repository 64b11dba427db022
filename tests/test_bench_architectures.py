"""``python -m bench.architectures``: a saved model measured as a worker runs it, and the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import architectures
from tests.fakes import make_reviews, write_csv
from tests.reference import ROOT


def sentences_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sentences"
    folder.mkdir()
    lines = [f"{text}\t{label}" for text, label in make_reviews(40, seed=7)]
    (folder / "yelp_labelled.txt").write_text("\n".join(lines) + "\n")
    (folder / "README.txt").write_text("not a labelled set")
    return folder


def test_a_saved_model_is_measured_in_a_fresh_process(tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "reviews.csv", n_train=300, n_test=200)
    trained = {"model_dir": str(tiny_model_dir), "csv": str(csv_path)}
    figures = architectures.measure_in_subprocess(trained, sentences_folder(tmp_path), 30)
    assert figures["accuracy_test"] > 0.9  # the generated reviews are easy
    assert figures["accuracy_tutorial_5k"] is None  # rows 45,000-50,000: not in this CSV
    assert figures["accuracy_yelp"] > 0.9 and "accuracy_README" not in figures
    assert 0 < figures["predict_p50_ms"] <= figures["predict_p99_ms"]
    assert figures["batch_predictions_per_s"] > 0 and figures["size_mb"] > 0


def test_the_table_gives_each_figure_and_its_ratio_to_the_default() -> None:
    results = {
        "book": {"accuracy_test": 0.88, "wall_s": 10.0, "command": "-m train --preset book"},
        "default": {"accuracy_test": 0.92, "wall_s": 20.0, "command": "-m train"},
    }
    text = architectures.table(results)
    assert "| accuracy, official test (25k) | 0.8800 (0.96x) | 0.9200 |" in text
    assert "| training wall s (archive -> model) | 10.0 (0.50x) | 20.0 |" in text
    assert "| model size on disk MB | - | - |" in text
    report = architectures.report(results, "python -m bench.architectures", 120)
    assert "`python -m train --preset book`" in report


def test_without_an_archive_it_exits_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.architectures", "--archive",
                           str(tmp_path / "missing.tar.gz")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


def test_an_ensemble_scores_its_members_mean_probability_and_sums_their_costs() -> None:
    a = {"positive": {"accuracy_test": [0.9, 0.4, 0.2]}, "labels": {"accuracy_test": [1, 1, 0]},
         "wall_s": 10.0, "predict_p50_ms": 0.5, "batch_predictions_per_s": 900.0}
    b = {"positive": {"accuracy_test": [0.3, 0.8, 0.45]}, "labels": {"accuracy_test": [1, 1, 0]},
         "wall_s": 30.0, "predict_p50_ms": 2.0, "batch_predictions_per_s": 100.0}
    figures = architectures.ensemble([a, b])
    # means 0.6, 0.6, 0.325: all three right, where each member alone got two of three
    assert figures["accuracy_test"] == 1.0
    assert figures["wall_s"] == 40.0 and figures["predict_p50_ms"] == 2.5
    assert "batch_predictions_per_s" not in figures
