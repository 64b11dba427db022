"""Several app processes converge on the same model, bit for bit.

Each process follows the shared feedback log in id order; checkpoints and
guard quarantines written by one are picked up by the others. On SQLite they
share one instance folder (one host); on PostgreSQL each has its own, as
separate hosts would.
"""

from __future__ import annotations

import random
import threading

import pytest

from tests.fakes import make_review
from tests.reference import Server, Source, query, reference_state, version_files

PROCESSES = 4


def start_all(servers: list[Server]) -> None:
    errors: list[BaseException] = []

    def start(server: Server) -> None:
        try:
            server.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def answers(server: Server, reviews: list[str]) -> tuple[list, dict]:
    """The process's predictions for ``reviews`` (which syncs it), then its full state."""
    status, body = server.call("POST", "/api/predict", {"reviews": reviews})
    assert status == 200, body
    predicted = [(r["label"], r["probability"]) for r in body["results"]]
    status, state = server.call("GET", "/api/health")
    assert status == 200
    return predicted, state


@pytest.mark.slow
@pytest.mark.both_backends
def test_four_processes_converge(tmp_path, tiny_model_dir, backend):
    instance = tmp_path / "instance"
    db: Source = backend or instance / "reviews.sqlite"
    # All four start at once on a fresh instance folder (PostgreSQL: on one database,
    # each its own folder): they race to create the log and generate the secret key.
    servers = [Server(instance if backend is None else tmp_path / f"host{i}", tiny_model_dir,
                      tmp_path / "logs", name=f"p{i}", CHECKPOINT_EVERY=5,
                      CHECKPOINT_SECONDS=1e9, DATABASE_URL=backend)
               for i in range(PROCESSES)]
    try:
        start_all(servers)
        acked: list[int] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            rng = random.Random(n)
            for i in range(15):
                # Predict on one process, give the verdict to another.
                here, there = servers[(n + i) % PROCESSES], servers[(n + i + 1) % PROCESSES]
                label = rng.randrange(2)
                status, body = here.call("POST", "/api/predict",
                                         {"review": make_review(rng, label)})
                if status != 200:
                    errors.append(f"predict {status} {body}")
                    return
                honest = (body["label"] == "positive") == bool(label)
                correct = honest if n else not honest  # client 0 lies: the guard acts
                status, body = there.call("POST", "/api/feedback",
                                          {"prediction_id": body["prediction_id"],
                                           "correct": correct})
                with lock:
                    if status == 201:
                        acked.append(body["feedback_id"])
                    else:
                        errors.append(f"feedback {status} {body}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(PROCESSES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:5]

        probe = [make_review(random.Random(1000 + i), i % 2) for i in range(20)]
        probe += ["The plot was dull but the cast wonderful and the music great."]
        check_converged(servers, probe, tiny_model_dir, db)
        assert {r[0] for r in query(db, "SELECT id FROM feedback")} == set(acked)
        [(quarantined,)] = query(db, "SELECT COUNT(*) FROM feedback"
                                     " WHERE status = 'quarantined'")
        with version_files(db, instance / "models") as files:
            versions = sorted(files.names(".json"))
        assert len(versions) >= 3, versions
        print(f"\n{len(acked)} verdicts, {quarantined} quarantined, {len(versions)} versions")

        # An operator rolls back from another process (as ``flask model rollback``
        # does): the generation changes and every server rebuilds from that version.
        from app import create_app

        operator = create_app({"INSTANCE_PATH": str(instance), "MODEL_DIR": str(tiny_model_dir),
                               "BACKGROUND_CHECKPOINTS": False, "DATABASE_URL": backend})
        learner = operator.extensions["learner"]
        chain = learner.store.chain()
        target = chain[len(chain) // 2]
        assert learner.rollback(target) > 0
        check_converged(servers, probe, tiny_model_dir, db)
        released = learner.feedback.release(
            [v.id for v in learner.feedback.verdicts("quarantined")][:3])
        assert len(released) == 3
        predicted, state = check_converged(servers, probe, tiny_model_dir, db)
        assert state["applied_feedback_id"] == released[-1]
        learner.feedback.close()

        # One verdict on one process: every other process reflects it at once.
        status, body = servers[0].call("POST", "/api/predict", {"review": probe[-1]})
        before = body["probability"]
        status, body = servers[0].call("POST", "/api/feedback", {
            "prediction_id": body["prediction_id"], "correct": body["label"] != "positive"})
        assert status == 201
        predicted, _ = check_converged(servers, probe, tiny_model_dir, db)
        assert predicted[-1][1] != before
    finally:
        for server in servers:
            server.stop()


def check_converged(servers: list[Server], probe: list[str], model_dir, db) -> tuple:
    results = [answers(server, probe) for server in servers]
    expected = reference_state(model_dir, db).digest()
    first_predicted, first_state = results[0]
    print("model_version per process:", [state["model_version"] for _, state in results])
    for predicted, state in results:
        assert predicted == first_predicted
        assert state["model_digest"] == expected, state
        assert state["applied_feedback_id"] == first_state["applied_feedback_id"]
    return results[0]
