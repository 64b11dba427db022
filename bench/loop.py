"""The learning loop outside movie reviews: what honest and dishonest verdicts do.

``python -m bench.loop`` runs scenarios over HTTP, each against a fresh instance
of ``app.py`` (the committed model, rate limits off, one trusted proxy so that
``X-Forwarded-For`` names each simulated client). A labelled set of sentences is
split in two halves by a fixed shuffle: the first is sent as predictions with
verdicts, the second is scored before and after, with a restart (TERM, then a
new start on the same instance folder) before every "after" figure; a fixed
sample of 5,000 reviews of the official IMDb test split is scored too. The
offline reference learns the same stream with the true labels in-process, one
and three passes. Scenarios:

* ``honest``: every prediction gets a verdict, always the truth;
* ``wrong-only``: only wrong predictions get one ("Incorrect");
* ``liar``: every prediction gets a verdict, always a lie;
* ``30%-lies``: ten clients, each lying on 30% of its verdicts;
* ``liar-spread``: every verdict a lie, each from an address never seen before
  (a liar spreading over many identities);
* ``liar-dilute``: every verdict a lie, each client first asking for
  :data:`DECOYS` predictions of IMDb reviews it never judges (a liar padding its
  record); beyond the issue's scenarios, so it has no target;
* ``mixed``: the honest stream of every set given, interleaved (one run).

Verdicts come from ten client addresses in turn (except ``liar-spread``). Each
row says whether it meets the issue's target (issue 26): honest at least the
offline three-pass reference; wrong-only at least +1 point (+1.5 on a stream of
over 1,000 verdicts); liars at most 1 point lost on the set; 30% lies a net gain
of at least 0.5 points; IMDb never more than 0.5 points lost.

Sets: the shared ``sentences/*_labelled.txt`` files and any ``--data FILE`` of
``text<TAB>label`` lines. Results are printed and written to ``reports/loop.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import (
    add_archive_argument,
    add_sentence_sets_argument,
    archive_or_none,
    command_line,
    versions_line,
)
from bench.labelled import SENTENCES, read_labelled, set_name
from bench.serving import Server
from sentiment.learning.trust import TRUST_REASONS
from sentiment.web.forms import MIN_REVIEW
from train.data import iter_archive

ROOT = Path(__file__).resolve().parent.parent
IMDB_SAMPLE = 5_000
SCENARIOS = ("honest", "wrong-only", "liar", "30%-lies", "liar-spread", "liar-dilute")
DECOYS = 4  # predictions a diluting liar asks for per verdict
LIARS_SHARE = 0.3
CLIENTS = 10


@dataclass
class LabelledSet:
    name: str
    stream: list[tuple[str, int]]
    score: list[tuple[str, int]]
    too_short: int  # sentences the app refuses (under MIN_REVIEW characters): left out


def read_set(path: Path, seed: int = 0) -> LabelledSet:
    """A ``text<TAB>label`` file, shuffled with a fixed seed, split into stream and score."""
    rows, too_short = [], 0
    for text, label in read_labelled(path):
        if not text.strip():
            continue
        if len(text.strip()) < MIN_REVIEW:
            too_short += 1
            continue
        rows.append((text.strip(), label))
    random.Random(seed).shuffle(rows)
    half = len(rows) // 2
    return LabelledSet(set_name(path), rows[:half], rows[half:], too_short)


def imdb_sample(archive: Path, n: int = IMDB_SAMPLE) -> list[tuple[str, int]]:
    test = sorted((r.id, r.review, r.sentiment) for r in iter_archive(archive) if r.split == "test")
    return [(text, label) for _, text, label in random.Random(0).sample(test, n)]


class Api:
    """The app's JSON API as one client (or as several, through X-Forwarded-For)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: object, client: str = "192.0.2.1") -> tuple[int, Any]:
        self.conn.request("POST", path, json.dumps(body).encode(),
                          {"Content-Type": "application/json", "X-Forwarded-For": client})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def predict(self, texts: list[str], client: str = "192.0.2.1") -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for start in range(0, len(texts), 1000):
            status, body = self.post("/api/predict", {"reviews": texts[start:start + 1000]},
                                     client)
            if status != 200:
                raise RuntimeError(f"predict answered {status}: {body}")
            results += body["results"]
        return results

    def accuracy(self, rows: list[tuple[str, int]]) -> float:
        predicted = self.predict([text for text, _ in rows])
        return sum((r["label"] == "positive") == bool(y)
                   for r, (_, y) in zip(predicted, rows, strict=True)) / len(rows)


@dataclass
class Outcome:
    scenario: str
    data: str
    sent: int = 0
    learned: int = 0
    held: int = 0  # by the trust policy, as they came
    quarantined: int = 0  # by the guard
    domain: dict[str, tuple[float, float]] = field(default_factory=dict)  # before, after
    imdb: tuple[float, float] = (0.0, 0.0)


def send_verdicts(api: Api, scenario: str, stream: list[tuple[str, int]], seed: int,
                  decoys: list[str] | None = None) -> int:
    """The scenario's verdicts on predictions of ``stream``; how many were sent.
    ``decoys``: texts a diluting liar asks predictions of."""
    rng = random.Random(seed)
    sent = 0
    for i, (text, truth) in enumerate(stream):
        client = (f"198.51.100.{i % CLIENTS + 1}" if scenario != "liar-spread"
                  else f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}")
        if scenario == "liar-dilute" and decoys:
            api.predict([decoys[(i * DECOYS + k) % len(decoys)] for k in range(DECOYS)], client)
        [result] = api.predict([text], client)
        right = (result["label"] == "positive") == bool(truth)
        if scenario == "wrong-only" and right:
            continue
        honest = scenario in ("honest", "wrong-only") or (
            scenario == "30%-lies" and rng.random() >= LIARS_SHARE)
        status, body = api.post("/api/feedback", {"prediction_id": result["prediction_id"],
                                                  "correct": right if honest else not right},
                                client)
        if status != 201:
            raise RuntimeError(f"feedback answered {status}: {body}")
        sent += 1
    return sent


def run_scenario(scenario: str, sets: list[LabelledSet], imdb: list[tuple[str, int]],
                 seed: int) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp) / "instance"
        instance.mkdir()
        server = Server(instance, workers=1, env_extra={"SENTIMENT_TRUSTED_PROXIES": "1"})
        server.start()
        try:
            api = Api(server.port)
            outcome = Outcome(scenario, "+".join(s.name for s in sets))
            before = {s.name: api.accuracy(s.score) for s in sets}
            imdb_before = api.accuracy(imdb)
            stream = [row for rows in zip(*(s.stream for s in sets), strict=False)
                      for row in rows]  # interleaved when several sets are mixed
            outcome.sent = send_verdicts(api, scenario, stream, seed,
                                         [text for text, _ in imdb])
            server.stop()
            server.start()  # the "after" figures come from a restarted app
            api = Api(server.port)
            outcome.domain = {s.name: (before[s.name], api.accuracy(s.score)) for s in sets}
            outcome.imdb = (imdb_before, api.accuracy(imdb))
            outcome.learned, outcome.held, outcome.quarantined = log_counts(instance)
        finally:
            server.stop()
    return outcome


def log_counts(instance: Path) -> tuple[int, int, int]:
    """(verdicts learned, held by the trust policy, quarantined by the guard) from the
    instance's log."""
    with sqlite3.connect(instance / "reviews.sqlite") as db:
        learned = db.execute("SELECT COUNT(*) FROM feedback WHERE status = 'accepted'"
                             " AND repeat_of IS NULL").fetchone()[0]
        reasons = db.execute("SELECT reason, COUNT(*) FROM feedback"
                             " WHERE status = 'quarantined' GROUP BY 1").fetchall()
    held = sum(n for reason, n in reasons if reason in TRUST_REASONS)
    return int(learned), held, sum(n for _, n in reasons) - held


def meets_target(scenario: str, outcome: Outcome, name: str,
                 three_passes: float) -> bool | None:
    """Whether a scenario's row meets its target (see the module's docstring); None:
    the scenario has none."""
    if scenario == "liar-dilute":
        return None
    before, after = outcome.domain[name]
    gain = (after - before) * 100
    imdb_ok = (outcome.imdb[1] - outcome.imdb[0]) * 100 >= -0.5 - 1e-9
    if scenario == "honest":
        return gain >= three_passes - 1e-9 and imdb_ok
    if scenario == "wrong-only":
        return gain >= (1.5 if outcome.sent > 1000 else 1.0) - 1e-9 and imdb_ok
    if scenario in ("liar", "liar-spread"):
        return gain >= -1.0 - 1e-9 and imdb_ok
    return gain >= 0.5 - 1e-9 and imdb_ok  # 30%-lies


def offline_reference(data: LabelledSet, imdb: list[tuple[str, int]],
                      passes: int) -> tuple[float, float]:
    """(domain, IMDb) accuracy after learning the stream with its true labels, in-process."""
    import numpy as np

    from sentiment.models.linear import SentimentModel
    from sentiment.text.vectorizer import PKL_DIR

    model = SentimentModel.load(PKL_DIR).clone()
    X = model.transform([text for text, _ in data.stream])
    y = np.array([label for _, label in data.stream])
    for _ in range(passes):
        for row in range(X.shape[0]):
            model.learn_features(X[row], y[row:row + 1])

    def accuracy(rows: list[tuple[str, int]]) -> float:
        predicted = model.predict_features(model.transform([t for t, _ in rows]))
        return float(np.mean([(p.label == "positive") == bool(label)
                              for p, (_, label) in zip(predicted, rows, strict=True)]))

    return accuracy(data.score), accuracy(imdb)


def points(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.4f} -> {pair[1]:.4f} ({(pair[1] - pair[0]) * 100:+.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop",
                                     description=__doc__.splitlines()[0])
    add_sentence_sets_argument(parser)
    add_archive_argument(parser)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed-domains run")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "loop.md")
    args = parser.parse_args(argv)
    paths = args.data or sorted(SENTENCES.glob("*_labelled.txt"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        print(f"error: no labelled file at {', '.join(missing) or SENTENCES}",
              file=sys.stderr)
        return 2
    archive = archive_or_none(args.archive)
    if archive is None:
        return 2
    began = time.perf_counter()
    print(versions_line(), flush=True)
    sets = [read_set(path) for path in paths]
    imdb = imdb_sample(archive)
    lines = ["| set | scenario | verdicts sent | learned | held (trust) | quarantined (guard) "
             "| set accuracy | IMDb accuracy | target |", "|---|---|---|---|---|---|---|---|---|"]
    met: list[bool] = []
    for data in sets:
        outcomes = []
        for scenario in args.scenarios:
            outcomes.append(run_scenario(scenario, [data], imdb, seed=1))
            print(f"{data.name} {scenario}: {outcomes[-1]}", flush=True)
        start = outcomes[0].domain[data.name][0], outcomes[0].imdb[0]
        three_passes = 0.0
        for passes in (1, 3):
            domain, imdb_after = offline_reference(data, imdb, passes)
            three_passes = round((domain - start[0]) * 100, 1)
            lines.append(f"| {data.name} | offline, true labels, {passes} pass"
                         f"{'es' if passes > 1 else ''} | {len(data.stream) * passes} | - | - | - "
                         f"| {points((start[0], domain))} | {points((start[1], imdb_after))} "
                         "| |")
        for outcome in outcomes:
            (name, pair), = outcome.domain.items()
            ok = meets_target(outcome.scenario, outcome, name, three_passes)
            if ok is not None:
                met.append(ok)
            verdict = "-" if ok is None else "met" if ok else "**missed**"
            lines.append(f"| {name} | {outcome.scenario} | {outcome.sent} | {outcome.learned} | "
                         f"{outcome.held} | {outcome.quarantined} | {points(pair)} | "
                         f"{points(outcome.imdb)} | {verdict} |")
        print("\n".join(lines[-len(outcomes) - 2:]), flush=True)
    if not args.no_mixed and len(sets) > 1:
        outcome = run_scenario("honest", sets, imdb, seed=1)
        for name, pair in outcome.domain.items():
            lines.append(f"| {name} (mixed stream) | honest | {outcome.sent} | "
                         f"{outcome.learned} | {outcome.held} | {outcome.quarantined} | "
                         f"{points(pair)} | {points(outcome.imdb)} | |")
            print(lines[-1], flush=True)
    print(f"\ntargets met: {sum(met)} of {len(met)}", flush=True)
    minutes = (time.perf_counter() - began) / 60
    command = command_line("bench.loop", argv)
    args.report.write_text(
        f"# The learning loop outside movie reviews (`{command}`)\n\n{versions_line()}; "
        f"{minutes:.1f} minutes.\n\nSentences under {MIN_REVIEW} characters, which the app "
        "refuses, are left out: " + ", ".join(f"{s.name} {s.too_short}" for s in sets)
        + ".\n\nEach scenario on a fresh instance of app.py (the "
        "committed model, rate limits off); the first half of each set (fixed shuffle) "
        "is sent as predictions and verdicts, the second half and a fixed sample of 5,000 "
        "official IMDb test reviews are scored before and after a restart. Accuracy "
        "before -> after (change in points). Targets (issue 26): honest at least the "
        "offline three-pass reference; wrong-only at least +1 point (+1.5 on over 1,000 "
        "verdicts); liars at most 1 point lost; 30% lies at least +0.5; IMDb never more "
        "than 0.5 points lost. Sentence sets: Kotzias et al., \"From Group "
        "to Individual Labels using Deep Features\", KDD 2015.\n\n" + "\n".join(lines) + "\n")
    print(f"\nwritten: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
