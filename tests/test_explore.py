"""``python -m train.explore`` on the tiny generated archive: outputs, figures, errors.

The tiny archive's reviews use a known positive and negative vocabulary
(tests/fakes.py), so the figures can be checked against what the generator
put in, not just for shape. One run is shared by the module (about 2 s);
the rerun test makes a second one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fakes import NEGATIVE, POSITIVE
from train.explore.__main__ import main
from train.explore.stats import quantiles, tokenize

pytest_plugins = ["tests.train_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["archive", "preprocessing", "settings", "class_balance", "review_length", "top_ngrams",
        "frequency_overlap", "discriminative", "held_on_test", "negations", "vocabulary",
        "sequence_length", "test"]
VARIANTS = ("stopwords_removed", "keep_negations")


@pytest.fixture(autouse=True)
def _stopwords() -> None:
    from train.stopwords import MissingStopwordsError, nltk_english

    try:
        nltk_english()
    except MissingStopwordsError as exc:
        pytest.skip(f"needs NLTK's stopwords: {exc}")


@pytest.fixture(scope="module")
def explored(tiny_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explore") / "out"
    assert main(["--archive", str(tiny_archive), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def figures(explored: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((explored / "figures.json").read_text())
    return data


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_writes_json_report_and_plots(explored: Path) -> None:
    names = {p.name for p in explored.iterdir()}
    assert {"figures.json", "report.md", "lengths.png", "coverage.png", "top-unigrams.png",
            "top-bigrams.png", "top-trigrams.png", "discriminative.png",
            "wordcloud-frequency-pos.png", "wordcloud-frequency-neg.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    report = (explored / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert "lengths.png" in links and "figures.json" in links
    assert all((explored / link).is_file() for link in links)


def test_figures_have_every_section(figures: dict[str, Any]) -> None:
    assert list(figures) == KEYS
    assert figures["class_balance"]["train"] == {"pos": 40, "neg": 40, "total": 80,
                                                 "pos_share": 0.5}
    for cls in ("pos", "neg"):
        summary = figures["review_length"]["stopwords_removed"][cls]
        assert set(summary) == {"reviews", "mean", "median", "p90", "p95", "p99", "max"}
        assert summary["median"] <= summary["p90"] <= summary["p95"] <= summary["p99"]
        assert summary["p99"] <= summary["max"]
    assert set(figures["top_ngrams"]) == {"unigrams", "bigrams", "trigrams"}


def test_top_unigrams_follow_the_generator(figures: dict[str, Any]) -> None:
    top = {cls: {e["ngram"] for e in figures["top_ngrams"]["unigrams"][cls]}
           for cls in ("pos", "neg")}
    assert top["pos"] & set(POSITIVE) and not top["pos"] & set(NEGATIVE)
    assert top["neg"] & set(NEGATIVE) and not top["neg"] & set(POSITIVE)
    assert "the" not in top["pos"] | top["neg"]  # a stopword


def test_discriminative_terms_are_the_sentiment_words(figures: dict[str, Any]) -> None:
    lists = figures["discriminative"]["stopwords_removed"]["min_count_20"]["unigrams"]
    assert lists["pos"][0]["ngram"] in POSITIVE and lists["neg"][0]["ngram"] in NEGATIVE
    assert all(e["r"] > 0 for e in lists["pos"]) and all(e["r"] < 0 for e in lists["neg"])
    assert all(e["pos"] + e["neg"] >= 20 for e in lists["pos"] + lists["neg"])


def test_coverage_is_monotone_and_complete(figures: dict[str, Any]) -> None:
    for variant in VARIANTS:
        vocabulary = figures["vocabulary"][variant]
        curve = vocabulary["curve"]
        ks = [p["k"] for p in curve]
        shares = [p["coverage"] for p in curve]
        assert ks == sorted(ks) and shares == sorted(shares)
        assert shares[-1] == 1.0 and curve[-1]["all"] and ks[-1] == vocabulary["types"]
        assert vocabulary["limit"] in ks


def test_test_split_figures_are_shares(figures: dict[str, Any]) -> None:
    for variant in VARIANTS:
        test = figures["test"][variant]
        assert 0.0 <= test["oov_rate"] <= 1.0 and 0.0 <= test["share_longer"] <= 1.0
        assert test["unseen_rate"] <= test["oov_rate"]
        assert test["sequence_length"] % 50 == 0


def test_rerun_writes_identical_figures(explored: Path, tiny_archive: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(["--archive", str(tiny_archive), "--out", str(out)]) == 0
    for name in ("figures.json", "wordcloud-frequency-pos.png"):
        assert (out / name).read_bytes() == (explored / name).read_bytes(), name
    report = (explored / "report.md").read_text().replace(str(explored), str(out))
    assert (out / "report.md").read_text() == report  # but for the --out of its command


def test_vocab_limit_sets_the_oov_vocabulary(tiny_archive: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("train.explore.plots.all_plots", lambda figures, clouds: {})  # speed
    assert main(["--archive", str(tiny_archive), "--out", str(tmp_path), "--top", "3",
                 "--vocab-limit", "5"]) == 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["test"]["stopwords_removed"]["limit"] == 5
    assert figures["test"]["stopwords_removed"]["oov_rate"] > 0  # 5 words cannot cover test
    assert len(figures["top_ngrams"]["bigrams"]["pos"]) == 3


def test_missing_archive_is_one_line_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--archive", str(tmp_path / "nope.tar.gz"), "--out", str(tmp_path)]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: archive not found")


def test_unreadable_archive_is_one_line_exit_2(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    assert main(["--archive", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: cannot read")


def test_unwritable_out_is_one_line_exit_2(tiny_archive: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["--archive", str(tiny_archive), "--out", str(a_file / "sub")]) == 2
    assert "not a folder" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("args", [["--top", "0"], ["--top", "many"], ["--vocab-limit", "-3"]])
def test_nonsense_numbers_are_one_line(args: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert "error:" in one_error_line(capsys.readouterr().err)


def test_ctrl_c_exits_130(tiny_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(path: Path) -> Any:
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr("train.explore.__main__.iter_archive", interrupted)
    assert main(["--archive", str(tiny_archive), "--out", str(tmp_path)]) == 130
    assert one_error_line(capsys.readouterr().err) == "interrupted"
    assert not list(tmp_path.iterdir())


def test_missing_stopwords_is_one_line_exit_2(tiny_archive: Path, tmp_path: Path) -> None:
    """In a fresh process: NLTK reads $NLTK_DATA once, at import."""
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    env = {**os.environ, "NLTK_DATA": str(empty), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "train.explore", "--archive", str(tiny_archive),
         "--out", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        pytest.skip("NLTK finds stopwords outside $NLTK_DATA on this machine")
    assert done.returncode == 2
    assert one_error_line(done.stderr).startswith("error: NLTK's English stopwords are missing")
    assert not (tmp_path / "out").exists()


def test_quantiles_match_numpy() -> None:
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]
    qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
    assert quantiles(Counter(values), qs) == pytest.approx(np.percentile(values, [100 * q
                                                                                 for q in qs]))


def test_tokenize_strips_html_and_keeps_inner_apostrophes() -> None:
    assert tokenize("I DIDN’T like it.<br /><br />'Quoted' rock'n'roll 10/10") == [
        "i", "didn't", "like", "it", "quoted", "rock'n'roll", "10", "10"]
