"""The feedback log opened by several processes at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

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


def test_a_writer_holds_a_lock_other_processes_wait_on(tmp_path: Path) -> None:
    # Writers of other processes queue on an flock of this file (woken when it
    # is released) instead of polling SQLite's lock from its busy handler.
    import fcntl
    import os

    path = tmp_path / "reviews.sqlite"
    log = FeedbackLog(path)
    other = os.open(path.with_name("reviews.sqlite-writer.lock"), os.O_RDWR)
    try:
        with log.exclusive(), pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
