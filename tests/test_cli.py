"""The operator commands: ``flask --app app model ...`` and ``flask --app app feedback ...``."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import make_review
from tests.reference import ROOT, log_of, reference_state

CONFIG = {"CHECKPOINT_EVERY": 5, "CHECKPOINT_SECONDS": 1e9, "DURABLE_COMMITS": False}
pytestmark = pytest.mark.both_backends


def verdicts(app, n: int, seed: int = 0, wrong: float = 0.0) -> list[int]:
    client, rng, ids = app.test_client(), random.Random(seed), []
    for _ in range(n):
        label = rng.randrange(2)
        body = client.post("/api/predict", json={"review": make_review(rng, label)}).get_json()
        honest = (body["label"] == "positive") == bool(label)
        r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                              "correct": honest if rng.random() >= wrong
                                              else not honest})
        assert r.status_code == 201
        ids.append(r.get_json()["feedback_id"])
    return ids


def assert_model_is_the_log(app, model_dir: Path) -> None:
    learner = app.extensions["learner"]
    live = learner.model.state()
    assert live.equals(learner.rebuild().state())
    assert live.equals(reference_state(model_dir, log_of(app)))


def with_17_verdicts(make_app, **config):
    """An app with 17 verdicts: versions v000001..v000003 and two unsaved verdicts."""
    app = make_app(**CONFIG, **config)
    verdicts(app, 17)
    return app


@pytest.fixture
def served(make_app):
    return with_17_verdicts(make_app)


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_model_list(served):
    result = invoke(served, "model", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["version", "parent", "feedback"]
    rows = {line[2:].split()[0]: line for line in lines[1:] if line[2:9] in
            ("base   ", "v000001", "v000002", "v000003")}
    assert set(rows) == {"base", "v000001", "v000002", "v000003"}
    assert rows["v000003"].startswith("* ")
    assert "11..15" in rows["v000003"] and "v000002" in rows["v000003"]
    assert "current (v000003+17)" in result.output


def test_rollback_quarantines_later_verdicts(served, make_app, tiny_model_dir):
    learner = served.extensions["learner"]
    result = invoke(served, "model", "rollback", "v000002")
    assert result.exit_code == 0, result.output
    assert "current version is now v000002; 7 later verdicts quarantined" in result.output
    quarantined = learner.feedback.verdicts("quarantined")
    assert [v.id for v in quarantined] == list(range(11, 18))
    assert {v.reason for v in quarantined} == {"operator rollback to v000002"}
    assert learner.version.name == "v000002" and learner.applied_id == 10
    assert_model_is_the_log(served, tiny_model_dir)
    listing = invoke(served, "model", "list").output
    assert "* v000002" in listing and "x v000003" in listing

    # Rolled-back verdicts are listed, and one can be released: appended, applied.
    result = invoke(served, "feedback", "list", "--status", "quarantined")
    assert result.exit_code == 0
    listed = [int(line.split()[0]) for line in result.stdout.splitlines()]
    assert listed == list(range(11, 18))
    assert "operator rollback to v000002" in result.stdout
    assert result.stderr.strip() == "7 verdicts"
    result = invoke(served, "feedback", "release", "13")
    assert result.exit_code == 0, result.output
    assert "released 1 verdicts as 18" in result.output
    new = learner.feedback.verdict(18)
    assert (new.status, new.released_from, new.prediction_id) == (
        "accepted", 13, learner.feedback.verdict(13).prediction_id)
    assert learner.feedback.verdict(13).status == "released"
    assert learner.applied_id == 18
    assert_model_is_the_log(served, tiny_model_dir)

    result = invoke(served, "model", "rebuild")
    assert result.exit_code == 0, result.output
    assert "bit-identical" in result.output

    # A restarted app agrees.
    restarted = make_app(**CONFIG)
    assert restarted.extensions["learner"].model.state().equals(learner.model.state())
    assert_model_is_the_log(restarted, tiny_model_dir)


@pytest.mark.parametrize("version", ["v000099", "nonsense", "v000004"])
def test_rollback_to_unknown_version_fails_clearly(served, version):
    learner = served.extensions["learner"]
    before = learner.model.state()
    result = invoke(served, "model", "rollback", version)
    assert result.exit_code != 0
    assert result.output.startswith(f"Error: {version} is not the current version")
    assert len(result.output.strip().splitlines()) == 1
    assert learner.store.current_name() == "v000003"
    assert learner.feedback.verdicts("quarantined") == []
    assert learner.model.state().equals(before)


def test_rollback_to_a_corrupt_version_fails_clearly(served):
    learner = served.extensions["learner"]
    learner.store.files.write("v000002.npz", b"not a state")  # folder or database
    result = invoke(served, "model", "rollback", "v000002")
    assert result.exit_code != 0
    assert result.output.startswith("Error: v000002: state file does not match its sha256")
    assert learner.feedback.verdicts("quarantined") == []


@pytest.fixture
def pruned(make_app):
    """Like ``served`` but keeping two state files: v000001's is pruned."""
    return with_17_verdicts(make_app, KEEP_VERSIONS=2)


def test_old_states_are_pruned_and_rollback_rebuilds_them(pruned, tiny_model_dir):
    learner = pruned.extensions["learner"]
    files = learner.store.files  # the models folder, or the database (PostgreSQL)
    assert sorted(files.names(".npz")) == ["v000002.npz", "v000003.npz"]
    assert files.exists("v000001.json")  # the history stays
    listing = invoke(pruned, "model", "list").output
    assert [line for line in listing.splitlines() if "(state pruned)" in line] == [
        line for line in listing.splitlines() if "v000001" in line[:11]]

    result = invoke(pruned, "model", "rollback", "v000001")
    assert result.exit_code == 0, result.output
    assert "current version is now v000001; 12 later verdicts quarantined" in result.output
    info, state = learner.store.load("v000001")  # restored, and its sha256 checks out
    assert learner.version.name == "v000001" and learner.applied_id == 5
    assert learner.model.state().equals(state)
    assert_model_is_the_log(pruned, tiny_model_dir)


def test_a_checkpoint_also_removes_state_files_a_crash_left_without_manifest(pruned):
    learner = pruned.extensions["learner"]
    learner.store.files.write("v000099.npz", b"written just before a kill -9")
    verdicts(pruned, 5, seed=1)  # the next checkpoint
    assert learner.store.current_name() == "v000004"
    assert sorted(learner.store.files.names(".npz")) == ["v000003.npz", "v000004.npz"]


def test_rollback_refuses_a_rebuilt_state_that_differs(pruned):
    learner = pruned.extensions["learner"]
    files = learner.store.files
    data = json.loads(files.read("v000001.json"))
    files.write("v000001.json", json.dumps({**data, "sha256": "0" * 64}).encode())
    result = invoke(pruned, "model", "rollback", "v000001")
    assert result.exit_code != 0
    assert result.output.startswith("Error: v000001: its state pruned, and the log replayed")
    assert learner.feedback.verdicts("quarantined") == []
    assert learner.store.current_name() == "v000003"
    assert not files.exists("v000001.npz")


def test_rebuild_reports_a_difference(served):
    result = invoke(served, "model", "rebuild")
    assert result.exit_code == 0 and "bit-identical" in result.output
    learner = served.extensions["learner"]
    learner.model.learn("an extra review that is in no log at all", 1)  # tamper
    result = invoke(served, "model", "rebuild")
    assert result.exit_code == 1
    assert "DIFFERENT" in result.output


@pytest.mark.parametrize("verdict_id, message", [
    (3, "Error: verdict 3 is accepted, not quarantined"),
    (999, "Error: no verdict with id 999"),
])
def test_release_refuses_what_is_not_quarantined(served, verdict_id, message):
    learner = served.extensions["learner"]
    result = invoke(served, "feedback", "release", str(verdict_id))
    assert result.exit_code != 0
    assert result.output.strip() == message
    assert learner.feedback.counts() == {"predictions": 17, "accepted": 17}


@pytest.mark.parametrize("ids, message", [
    (["99999999999999999999999"], "is not in the range 1<=x<=9223372036854775807"),  # was a 500
    (["0"], "is not in the range"),
    (["-4"], "No such option '-4'"),
])
def test_release_refuses_impossible_ids(served, ids, message):
    result = invoke(served, "feedback", "release", *ids)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_release_takes_an_id_given_twice_once(served):
    invoke(served, "model", "rollback", "v000003")  # 16 and 17 quarantined
    result = invoke(served, "feedback", "release", "16", "16", "17")
    assert result.exit_code == 0, result.output  # was: "verdict 16 is released, not quarantined"
    assert result.output.strip() == "released 2 verdicts as 18, 19"


def test_list_refuses_a_negative_limit(served):
    result = invoke(served, "feedback", "list", "--limit", "-2")  # listed all but the first 2
    assert result.exit_code == 2 and "is not in the range x>=0" in result.output


def test_release_needs_an_id(served):
    result = invoke(served, "feedback", "release")
    assert result.exit_code == 2
    assert "give verdict IDS or --client" in result.output


def test_export_csv(served):
    learner = served.extensions["learner"]
    invoke(served, "model", "rollback", "v000003")  # two quarantined rows, with a reason
    result = invoke(served, "feedback", "export", "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == ["id", "prediction_id", "correct", "label", "status", "reason",
                       "released_from", "created", "review"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 18))
    by_id = {int(r[0]): r for r in rows[1:]}
    stored = learner.feedback.verdict(16)
    assert by_id[16][4:6] == ["quarantined", "operator rollback to v000003"]
    assert by_id[16][8] == stored.review
    result = invoke(served, "feedback", "export", "--format", "xml")
    assert result.exit_code == 2


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_export_neutralises_what_a_spreadsheet_would_run(served, start):
    """A review written as a formula (=HYPERLINK(...)) was exported as one."""
    client = served.test_client()
    review = start + 'HYPERLINK("http://evil.example", "a wonderful brilliant film")'
    pid = client.post("/api/predict", json={"review": review}).get_json()["prediction_id"]
    assert client.post("/api/feedback", json={"prediction_id": pid, "correct": True}
                       ).status_code == 201
    result = invoke(served, "feedback", "export")
    last = list(csv.reader(io.StringIO(result.output)))[-1]
    stored = served.extensions["learner"].feedback.verdicts()[-1].review
    assert last[8] == "'" + stored and stored.startswith(start)


def test_tabs_and_returns_that_start_a_cell_are_neutralised_too():
    """Reviews are stored stripped, so these come only from elsewhere; the rule is OWASP's."""
    from sentiment.cli import spreadsheet_safe

    assert spreadsheet_safe("\t=1+1") == "'\t=1+1"
    assert spreadsheet_safe("\r@SUM(A1)") == "'\r@SUM(A1)"
    assert spreadsheet_safe("A fine film = a good time") == "A fine film = a good time"


@pytest.mark.parametrize("command", [
    ["model"], ["model", "list"], ["model", "rollback"], ["model", "rebuild"],
    ["feedback"], ["feedback", "list"], ["feedback", "release"], ["feedback", "export"],
])
def test_help(served, command):
    result = invoke(served, *command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith("Usage:")
    assert len(result.output.splitlines()) >= 3


@pytest.mark.slow
def test_real_command_line(make_app, tmp_path, tiny_model_dir):
    """``flask --app app`` in a subprocess, configured by INSTANCE_PATH and SENTIMENT_*."""
    app = make_app(**CONFIG)
    verdicts(app, 7)  # v000001 holds 1..5; 6 and 7 are replayed at each start
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(INSTANCE_PATH=app.instance_path, SENTIMENT_MODEL_DIR=str(tiny_model_dir),
               SENTIMENT_CHECKPOINT_EVERY=json.dumps(1000),
               SENTIMENT_BACKGROUND_CHECKPOINTS="false")
    if isinstance(log_of(app), str):
        env["DATABASE_URL"] = str(log_of(app))

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    result = flask("model", "list")
    assert result.returncode == 0, result.stderr
    assert "* v000001" in result.stdout and "current (v000001+7)" in result.stdout
    result = flask("model", "rollback", "v000007")
    assert result.returncode == 1
    assert result.stderr.strip() == ("Error: v000007 is not the current version or one of its "
                                     "ancestors: v000001, base")
    result = flask("model", "rebuild")
    assert result.returncode == 0, result.stderr
    assert "replayed 7 accepted verdicts; live model v000001+7: bit-identical" in result.stdout
    # the digest every host that holds the same log reports as /api/health's model_digest
    app.extensions["learner"].sync()
    digest = app.test_client().get("/api/health").get_json()["model_digest"]
    assert f"rebuilt model digest {digest}" in result.stdout


@pytest.mark.slow
def test_an_unusable_instance_or_setting_is_one_line_not_a_traceback(tmp_path, tiny_model_dir):
    (tmp_path / "reviews.sqlite").write_text("not a database")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(INSTANCE_PATH=str(tmp_path), SENTIMENT_MODEL_DIR=str(tiny_model_dir))
    cases = {  # extra environment: the error line
        "SENTIMENT_GUARD": ("maybe", "Error: SENTIMENT_GUARD must be a valid boolean, unable to "
                                     "interpret input, not 'maybe'"),
        "SENTIMENT_RATE_LIMITS": ("false", "Error: cannot start the app: file is not a database: "
                                           f"{tmp_path / 'reviews.sqlite'}"),
    }
    runs = {key: subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "model", "list"],
                                  cwd=ROOT, env={**env, key: value}, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for key, (value, _) in cases.items()}
    for key, (_, line) in cases.items():
        out, err = runs[key].communicate(timeout=120)
        assert runs[key].returncode == 1, (key, out, err)
        assert err.strip() == line, (key, err)


def test_feedback_stats_and_the_api_agree(served):
    result = invoke(served, "feedback", "stats")
    assert result.exit_code == 0, result.output
    stats = served.test_client().get("/api/stats").get_json()
    assert stats["verdicts"] == 17 and f"{stats['verdicts']:,} verdicts" in result.output
    assert sum(day["verdicts"] for day in stats["days"]) == stats["verdicts"]
    assert [v["name"] for v in stats["versions"] if v["current"]] == [
        served.extensions["learner"].store.current_name()]
    assert stats["days"][-1]["day"] in result.output
