"""The ordered log of predictions and verdicts: what every storage backend offers.

The log is the truth: the served model is a deterministic function of (base
model, the accepted verdicts in id order). So a backend must hand out verdict
ids in commit order (no reader may see id N+1 before id N), commit a verdict
durably before it returns, and never delete a row. A quarantined verdict
keeps its row (status and reason change); releasing it appends a fresh copy at
the end of the log, so the model stays a function of the log in id order.

SQLite (:mod:`sentiment.storage.sqlite`) is the embedded default, for one
host; PostgreSQL (:mod:`sentiment.storage.postgres`) is one log for several
hosts. Both run the same queries (:mod:`sentiment.storage.sql`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

MAX_ID = 2**63 - 1  # the largest id either database holds: a larger one overflows


class FeedbackError(Exception):
    """A verdict that cannot be accepted; ``status`` is the HTTP status to answer."""

    status = 400


class UnknownPrediction(FeedbackError):  # noqa: N818 (public name)
    status = 404


class DuplicateVerdict(FeedbackError):  # noqa: N818 (public name)
    status = 409


class LogUnavailable(FeedbackError):  # noqa: N818 (public name)
    """The log's database cannot be reached now (down, restarting): try again soon.
    Nothing was half-stored: the transaction committed whole or not at all."""

    status = 503
    retry_after = 5  # seconds


@dataclass(frozen=True)
class StoredPrediction:
    id: int
    review: str
    label: int
    probability: float
    model_version: str
    created: str
    token: str | None = None  # votes: given only to whoever asked
    view_token: str | None = None  # shows: the result's permalink, for anyone it is shared with
    browser: str | None = None  # the asking browser's random id (its session's), if any


@dataclass(frozen=True)
class Verdict:
    id: int
    prediction_id: int
    correct: bool
    label: int
    review: str
    status: str
    reason: str | None
    released_from: int | None
    created: str
    features: bytes | None  # the review's stored feature columns (None: not stored)
    repeat_of: int | None = None  # kept, not learned: the same client's verdict on this text
    client: str | None = None
    rejected: bool = False  # held for good by an operator: never released


@dataclass(frozen=True)
class Evidence:
    """What the log knows of a verdict's client when the verdict arrives: what a
    :class:`Judge` weighs. "Confident" means the prediction's probability was at
    least :attr:`Judge.confident`; a contradiction is an "Incorrect" press."""

    probability: float  # of the label the model predicted, in [0.5, 1]
    correct: bool
    # The client's confident predictions before this one, counted up to
    # Judge.confident_enough(client_contradicted): past that, more change nothing.
    client_confident: int
    client_verdicts: int  # the client's earlier verdicts (first verdicts, not released copies)
    client_contradicted: int  # of them, confident contradictions
    # Of the newest verdicts of clients with little record (``new_client``),
    # oldest first: whether each contradicted a confident prediction.
    newcomers: tuple[bool, ...]


@dataclass(frozen=True)
class Judgement:
    accept: bool
    reason: str | None  # why it is held (None when accepted)
    new_client: bool  # the client had too little record: the newcomers' pool judged it


class Judge(Protocol):
    """Decides, as a verdict is committed, whether it is learned or held (quarantined).

    The decision is stored with the verdict, so it is made once, in the log's
    order, and every process and every replay follows it.
    """

    @property
    def confident(self) -> float:
        """A prediction this sure (or surer) is "confident"."""
        ...

    @property
    def newcomer_window(self) -> int:
        """How many of the newcomers' newest verdicts :class:`Evidence` holds."""
        ...

    def confident_enough(self, contradicted: int) -> int:
        """How many confident predictions of a client with ``contradicted`` confident
        contradictions are worth counting: any more give the same judgement (a client
        asking for thousands of predictions is judged at the cost of a few)."""
        ...

    def judge(self, evidence: Evidence) -> Judgement: ...


@dataclass(frozen=True)
class ClientRecord:
    """One client's part of the log, for operators (``flask feedback clients``)."""

    client: str
    predictions: int
    verdicts: int
    incorrect: int
    confident: int  # predictions the model was confident of
    contradicted: int  # verdicts that contradicted one of those
    held: int  # verdicts quarantined now (the trust's or the guard's)


@dataclass(frozen=True)
class DayCounts:
    """One UTC day of the log: what was asked and what users said of it."""

    day: str  # YYYY-MM-DD
    predictions: int = 0
    verdicts: int = 0  # first verdicts (a released copy is not a new verdict)
    incorrect: int = 0  # of them, "Incorrect" presses
    repeats: int = 0  # of them, repeats of the same client on the same text


class SharedLock(Protocol):
    """A lock every process that shares it respects (a ``flock``, a database lock)."""

    def acquire(self, blocking: bool = True) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> None: ...

    def __exit__(self, *exc: object) -> None: ...


class VersionFiles(Protocol):
    """Where model versions' files live (see :mod:`sentiment.learning.versions`): small
    named byte strings, each written whole or not at all, and the lock a checkpoint or
    a rollback holds."""

    @property
    def lock(self) -> SharedLock: ...

    def read(self, name: str) -> bytes:
        """Its bytes; FileNotFoundError if there is no such file."""
        ...

    def write(self, name: str, data: bytes) -> None: ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...

    def names(self, suffix: str) -> list[str]:
        """The names of the version files (``v...``) ending with ``suffix``."""
        ...


def new_token() -> str:
    """An unguessable random id (128 random bits): a browser's, a permalink's.

    A permalink may be shared, so its token tells nothing, not even when the
    prediction was made, and never lets its holder vote (that takes the
    prediction's own token, :func:`prediction_tokens`)."""
    return secrets.token_urlsafe(16)


# Hex digits of the milliseconds since 1970 that start a prediction's token:
# 11 of them last until the year 2527, and a fixed width sorts as the time does.
TIME_DIGITS = 11


def prediction_tokens(n: int) -> list[str]:
    """A token for each of ``n`` predictions made now: what a verdict on it names.

    128 random bits, so only whoever got the prediction can vote on it, where
    sequential ids let anyone vote on anyone's. They start with the time in
    milliseconds (hex, :data:`TIME_DIGITS`): tokens made later sort later, so
    the database's index on them grows at its end, where purely random tokens
    each landed on a leaf page of their own (a third of what storing a batch
    of predictions cost, docs/measurements.md). Only the asker sees the token,
    and knows when they asked. The random bytes come from one call per batch.
    """
    prefix = f"{time.time_ns() // 1_000_000:0{TIME_DIGITS}x}"
    random = secrets.token_bytes(16 * n)
    return [prefix + base64.urlsafe_b64encode(random[i:i + 16]).rstrip(b"=").decode()
            for i in range(0, 16 * n, 16)]


def review_key(review: str) -> bytes:
    """A review's text, hashed: what tells one client's verdicts on the same text apart."""
    return hashlib.blake2b(review.encode("utf-8"), digest_size=16).digest()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class FeedbackLog(Protocol):
    """What the learner, the web app and the operator commands use of a log."""

    def add_predictions(self, rows: Sequence[tuple[str, int, float, bytes | None]],
                        model_version: str, client: str | None = None,
                        browser: str | None = None) -> list[tuple[int, str]]:
        """Store (review, label, probability, features) rows; their (id, token), in order.
        ``browser``: the asking browser's id, which its permalinks offer the buttons to;
        only such predictions get a permalink (the API shows none)."""
        ...

    def prediction_id(self, token: str) -> int | None:
        """The prediction a token names (None: no such token)."""
        ...

    def prediction(self, prediction_id: int) -> StoredPrediction | None: ...

    def view_token_for(self, token: str) -> str | None:
        """The permalink token of the prediction a vote token names (None: none)."""
        ...

    def prediction_to_view(self, view_token: str) -> StoredPrediction | None:
        """The prediction a permalink's token names (None: no such token)."""
        ...

    def verdict_on(self, prediction_id: int) -> Verdict | None:
        """The verdict given on a prediction (None: none yet)."""
        ...

    def add_verdict(self, prediction_id: int, correct: bool,
                    client: str | None = None, judge: Judge | None = None) -> Verdict:
        """Commit a verdict durably; UnknownPrediction, DuplicateVerdict.

        ``judge``: decides in the same transaction whether it is accepted or held
        (None: accepted).
        """
        ...

    def verdict(self, verdict_id: int) -> Verdict: ...

    def accepted_after(self, after_id: int, upto_id: int | None = None) -> list[Verdict]:
        """Accepted verdicts with ``after_id < id <= upto_id``, in id order."""
        ...

    def accepted_before(self, before_id: int, n: int) -> list[Verdict]:
        """The last ``n`` accepted verdicts with ``id < before_id``, in id order (what the
        learner's replays reach back to, see :mod:`sentiment.learning.learner`)."""
        ...

    def verdicts(self, status: str | None = None, client: str | None = None) -> list[Verdict]:
        ...

    def clients(self, confident: float, limit: int = 20) -> list[ClientRecord]:
        """The clients with the most verdicts, with their records; ``confident``: the
        probability from which a prediction counts as confident."""
        ...

    def head(self) -> tuple[int, int]:
        """(highest verdict id, generation): a cheap "has anything changed?" probe."""
        ...

    def counts(self) -> dict[str, int]: ...

    def daily(self) -> list[DayCounts]:
        """Predictions and verdicts per UTC day, oldest first."""
        ...

    def quarantine_reasons(self) -> list[tuple[str, int]]:
        """(reason, verdicts) of what is quarantined now."""
        ...

    def exclusive(self) -> AbstractContextManager[None]:
        """A write transaction that is also a lock shared by every process."""
        ...

    def quarantine(self, after_id: int, upto_id: int | None, reason: str) -> int:
        """Inside :meth:`exclusive`: flag accepted verdicts in (after_id, upto_id]."""
        ...

    def release(self, verdict_ids: Sequence[int]) -> list[int]:
        """Re-append quarantined verdicts at the end of the log; returns the new ids."""
        ...

    def reject(self, verdict_ids: Sequence[int]) -> int:
        """Mark quarantined verdicts as rejected for good (never released); how many."""
        ...

    def integrity_check(self) -> str: ...

    @property
    def notifies(self) -> bool:
        """Whether :meth:`wait_for_change` wakes on other hosts' commits (else it only
        waits, and a follower polls)."""
        ...

    @property
    def over_network(self) -> bool:
        """Whether its statements travel to a database server: a request then spends
        much of its time waiting for answers, which other requests could use."""
        ...

    def version_files(self) -> VersionFiles | None:
        """Where model versions live when every host must share them (None: each
        host's own models folder is enough)."""
        ...

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a verdict, release or quarantine to commit
        anywhere; True if one did (a hint: the log itself is the truth)."""
        ...

    def hand_over_upkeep(self) -> Callable[[], object] | None:
        """The log's housekeeping, for a serving process's background thread to call
        every few tenths of a second from now on, so that no request does it (None:
        this log has none to hand over)."""
        ...

    def close(self) -> None: ...
