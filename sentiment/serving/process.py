"""What a serving process sets up around the app: the factory's side effects live here.

The app factory changes nothing outside the app it returns (a test builds
dozens in one process). A process that serves requests needs more: glibc heap
settings, one BLAS thread, a frozen garbage collector, the background
checkpoint and log upkeep threads; and on the way out, a final checkpoint.
"""

from __future__ import annotations

import gc
import os

from flask import Flask
from threadpoolctl import threadpool_limits

from sentiment import memory
from sentiment.learning.learner import Learner


def usable_cores() -> int:
    """The CPU cores this process may run on: the default number of worker processes.

    One worker per core: a worker runs Python on one core at a time, so fewer
    leave cores idle under load, and more only add memory and verdicts to
    learn (every worker learns every verdict).
    """
    try:
        return len(os.sched_getaffinity(0))  # what a container or taskset allows
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pin_to_one_cpu(turn: int) -> None:
    """Run this process on one of the CPUs it may use, the ``turn``-th (modulo their count)."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[turn % len(cpus)]})


def prepare_process() -> None:
    """Once per server, before any thread starts and before forking (workers inherit it).

    * glibc heap settings (see :mod:`sentiment.memory`);
    * one BLAS thread: the app multiplies one review at a time, and BLAS
      threads only add hand-offs (they made each single-review update about
      8 times slower on 2 cores).
    """
    memory.configure()
    threadpool_limits(limits=1, user_api="blas")


def start_serving(app: Flask) -> None:
    """Once the app of a serving process is built, before it takes requests."""
    learner: Learner = app.extensions["learner"]
    if app.extensions["settings"].background_checkpoints:
        learner.start_background_checkpoints()
    learner.start_log_upkeep()  # SQLite's checkpoints of its write-ahead log
    learner.start_following()  # other hosts' verdicts, as they commit (PostgreSQL)
    memory.release_free_memory()  # what loading the model and replaying the log left
    # The ~130,000 objects that exist now (the libraries, the model) live as
    # long as the process. Left to the cyclic collector, each full collection
    # walks them all: a 60 ms pause for every request in flight. Frozen, the
    # collector skips them.
    gc.freeze()


def stop_serving(app: Flask) -> None:
    """The last thing a serving process does: stop the app's threads, checkpoint."""
    learner: Learner = app.extensions["learner"]
    learner.close()
