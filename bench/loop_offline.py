"""The learning loop simulated in process: how each rule of the trust policy was chosen.

``python -m bench.loop_offline`` plays :mod:`bench.loop`'s scenarios without a
server: the committed model, the same streams, the same ten client addresses in
turn (a new one per verdict for ``liar-spread``), each verdict judged by a
:class:`~sentiment.learning.trust.TrustPolicy` on the same evidence the log
counts, and learned with the same replays. It runs in seconds, so the variants
of ``docs/learning-loop.md``'s table (confidence gates alone, the client's
record, the newcomers' pool, the replays, tighter thresholds) are compared on
every scenario; the HTTP benchmark then checks the chosen one. ``--snippets``
adds a third check: 3,000 + 3,000 official test reviews cut to 200 characters
(none of the 5,000 IMDb reviews scored), a domain the model knows. The guard
is left out (no checkpoint is scored here).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import add_archive_argument, add_sentence_sets_argument, archive_or_none, versions_line
from bench.labelled import SENTENCES
from bench.loop import CLIENTS, DECOYS, LIARS_SHARE, LabelledSet, imdb_sample, read_set
from sentiment.learning.trust import TrustPolicy
from sentiment.models.linear import REPLAYS, SentimentModel
from sentiment.storage.log import Evidence
from sentiment.text.vectorizer import PKL_DIR
from train.data import iter_archive

SCENARIOS = ("honest", "wrong-only", "liar", "30%-lies", "liar-spread", "liar-dilute")
OFF = 10**9  # a count no client reaches: the rule it bounds never applies
NO_VERDICT_RULES = {"verdicts_vouch": 1.0, "verdicts_distrust_min": OFF}


def gate(confident: float) -> TrustPolicy:
    """Only "hold every contradiction of a prediction this confident": no record, no pool."""
    return TrustPolicy(confident=confident, established=OFF, distrust_min=OFF,
                       newcomer_min=OFF, **NO_VERDICT_RULES)


VARIANTS: dict[str, tuple[TrustPolicy | None, tuple[int, ...]]] = {
    "learn everything (before)": (None, ()),
    "hold contradictions of predictions >= 0.9": (gate(0.9), ()),
    "... >= 0.8": (gate(0.8), ()),
    "... >= 0.7": (gate(0.7), ()),
    "per-client record (>= 0.8)": (TrustPolicy(newcomer_min=OFF, **NO_VERDICT_RULES), ()),
    "+ the newcomers' pool": (TrustPolicy(**NO_VERDICT_RULES), ()),
    "+ replays at 20 and 60": (TrustPolicy(**NO_VERDICT_RULES), REPLAYS),
    "+ the share of verdicts (served)": (TrustPolicy(), REPLAYS),
    "tighter share of verdicts (0.35 / 0.4 from 5)": (
        TrustPolicy(verdicts_vouch=0.35, verdicts_distrust=0.4, verdicts_distrust_min=5),
        REPLAYS),
}


@dataclass
class Features:
    stream: tuple[object, np.ndarray]
    score: tuple[object, np.ndarray]


def featurize(model: SentimentModel, data: LabelledSet) -> Features:
    def part(rows: list[tuple[str, int]]) -> tuple[object, np.ndarray]:
        return model.transform([t for t, _ in rows]), np.array([y for _, y in rows])
    return Features(part(data.stream), part(data.score))


@dataclass
class Client:
    confident: list[float]  # probability of each of its predictions
    judged: list[tuple[float, bool]]  # (probability, said correct) of each verdict


def play(base: SentimentModel, data: Features, imdb: tuple[object, np.ndarray],
         decoys: np.ndarray, scenario: str, policy: TrustPolicy | None,
         replays: tuple[int, ...], seed: int = 1) -> dict[str, float]:
    """One scenario: (verdicts sent, learned, points gained on the set and on IMDb)."""
    model = base.clone()
    X, truth = data.stream
    rng = random.Random(seed)
    clients: dict[str, Client] = {}
    newcomers: deque[bool] = deque(maxlen=(policy or TrustPolicy()).newcomer_window)
    learned: list[tuple[int, int]] = []
    sent = 0
    confident = (policy or TrustPolicy()).confident
    for i in range(X.shape[0]):
        name = f"c{i}" if scenario == "liar-spread" else f"c{i % CLIENTS}"
        client = clients.setdefault(name, Client([], []))
        if scenario == "liar-dilute":
            client.confident += [float(decoys[rng.randrange(len(decoys))])
                                 for _ in range(DECOYS)]
        [p] = model.predict_features(X[i])
        predicted = int(p.positive >= 0.5)
        right = predicted == truth[i]
        seen = sum(q >= confident for q in client.confident)
        client.confident.append(p.probability)
        if scenario == "wrong-only" and right:
            continue
        honest = scenario in ("honest", "wrong-only") or (
            scenario == "30%-lies" and rng.random() >= LIARS_SHARE)
        said_correct = right if honest else not right
        sent += 1
        accept, new = True, False
        if policy is not None:
            evidence = Evidence(p.probability, said_correct,
                                min(seen, policy.confident_enough(
                                    sum(not c and q >= confident for q, c in client.judged))),
                                len(client.judged),
                                sum(not c and q >= confident for q, c in client.judged),
                                tuple(newcomers))
            judgement = policy.judge(evidence)
            accept, new = judgement.accept, judgement.new_client
        client.judged.append((p.probability, said_correct))
        if new:
            newcomers.append(not said_correct and p.probability >= confident)
        if accept:
            learned.append((i, predicted if said_correct else 1 - predicted))
            at = len(learned) - 1
            rows = [learned[at]] + [learned[at - back] for back in replays if at - back >= 0]
            model.learn_features(X[[r for r, _ in rows]], np.array([label for _, label in rows]))
    return {"sent": sent, "learned": len(learned),
            "set": (model.accuracy(*data.score) - base.accuracy(*data.score)) * 100,
            "imdb": (model.accuracy(*imdb) - base.accuracy(*imdb)) * 100}


def snippets(archive: Path, imdb: list[tuple[str, int]], n: int = 3_000) -> LabelledSet:
    """Official test reviews cut to 200 characters, none of the scored IMDb sample."""
    scored = {text for text, _ in imdb}
    rows = [(r.review[:200], r.sentiment) for r in iter_archive(archive)
            if r.split == "test" and r.review not in scored]
    random.Random(5).shuffle(rows)
    return LabelledSet("imdb-snippets", rows[:n], rows[n:2 * n], 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_offline",
                                     description=__doc__.splitlines()[0])
    add_sentence_sets_argument(parser)
    add_archive_argument(parser)
    parser.add_argument("--snippets", action="store_true",
                        help="also 3,000 official test reviews cut to 200 characters")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args(argv)
    archive = archive_or_none(args.archive)
    if archive is None:
        return 2
    paths = args.data or sorted(SENTENCES.glob("*_labelled.txt"))
    print(versions_line(), flush=True)
    imdb_rows = imdb_sample(archive)
    sets = [read_set(path) for path in paths]
    if args.snippets:
        sets.append(snippets(archive, imdb_rows))
    base = SentimentModel.load(PKL_DIR)
    imdb = (base.transform([t for t, _ in imdb_rows]), np.array([y for _, y in imdb_rows]))
    decoys = np.array([p.probability for p in base.predict_features(imdb[0])])
    features = {s.name: featurize(base, s) for s in sets}
    print("| variant | set | " + " | ".join(args.scenarios) + " |")
    print("|---|---|" + "---|" * len(args.scenarios))
    for variant in args.variants:
        policy, replays = VARIANTS[variant]
        for name, data in features.items():
            cells = []
            for scenario in args.scenarios:
                r = play(base, data, imdb, decoys, scenario, policy, replays)
                cells.append(f"{r['set']:+.1f} (IMDb {r['imdb']:+.2f}; "
                             f"{r['learned']}/{r['sent']})")
            print(f"| {variant} | {name} | " + " | ".join(cells) + " |", flush=True)
    print("\neach cell: points gained on the set's scored half (and on 5,000 IMDb test "
          "reviews); verdicts learned / sent", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
