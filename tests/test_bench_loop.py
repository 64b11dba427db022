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
@pytest.mark.parametrize("scenario", ["honest", "wrong-only", "liar", "liar-spread"])
def test_a_scenario_runs_against_a_restarted_app(tmp_path, scenario: str) -> None:
    data = loop.read_set(write_set(tmp_path / "demo_labelled.txt"))
    imdb = make_reviews(10, seed=9)
    outcome = loop.run_scenario(scenario, [data], imdb, seed=1)
    _, after = outcome.domain["demo"]
    if scenario == "wrong-only":  # the committed model gets these easy reviews right
        assert outcome.sent < len(data.stream) // 4
    else:
        assert outcome.sent == len(data.stream)
    assert outcome.learned + outcome.held + outcome.quarantined <= outcome.sent
    if scenario.startswith("liar"):  # most lies contradict a confident prediction: held
        assert outcome.held > outcome.learned
    if scenario == "honest":
        assert outcome.learned == outcome.sent and outcome.held == 0
    assert 0.0 <= after <= 1.0 and 0.0 <= outcome.imdb[1] <= 1.0


def test_targets_are_the_issues() -> None:
    def outcome(scenario: str, gain: float, imdb: float = 0.0, sent: int = 100) -> loop.Outcome:
        return loop.Outcome(scenario, "demo", sent=sent, domain={"demo": (0.8, 0.8 + gain / 100)},
                            imdb=(0.9, 0.9 + imdb / 100))

    def met(o: loop.Outcome, three: float = 2.0) -> bool | None:
        return loop.meets_target(o.scenario, o, "demo", three)

    assert met(outcome("honest", 2.0)) and not met(outcome("honest", 1.9))
    assert not met(outcome("honest", 3.0, imdb=-0.6))
    assert met(outcome("wrong-only", 1.0)) and not met(outcome("wrong-only", 1.2, sent=2000))
    assert met(outcome("liar", -1.0)) and not met(outcome("liar-spread", -1.2))
    assert met(outcome("30%-lies", 0.5)) and not met(outcome("30%-lies", 0.4))
    assert met(outcome("liar-dilute", -20.0)) is None  # beyond the issue: reported only
