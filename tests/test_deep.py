"""The Keras models: encoding, state, training, and the app serving and learning with one.

A tiny CNN (vocabulary 200, 40 words, one or two epochs on generated
reviews) is trained once by the real training code; every other test serves
it. The deep models pin their process to one CPU (sentiment.models.deep.backend),
so this module gives the test process its CPUs and environment back at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sentiment.models.deep.state import DeepState
from sentiment.models.deep.text import OOV, Vocabulary, words
from tests.fakes import make_review, write_csv

pytestmark = pytest.mark.deep
ROOT = Path(__file__).resolve().parent.parent
REVIEW = "A wonderful, brilliant and moving film. I loved it."
needs_keras = pytest.mark.skipif(
    importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None,
    reason="the deep requirements are not installed (make deep)")


@pytest.fixture(scope="module", autouse=True)
def process_restored() -> Iterator[None]:
    """Loading a deep model pins this process to one CPU and sets Keras' environment."""
    cpus, environ = os.sched_getaffinity(0), dict(os.environ)
    yield
    os.sched_setaffinity(0, cpus)
    os.environ.clear()
    os.environ.update(environ)


@pytest.fixture(scope="session")
def tiny_deep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cnn preset, shrunk, trained on generated reviews by the real training code."""
    from sentiment.models.deep import backend

    backend.prepare()  # one CPU before JAX starts: this process serves the model next
    from train.deep.presets import CNN
    from train.deep.train import run
    from train.presets import OFFICIAL_TEST

    folder = tmp_path_factory.mktemp("tiny_deep")
    csv_path = write_csv(folder / "reviews.csv")
    preset = replace(CNN, vocabulary=200, seq_len=40, epochs=2, holdout=100, validation=100,
                     batch_size=50, stopwords="none", evaluations=(OFFICIAL_TEST,),
                     optimizer={"name": "adam", "learning_rate": 0.01},
                     hyper_parameters={"embedding_dim": 16, "filters": 16})
    report = run(preset, None, csv_path, folder / "model", folder / "reports", skip_csv=True,
                 progress=False, check_online=False)
    assert report["accuracy"]["test"]["accuracy"] > 0.9
    return folder / "model"


@pytest.fixture(scope="session")
def tiny_ensemble_dir(tiny_deep_dir: Path) -> Path:
    """The tiny CNN and a tiny RCNN of the same vocabulary, composed into an ensemble."""
    from train.deep.ensemble import compose
    from train.deep.presets import RCNN
    from train.deep.train import run
    from train.presets import OFFICIAL_TEST

    folder = tiny_deep_dir.parent
    preset = replace(RCNN, vocabulary=200, seq_len=40, epochs=2, holdout=100, validation=100,
                     batch_size=50, stopwords="none", evaluations=(OFFICIAL_TEST,),
                     optimizer={"name": "adam", "learning_rate": 0.01},
                     hyper_parameters={"embedding_dim": 16, "units": 8, "hidden": 16})
    run(preset, None, folder / "reviews.csv", folder / "rcnn", folder / "reports", skip_csv=True,
        progress=False, check_online=False)
    compose([tiny_deep_dir, folder / "rcnn"], folder / "ensemble", folder / "reviews.csv")
    return folder / "ensemble"


# -- encoding and state: no Keras needed ---------------------------------------
def test_words_lowercase_strip_tags_and_keep_inner_apostrophes() -> None:
    assert words("Don’t MISS it!<br /><br />A 10/10 film") == ["don't", "miss", "it", "a",
                                                              "10", "10", "film"]


def test_vocabulary_is_deterministic_and_keeps_the_chosen_end() -> None:
    reviews = [["b", "a", "c"], ["a", "b"], ["d"]]
    vocab = Vocabulary.build(reviews, limit=2, seq_len=2, keep="last")
    assert vocab.words == ("a", "b")  # a and b seen twice, tie broken by the word
    assert Vocabulary.build(reversed(reviews), limit=2, seq_len=2).words == vocab.words
    assert vocab.encode([["c", "a", "b"], ["a"]]).tolist() == [[2, 3], [2, 0]]
    first = replace(vocab, keep="first")
    assert first.encode([["c", "a", "b"]]).tolist() == [[OOV, 2]]
    assert Vocabulary.from_bytes(vocab.to_json_bytes()) == vocab
    assert first.fingerprint != vocab.fingerprint


def test_stopwords_are_removed_before_encoding() -> None:
    vocab = Vocabulary(("good", "not"), 5, frozenset({"the", "was"}))
    assert vocab.tokenize("The film was not good") == ["film", "not", "good"]
    assert vocab.transform(["The film was not good"]).tolist() == [[OOV, 3, 2, 0, 0]]


def test_stored_rows_decode_to_the_same_features_and_refuse_damage() -> None:
    vocab = Vocabulary(tuple(f"w{i}" for i in range(300)), 8)
    texts = ["w1 w2 unknown w299", "w5 " * 20, "nothing known here at all"]
    X = vocab.transform(texts)
    rows = vocab.encode_rows(X)
    decoded = vocab.decode_rows(rows)
    assert decoded is not None and decoded.dtype == np.int32 and (decoded == X).all()
    damaged = bytearray(rows[0])  # type: ignore[arg-type]
    damaged[-1] ^= 1
    assert vocab.decode_rows([bytes(damaged), rows[1]]) is None
    assert vocab.decode_rows([None, rows[1]]) is None
    other = Vocabulary(vocab.words[:-1], 8)  # another vocabulary: another fingerprint
    assert other.decode_rows(rows) is None


def test_state_round_trip_digest_and_equality() -> None:
    state = DeepState.of(["cnn/conv3/kernel", "sgd/iteration"],
                         [np.arange(6, dtype=np.float32).reshape(2, 3), np.int32(4)])
    again = DeepState.from_bytes(state.to_bytes())
    assert again.names == state.names and again.equals(state)
    assert again.digest() == state.digest()
    changed = DeepState(state.names, (state.arrays[0] + np.float32(1e-7), state.arrays[1]))
    assert not changed.equals(state) and changed.digest() != state.digest()
    with pytest.raises(ValueError):
        DeepState.from_bytes(b"not a state")


def test_the_keras_free_modules_import_no_keras() -> None:
    code = ("import sys, sentiment.models.deep.text, sentiment.models.deep.state, "
            "sentiment.models.deep.served, train.deep.presets, train.__main__; "
            "print(sorted(m for m in ('keras', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the trained model -------------------------------------------------------
def _in_fresh_process(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_a_fresh_process_loads_the_same_model(tiny_deep_dir: Path) -> None:
    from sentiment.models import load_model

    model = load_model(tiny_deep_dir)
    texts = [make_review(random.Random(i), i % 2) for i in range(20)]
    mine = model.probabilities(model.transform(texts)).tolist()
    theirs = _in_fresh_process(
        "import json, sys; from sentiment.models import load_model; "
        f"m = load_model({str(tiny_deep_dir)!r}); "
        f"print(json.dumps(m.probabilities(m.transform({texts!r})).tolist()))")
    assert json.loads(theirs) == mine
    assert [p.label for p in model.predict_features(model.transform(texts))] == \
        ["negative", "positive"] * 10


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_explanations_name_the_words_that_decided(tiny_deep_dir: Path) -> None:
    from sentiment.models import load_model

    model = load_model(tiny_deep_dir)
    pushes = dict(model.explain(REVIEW, k=10))
    assert len(pushes) <= 10 and pushes
    assert all(word in words(REVIEW) for word in pushes)  # each word once
    assert max(pushes, key=pushes.__getitem__) in {"wonderful", "brilliant", "moving", "loved"}
    assert model.explain("Awful, boring, a waste.", k=1)[0][1] < 0


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_a_model_file_that_does_not_match_its_manifest_is_refused(
        tiny_deep_dir: Path, tmp_path: Path) -> None:
    import shutil

    from sentiment.models.deep.served import DeepModel

    copy = tmp_path / "model"
    shutil.copytree(tiny_deep_dir, copy)
    vocab = json.loads((copy / "vocabulary.json").read_text())
    vocab["words"][0], vocab["words"][1] = vocab["words"][1], vocab["words"][0]
    (copy / "vocabulary.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="vocabulary.json does not match its sha256"):
        DeepModel.load(copy)


# -- the app -------------------------------------------------------------------
@pytest.fixture
def deep_app(make_app: Callable[..., Any], tiny_deep_dir: Path) -> Callable[..., Any]:
    """Apps on one instance folder serving the tiny deep model (call again to restart)."""

    def factory(**config: Any) -> Any:
        return make_app(**{"MODEL_DIR": str(tiny_deep_dir), "WTF_CSRF_ENABLED": False,
                           "GUARD": False, "DURABLE_COMMITS": False, **config})

    return factory


def give_verdicts(app: Any, n: int, seed: int = 0) -> list[int]:
    """N predictions and a verdict on each (every third one "incorrect")."""
    client, rng, ids = app.test_client(), random.Random(seed), []
    for i in range(n):
        body = client.post("/api/predict",
                           json={"review": make_review(rng, rng.randrange(2))}).get_json()
        r = client.post("/api/feedback", json={"prediction_id": body["prediction_id"],
                                              "correct": i % 3 != 2})
        assert r.status_code == 201
        ids.append(r.get_json()["feedback_id"])
    return ids


def health(app: Any) -> dict[str, Any]:
    return dict(app.test_client().get("/api/health").get_json())


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_the_app_predicts_explains_and_learns_a_verdict(deep_app: Callable[..., Any]) -> None:
    app = deep_app()
    client = app.test_client()
    r = client.post("/api/predict", json={"review": REVIEW})
    assert r.status_code == 200 and r.get_json()["label"] == "positive"
    page = client.post("/results", data={"review": REVIEW})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Words that pushed the decision" in html and "towards positive" in html
    assert "A Keras model (cnn) trained" in html  # the footer names what answers
    before = health(app)
    p = app.extensions["learner"].model.probabilities(app.extensions["learner"].model.transform(
        [REVIEW]))[0]
    r = client.post("/api/feedback", json={"prediction_id": r.get_json()["prediction_id"],
                                           "correct": False})
    assert r.status_code == 201 and r.get_json()["label"] == "negative"
    after = health(app)
    assert after["model_version"] == "base+1" and after["model_digest"] != before["model_digest"]
    live = app.extensions["learner"].model
    assert live.probabilities(live.transform([REVIEW]))[0] < p  # learned: less positive
    batch = client.post("/api/predict", json={"reviews": [REVIEW, "Dull and a waste of time."]})
    assert [x["label"] for x in batch.get_json()["results"]] == ["positive", "negative"]


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_restart_rebuild_and_other_processes_reach_the_same_model(
        deep_app: Callable[..., Any], tiny_deep_dir: Path) -> None:
    app = deep_app(CHECKPOINT_EVERY=1000)  # no checkpoint: a restart replays the whole log
    give_verdicts(app, 12)
    digest = health(app)["model_digest"]
    assert health(deep_app())["model_digest"] == digest  # restart on the same instance
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(INSTANCE_PATH=app.instance_path, SENTIMENT_MODEL_DIR=str(tiny_deep_dir),
               SENTIMENT_CHECKPOINT_EVERY="1000", SENTIMENT_BACKGROUND_CHECKPOINTS="false")
    rebuild = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "model", "rebuild"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rebuild.returncode == 0, rebuild.stderr[-3000:]
    assert "replayed 12 accepted verdicts" in rebuild.stdout
    assert "bit-identical" in rebuild.stdout
    code = ("from app import create_app; "
            "print(create_app().test_client().get('/api/health').get_json()['model_digest'])")
    others = {_in_fresh_process(code, **env) for _ in range(2)}  # two processes replay the log
    assert others == {digest}


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_a_restart_replays_only_what_the_checkpoint_lacks(
        deep_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from sentiment.models.deep.served import DeepModel

    app = deep_app(CHECKPOINT_EVERY=1)
    give_verdicts(app, 5)
    learner = app.extensions["learner"]
    assert learner.version.last_feedback_id == 5 and learner.version.name == "v000005"
    unsaved = deep_app(CHECKPOINT_EVERY=1000)
    give_verdicts(unsaved, 3, seed=1)  # 6..8, not checkpointed
    digest = health(unsaved)["model_digest"]
    learned: list[int] = []
    original = DeepModel.learn_features

    def counting(self: DeepModel, X: np.ndarray, y: np.ndarray) -> None:
        learned.append(len(X))
        original(self, X, y)

    monkeypatch.setattr(DeepModel, "learn_features", counting)
    restarted = deep_app(CHECKPOINT_EVERY=1000)
    assert sum(learned) == 3  # verdicts 6, 7 and 8 only
    status = health(restarted)
    assert status["model_version"] == "v000005+8" and status["model_digest"] == digest
    assert restarted.extensions["learner"].model.state().equals(
        restarted.extensions["learner"].rebuild().state())


# -- an ensemble ------------------------------------------------------------------
@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_an_ensemble_answers_with_its_members_mean_and_explains_with_their_words(
        tiny_ensemble_dir: Path) -> None:
    from sentiment.models import load_model
    from sentiment.models.deep.ensemble import EnsembleModel

    ensemble = load_model(tiny_ensemble_dir)
    assert isinstance(ensemble, EnsembleModel) and list(ensemble.members) == ["cnn", "rcnn"]
    manifest = json.loads((tiny_ensemble_dir / "manifest.json").read_text())
    assert manifest["kind"] == "ensemble" and manifest["accuracy"]["test"] > 0.9
    texts = [make_review(random.Random(i), i % 2) for i in range(20)]
    X = ensemble.transform(texts)
    cnn, rcnn = (load_model(tiny_ensemble_dir / name) for name in ("cnn", "rcnn"))
    expected = (cnn.probabilities(X) + rcnn.probabilities(X)) / np.float32(2)  # type: ignore[attr-defined]
    assert np.allclose(ensemble.probabilities(X), expected, atol=1e-7)
    assert ensemble.explain(REVIEW, k=3)[0][0] in {"wonderful", "brilliant", "moving", "loved"}


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_an_ensemble_refuses_members_that_do_not_fit(tiny_ensemble_dir: Path,
                                                     tmp_path: Path) -> None:
    from train.deep.ensemble import EnsembleError, compose

    cnn = tiny_ensemble_dir / "cnn"
    with pytest.raises(EnsembleError, match="two members of preset 'cnn'"):
        compose([cnn, cnn], tmp_path / "twice", None)
    with pytest.raises(EnsembleError, match="at least two members"):
        compose([cnn], tmp_path / "alone", None)
    assert not (tmp_path / "twice").exists() and not (tmp_path / "twice.partial").exists()
    done = subprocess.run([sys.executable, "-m", "train.deep.ensemble", str(cnn),
                           str(ROOT / "pkl_objects"), "--out", str(tmp_path / "mixed"),
                           "--no-eval"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "not a Keras model folder" in done.stderr


@needs_keras
@pytest.mark.slow  # trains a tiny Keras model (session fixture): seconds
def test_an_ensemble_learns_each_verdict_in_every_member_and_replays_bit_for_bit(
        deep_app: Callable[..., Any], tiny_ensemble_dir: Path) -> None:
    app = deep_app(MODEL_DIR=str(tiny_ensemble_dir), CHECKPOINT_EVERY=4,
                   CHECKPOINT_SECONDS=3600)
    learner = app.extensions["learner"]
    before = {n: m.state().digest() for n, m in learner.model.members.items()}
    give_verdicts(app, 6)
    after = {n: m.state().digest() for n, m in learner.model.members.items()}
    assert all(after[n] != before[n] for n in before)  # every member moved
    status = health(app)
    assert status["model_version"] == "v000001+6"  # checkpointed after the 4th verdict
    restarted = deep_app(MODEL_DIR=str(tiny_ensemble_dir), CHECKPOINT_EVERY=4,
                         CHECKPOINT_SECONDS=3600)
    assert health(restarted)["model_digest"] == status["model_digest"]
    assert restarted.extensions["learner"].model.state().equals(
        restarted.extensions["learner"].rebuild().state())
    page = restarted.test_client().post("/results", data={"review": REVIEW})
    assert page.status_code == 200 and "towards positive" in page.get_data(as_text=True)
