"""The trust policy: which verdicts are learned, decided as each is committed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentiment.learning.trust import DISTRUSTED, FLOOD, UNPROVEN, TrustPolicy
from sentiment.storage import SQLFeedbackLog, open_log
from sentiment.storage.log import Evidence, Judgement
from tests.fakes import make_review
from tests.reference import log_of, query, reference_state

POLICY = TrustPolicy()
pytestmark = pytest.mark.both_backends


def evidence(probability: float = 0.95, correct: bool = False, seen: int = 0,
             contradicted: int = 0, newcomers: tuple[bool, ...] = (),
             verdicts: int | None = None) -> Evidence:
    """``verdicts``: the client's earlier verdicts (default: one per confident prediction)."""
    return Evidence(probability, correct, seen, seen if verdicts is None else verdicts,
                    contradicted, newcomers)


# -- the rules ---------------------------------------------------------------------
def test_a_new_client_contradicting_a_confident_prediction_is_held():
    judged = POLICY.judge(evidence(probability=0.95, correct=False, seen=3))
    assert judged == Judgement(False, UNPROVEN, True)


@pytest.mark.parametrize(("probability", "correct"), [(0.7, False), (0.95, True), (0.5, False)])
def test_a_new_client_is_learned_from_where_the_model_was_unsure_or_agreed(probability, correct):
    assert POLICY.judge(evidence(probability, correct, seen=0)) == Judgement(True, None, True)


def test_the_confident_threshold_is_inclusive():
    assert not POLICY.judge(evidence(probability=POLICY.confident, seen=0)).accept
    assert POLICY.judge(evidence(probability=POLICY.confident - 1e-9, seen=0)).accept


def test_a_record_of_few_contradictions_vouches_for_a_confident_correction():
    # 20 confident predictions, 2 contradicted: a share of 0.1, under 0.2.
    assert POLICY.judge(evidence(seen=20, contradicted=2)) == Judgement(True, None, False)
    # 20 confident predictions, 5 contradicted (0.24): it no longer vouches ...
    assert POLICY.judge(evidence(seen=20, contradicted=5)) == Judgement(False, UNPROVEN, False)
    # ... but the client is still learned from where the model was unsure.
    assert POLICY.judge(evidence(probability=0.6, seen=20, contradicted=5)).accept


def test_a_client_contradicting_most_of_its_confident_predictions_is_not_learned_from():
    for probability, correct in [(0.95, False), (0.6, False), (0.99, True)]:
        judged = POLICY.judge(evidence(probability, correct, seen=10, contradicted=6))
        assert judged == Judgement(False, DISTRUSTED, False)
    # One contradiction is not a record, however few predictions came before it.
    assert POLICY.judge(evidence(probability=0.6, seen=0, contradicted=1)).accept


def test_predictions_without_verdicts_cannot_buy_trust():
    # 1,000 confident predictions asked for, 8 judged, all 8 contradicted: a
    # small share of its predictions, but all of its verdicts.
    judged = POLICY.judge(evidence(seen=1000, contradicted=8, verdicts=8))
    assert judged == Judgement(False, DISTRUSTED, False)
    # 4 of 8 verdicts contradicted: too many to vouch, too few to distrust.
    assert POLICY.judge(evidence(seen=1000, contradicted=4, verdicts=8)) == \
        Judgement(False, UNPROVEN, False)
    assert POLICY.judge(evidence(probability=0.6, seen=1000, contradicted=4, verdicts=8)).accept
    # An honest user who presses only when the model is wrong: a third of its
    # verdicts contradict confident predictions (its other corrections, unsure ones).
    assert POLICY.judge(evidence(seen=60, contradicted=4, verdicts=14)).accept


def test_a_flood_of_new_clients_contradicting_confident_predictions_is_held():
    flood = (True,) * 40 + (False,) * 60  # 40% of the newcomers' newest verdicts
    calm = (True,) * 30 + (False,) * 70
    assert POLICY.judge(evidence(probability=0.6, newcomers=flood)) == \
        Judgement(False, FLOOD, True)
    assert POLICY.judge(evidence(probability=0.6, newcomers=calm)).accept
    # Too few newcomers' verdicts to call it a flood; established clients are not in it.
    assert POLICY.judge(evidence(probability=0.6, newcomers=(True,) * 19)).accept
    assert POLICY.judge(evidence(probability=0.6, seen=30, newcomers=flood)).accept


@given(seen=st.integers(0, 5000), contradicted=st.integers(0, 300),
       verdicts=st.integers(0, 500), probability=st.floats(0.5, 1.0), correct=st.booleans())
def test_counting_confident_predictions_up_to_enough_changes_no_judgement(
        seen, contradicted, verdicts, probability, correct):
    counted = min(seen, POLICY.confident_enough(contradicted))
    full = evidence(probability, correct, seen, contradicted, verdicts=verdicts)
    capped = evidence(probability, correct, counted, contradicted, verdicts=verdicts)
    assert POLICY.judge(capped) == POLICY.judge(full)


# -- what the log counts -----------------------------------------------------------
@dataclass
class Recorder:
    """A judge that records its evidence and answers as told."""

    answers: list[Judgement] = field(default_factory=list)
    seen: list[Evidence] = field(default_factory=list)
    confident: float = 0.8
    newcomer_window: int = 3
    enough: int = 1000

    def confident_enough(self, contradicted: int) -> int:
        return self.enough

    def judge(self, evidence: Evidence) -> Judgement:
        self.seen.append(evidence)
        return self.answers.pop(0) if self.answers else Judgement(True, None, True)


@pytest.fixture
def feedback_log(tmp_path: Path, backend: str | None):
    log = open_log(backend, tmp_path / "log.sqlite", durable=False)
    yield log
    log.close()


def add(log: SQLFeedbackLog, text: str, probability: float, client: str | None) -> int:
    [(prediction_id, _)] = log.add_predictions([(text, 1, probability, None)], "base", client)
    return prediction_id


def test_the_evidence_counts_the_clients_record_and_the_newcomers(feedback_log: SQLFeedbackLog):
    log = feedback_log
    judge = Recorder()
    a1 = add(log, "first review text", 0.95, "a")
    add(log, "an unsure one here", 0.6, "a")
    a3 = add(log, "third review text", 0.9, "a")
    b1 = add(log, "b's review of it", 0.99, "b")
    log.add_verdict(a1, False, "a", judge)  # a confident contradiction
    log.add_verdict(b1, True, "b", judge)
    a4 = add(log, "fourth review text", 0.85, "a")
    log.add_verdict(a3, False, "a", judge)
    log.add_verdict(a4, True, "a", judge)
    first, second, third, fourth = judge.seen
    assert first == Evidence(0.95, False, 0, 0, 0, ())
    assert second == Evidence(0.99, True, 0, 0, 0, (True,))  # b's record is its own
    # a3: a1 before it was confident, a2 was not; a1 was judged and contradicted.
    assert third == Evidence(0.9, False, 1, 1, 1, (True, False))
    # a4: a1 and a3 before it were confident, both contradicted; the window keeps 3.
    assert fourth == Evidence(0.85, True, 2, 2, 2, (True, False, True))
    # Confident predictions are counted only as far as the judge needs.
    judge.enough = 1
    log.add_verdict(add(log, "fifth review text", 0.9, "a"), True, "a", judge)
    assert judge.seen[-1].client_confident == 1
    log.close()


@pytest.mark.parametrize("seed", range(3))
def test_a_clients_running_counts_are_a_recount_of_its_whole_record(
        feedback_log: SQLFeedbackLog, tmp_path: Path, backend: str | None, seed: int):
    """The counts kept per client and threshold (client_verdict_counts) equal, at every
    verdict, a recount of everything the client said before it, copies of released
    verdicts left out: with thresholds that change and verdicts held then released."""
    rng = random.Random(seed)
    log = feedback_log
    judged: list[tuple[int, str, float, Evidence]] = []
    for step in range(60):
        client = rng.choice(["a", "b", "c"])
        judge = Recorder([Judgement(rng.random() < 0.7, UNPROVEN, False)],
                         confident=rng.choice([0.8, 0.8, 0.9]))
        prediction = add(log, f"review number {step} of the run", rng.choice([0.55, 0.85, 0.95]),
                         client)
        verdict = log.add_verdict(prediction, rng.random() < 0.6, client, judge)
        judged.append((verdict.id, client, judge.confident, judge.seen[-1]))
        if step % 20 == 19:
            log.release([v.id for v in log.verdicts("quarantined")][:2])
    source = backend or tmp_path / "log.sqlite"
    for verdict_id, client, confident, seen in judged:
        [recount] = query(source, "SELECT COUNT(*), COUNT(*) FILTER (WHERE f.correct = 0 AND"
                          " p.probability >= ?) FROM feedback f JOIN predictions p ON"
                          " p.id = f.prediction_id WHERE f.client = ? AND f.id < ?"
                          " AND f.released_from IS NULL", (confident, client, verdict_id))
        assert (seen.client_verdicts, seen.client_contradicted) == tuple(recount)
    assert query(source, "SELECT COUNT(*) FROM feedback WHERE released_from IS NOT NULL") != [(0,)]


def test_a_held_verdict_is_quarantined_with_its_reason_and_never_learned(
        feedback_log: SQLFeedbackLog):
    log = feedback_log
    judge = Recorder([Judgement(False, UNPROVEN, True)])
    held = log.add_verdict(add(log, "a review to judge", 0.95, "a"), False, "a", judge)
    kept = log.add_verdict(add(log, "another review here", 0.6, "a"), False, "a", judge)
    assert (held.status, held.reason, held.client) == ("quarantined", UNPROVEN, "a")
    assert [v.id for v in log.accepted_after(0)] == [kept.id]
    assert log.quarantine_reasons() == [(UNPROVEN, 1)]
    # A repeat of an accepted verdict is not judged again: it is not learned anyway.
    repeat = log.add_verdict(add(log, "another review here", 0.6, "a"), False, "a", judge)
    assert repeat.repeat_of == kept.id and len(judge.seen) == 2
    log.close()


def test_a_rejected_verdict_is_never_released(feedback_log: SQLFeedbackLog):
    log = feedback_log
    judge = Recorder([Judgement(False, DISTRUSTED, False)] * 2)
    first = log.add_verdict(add(log, "a review to judge", 0.95, "a"), False, "a", judge)
    second = log.add_verdict(add(log, "another to judge", 0.95, "a"), False, "a", judge)
    assert log.reject([first.id]) == 1
    assert log.verdict(first.id).rejected
    with pytest.raises(Exception, match="rejected"):
        log.release([first.id])
    [new_id] = log.release([second.id])
    assert [v.id for v in log.accepted_after(0)] == [new_id]
    with pytest.raises(Exception, match="not quarantined"):
        log.reject([new_id])
    log.close()


# -- in the app ----------------------------------------------------------------------
def judged_by(client, address: str, texts: list[tuple[str, int]], lie: bool) -> list[dict]:
    """Predict each text from ``address``, then give the true verdict (or its opposite)."""
    answers = []
    for text, truth in texts:
        environ = {"REMOTE_ADDR": address}
        body = client.post("/api/predict", json={"review": text},
                           environ_base=environ).get_json()
        right = (body["label"] == "positive") == bool(truth)
        response = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                                      "correct": right != lie},
                               environ_base=environ)
        assert response.status_code == 201, response.get_json()
        answers.append(response.get_json())
    return answers


def reviews(seed: int, n: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    labels = [rng.randrange(2) for _ in range(n)]
    return [(make_review(rng, label, sentences=2), label) for label in labels]


def test_a_liar_is_held_and_an_honest_client_is_learned(make_app, tiny_model_dir):
    app = make_app(TRUST=True, CHECKPOINT_SECONDS=1e9)
    learner = app.extensions["learner"]
    client = app.test_client()
    judged_by(client, "192.0.2.66", reviews(1, 12), lie=True)
    judged_by(client, "192.0.2.10", reviews(2, 12), lie=False)
    liar = learner.feedback.verdicts(client="192.0.2.66")
    honest = learner.feedback.verdicts(client="192.0.2.10")
    # The tiny model is sure of these reviews: every lie contradicts a confident
    # prediction. The first ones are unproven, then the client is distrusted.
    assert [v.reason for v in liar[:2]] == [UNPROVEN, UNPROVEN]
    assert {v.reason for v in liar[2:]} == {DISTRUSTED}
    assert all(v.status == "accepted" for v in honest)
    assert_model_is_the_accepted_log(app, tiny_model_dir)

    runner = app.test_cli_runner()
    result = runner.invoke(args=["feedback", "clients"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[1:]}
    assert rows["192.0.2.66"] == ["12", "12", "12", "12", "12", "12"]
    assert rows["192.0.2.10"][:2] == ["12", "12"] and rows["192.0.2.10"][-1] == "0"

    # An operator who knows better releases the client's verdicts: learned at the end.
    result = runner.invoke(args=["feedback", "release", "--client", "192.0.2.66"])
    assert result.exit_code == 0 and "released 12 verdicts" in result.output, result.output
    assert len(learner.feedback.accepted_after(0)) == 24
    assert_model_is_the_accepted_log(app, tiny_model_dir)
    result = runner.invoke(args=["feedback", "reject", "--client", "192.0.2.66"])
    assert result.exit_code == 0 and "rejected 0 verdicts" in result.output


def test_stats_count_what_the_trust_policy_held(make_app):
    app = make_app(TRUST=True, CHECKPOINT_SECONDS=1e9)
    client = app.test_client()
    judged_by(client, "192.0.2.66", reviews(3, 5), lie=True)
    stats = client.get("/api/stats").get_json()
    assert stats["held_by_trust"] == 5 and stats["quarantined"] == 5
    assert stats["live_accuracy"] == 0.0 and stats["days"][0]["live_accuracy"] == 0.0
    reasons = {q["reason"]: q["verdicts"] for q in stats["quarantines"]}
    assert reasons == {UNPROVEN: 2, DISTRUSTED: 3}
    result = app.test_cli_runner().invoke(args=["feedback", "stats"])
    assert "live accuracy 0.0%" in result.output
    assert "5 quarantined (5 held by the trust policy)" in result.output


def test_release_and_reject_take_ids_or_a_client_not_both(make_app):
    app = make_app(TRUST=True)
    runner = app.test_cli_runner()
    for command in ("release", "reject"):
        result = runner.invoke(args=["feedback", command, "1", "--client", "x"])
        assert result.exit_code == 2 and "not both" in result.output


def assert_model_is_the_accepted_log(app, model_dir: Path) -> None:
    learner = app.extensions["learner"]
    live = learner.model.state()
    assert live.equals(learner.rebuild().state())
    assert live.equals(reference_state(model_dir, log_of(app)))
