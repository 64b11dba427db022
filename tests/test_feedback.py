"""The feedback log opened by several processes at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from feedback import FeedbackLog

OPENERS = 6
ROUNDS = 40


def open_log(path: Path, barrier) -> None:
    barrier.wait()
    FeedbackLog(path).close()


def test_processes_opening_a_new_database_together_all_succeed(tmp_path: Path) -> None:
    # Pre-forked workers start together on a fresh instance folder: each one
    # switches the new file to WAL, and SQLite may refuse the loser at once
    # rather than wait. Before the open was retried, ~3% of openers here died.
    fork = multiprocessing.get_context("fork")
    failed = 0
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / "reviews.sqlite"
        barrier = fork.Barrier(OPENERS)
        openers = [fork.Process(target=open_log, args=(path, barrier)) for _ in range(OPENERS)]
        for p in openers:
            p.start()
        for p in openers:
            p.join(60)
        failed += sum(p.exitcode != 0 for p in openers)
    assert failed == 0, f"{failed} of {OPENERS * ROUNDS} openers failed"
