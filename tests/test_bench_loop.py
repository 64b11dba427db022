"""``python -m bench.loop``: labelled sets split as documented, scenarios sent as described."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import loop
from tests.fakes import make_reviews


def write_set(path: Path, n: int = 40) -> Path:
    lines = [f"{text}\t{label}" for text, label in make_reviews(n, seed=3)]
    lines += ["Too short.\t1", "not a labelled line", "\t0"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_set_is_split_in_two_fixed_halves_without_what_the_app_refuses(tmp_path) -> None:
    data = loop.read_set(write_set(tmp_path / "demo_labelled.txt"))
    assert data.name == "demo" and data.too_short == 1
    assert len(data.stream) == len(data.score) == 20
    again = loop.read_set(tmp_path / "demo_labelled.txt")
    assert again.stream == data.stream and not set(data.stream) & set(data.score)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["honest", "wrong-only", "liar"])
def test_a_scenario_runs_against_a_restarted_app(tmp_path, scenario: str) -> None:
    data = loop.read_set(write_set(tmp_path / "demo_labelled.txt"))
    imdb = make_reviews(10, seed=9)
    outcome = loop.run_scenario(scenario, [data], imdb, seed=1)
    _, after = outcome.domain["demo"]
    if scenario == "wrong-only":  # the committed model gets these easy reviews right
        assert outcome.sent < len(data.stream) // 4
    else:
        assert outcome.sent == len(data.stream)
    assert outcome.learned + outcome.quarantined <= outcome.sent
    assert 0.0 <= after <= 1.0 and 0.0 <= outcome.imdb[1] <= 1.0
