"""The SQLite log of predictions and verdicts: the embedded default backend.

It meets :class:`sentiment.storage.log.FeedbackLog`.

The feedback table is an ordered, append-only log: the served model is a
deterministic function of (base model, the accepted rows in id order). So a
verdict is committed here before anyone is thanked for it, and the learner
only ever reads rows "after id N" in id order. SQLite serialises writers, so
ids are handed out in commit order and no reader can see row N+1 before row N.

Rows are never deleted. A quarantined verdict keeps its row (status and
reason change); releasing it appends a fresh copy at the end of the log, so
the model stays a function of the log in id order.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sentiment.locks import HostLock
from sentiment.storage.log import (
    ClientRecord,
    DayCounts,
    DuplicateVerdict,
    Evidence,
    FeedbackError,
    Judge,
    StoredPrediction,
    UnknownPrediction,
    Verdict,
    new_token,
    now,
)

# How long a connection waits for another process's write lock.
BUSY_TIMEOUT = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    review TEXT NOT NULL,
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    probability REAL NOT NULL,
    model_version TEXT NOT NULL,
    client TEXT,
    created TEXT NOT NULL,
    features BLOB,  -- the review's feature columns (vectorizer.encode_rows), or NULL
    token TEXT,  -- what the client that got the prediction votes with (see new_token)
    view_token TEXT,  -- its permalink's: shows it to anyone, votes for nobody
    browser TEXT  -- the asking browser's random id: its permalink offers it the buttons
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id INTEGER NOT NULL REFERENCES predictions(id),
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    status TEXT NOT NULL DEFAULT 'accepted'
        CHECK (status IN ('accepted', 'quarantined', 'released')),
    reason TEXT,
    released_from INTEGER REFERENCES feedback(id),
    client TEXT,
    created TEXT NOT NULL,
    -- An earlier accepted verdict of the same client on the same text: this
    -- one is kept but not learned, so that repeating a verdict adds nothing.
    repeat_of INTEGER REFERENCES feedback(id),
    text_key BLOB,  -- review_key() of the prediction's review: finds repeats by index
    -- The client had too little record when it arrived: the pool of such
    -- clients' verdicts judged it (see sentiment.learning.trust).
    new_client INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0  -- quarantined for good by an operator
);
-- One verdict per prediction; a released copy re-uses its prediction.
CREATE UNIQUE INDEX IF NOT EXISTS one_verdict_per_prediction
    ON feedback(prediction_id) WHERE released_from IS NULL;
CREATE INDEX IF NOT EXISTS feedback_status ON feedback(status, id);
-- Indexes on columns an earlier release's log lacks: made by _upgrade.
-- Bumped whenever accepted rows stop being accepted, so every process
-- following the log knows to rebuild its model from a version.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
"""


def review_key(review: str) -> bytes:
    """A review's text, hashed: what tells one client's verdicts on the same text apart."""
    return hashlib.blake2b(review.encode("utf-8"), digest_size=16).digest()


_VERDICT_SELECT = """
    SELECT f.id, f.prediction_id, f.correct, f.label, p.review, f.status, f.reason,
           f.released_from, f.created, p.features, f.repeat_of, f.client, f.rejected
    FROM feedback f JOIN predictions p ON p.id = f.prediction_id
"""


def _verdict(row: tuple[Any, ...]) -> Verdict:
    (id_, prediction_id, correct, label, review, status, reason, released_from, created,
     features, repeat_of, client, rejected) = row
    return Verdict(id_, prediction_id, bool(correct), label, review, status, reason,
                   released_from, created, features, repeat_of, client, bool(rejected))


def _open_wal(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode, even while other processes open the same new file.

    Switching a database to WAL needs its exclusive lock, and when two
    connections race for it SQLite may answer "database is locked" at once
    instead of calling the busy handler (it would deadlock otherwise). This
    happens when pre-forked workers start together on a fresh instance folder,
    so the switch is retried here for as long as the busy timeout allows.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.001
    while True:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.1)


class SQLiteFeedbackLog:
    """The log in an SQLite file, thread-safe: one connection per thread, WAL mode."""

    def __init__(self, path: Path, durable: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A verdict is fsynced before it is acknowledged (FULL), so it survives
        # power loss. Predictions are written with NORMAL: in WAL mode that
        # still survives the process being killed, and losing one to a power
        # cut only means its verdict would be refused, so it is not worth an
        # fsync on every prediction.
        self._verdict_sync = "FULL" if durable else "NORMAL"
        self._local = threading.local()
        # Writers queue on this lock before SQLite's own: SQLite polls its lock,
        # and under concurrent load its busy handler's sleeps (1, 2, 5 ... 100
        # ms) made the slowest requests 100 ms slower. SQLite still arbitrates
        # against anything that skips this lock (the ``sqlite3`` shell, say).
        self._writer = HostLock(self.path.with_name(self.path.name + "-writer.lock"))
        try:
            self._connect().executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
            self._upgrade()
        except sqlite3.Error as exc:  # SQLite's messages do not name the file
            raise type(exc)(f"{exc}: {self.path}") from exc

    def _upgrade(self) -> None:
        """Bring a log written by an earlier release up to the current schema."""
        with self._transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
            if "features" not in columns:
                db.execute("ALTER TABLE predictions ADD COLUMN features BLOB")
            if "token" not in columns:  # earlier predictions keep none: nobody can vote on them
                db.execute("ALTER TABLE predictions ADD COLUMN token TEXT")
            if "view_token" not in columns:  # earlier predictions keep none: no permalink
                db.execute("ALTER TABLE predictions ADD COLUMN view_token TEXT")
            if "browser" not in columns:
                db.execute("ALTER TABLE predictions ADD COLUMN browser TEXT")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS prediction_token"
                       " ON predictions(token) WHERE token IS NOT NULL")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS prediction_view_token"
                       " ON predictions(view_token) WHERE view_token IS NOT NULL")
            columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
            if "repeat_of" not in columns:
                db.execute("ALTER TABLE feedback ADD COLUMN repeat_of INTEGER"
                           " REFERENCES feedback(id)")
            if "text_key" not in columns:
                db.execute("ALTER TABLE feedback ADD COLUMN text_key BLOB")
                db.create_function("review_key", 1, review_key, deterministic=True)
                db.execute("UPDATE feedback SET text_key = (SELECT review_key(review)"
                           " FROM predictions p WHERE p.id = feedback.prediction_id)")
            db.execute("CREATE INDEX IF NOT EXISTS feedback_client_text"
                       " ON feedback(client, text_key, status)")
            if "new_client" not in columns:
                db.execute("ALTER TABLE feedback ADD COLUMN new_client INTEGER NOT NULL"
                           " DEFAULT 0")
            if "rejected" not in columns:
                db.execute("ALTER TABLE feedback ADD COLUMN rejected INTEGER NOT NULL"
                           " DEFAULT 0")
            # What a Judge's evidence is counted from (see _evidence).
            db.execute("CREATE INDEX IF NOT EXISTS feedback_newcomers"
                       " ON feedback(new_client, id)")
            db.execute("CREATE INDEX IF NOT EXISTS prediction_client"
                       " ON predictions(client, probability, id)")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = _open_wal(self.path)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        db.execute(f"PRAGMA synchronous={self._verdict_sync if durable else 'NORMAL'}")
        with self._writer:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A write transaction, also used as a lock shared by every process.

        :meth:`quarantine` runs inside one, so that deciding what to quarantine
        and doing it are one step for every process following the log.
        """
        with self._transaction(durable=True):
            yield

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- predictions ------------------------------------------------------
    def add_predictions(
        self,
        rows: Sequence[tuple[str, int, float, bytes | None]],
        model_version: str,
        client: str | None = None,
        browser: str | None = None,
    ) -> list[tuple[int, str]]:
        """Store (review, label, probability, features) rows; their (id, token) in order."""
        created = now()
        with self._transaction() as db:
            stored = []
            for review, label, probability, features in rows:
                token = new_token()
                cur = db.execute(
                    "INSERT INTO predictions (review, label, probability, model_version, client,"
                    " created, features, token, view_token, browser)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (review, label, probability, model_version, client, created, features,
                     token, new_token(), browser),
                )
                # lastrowid is None only before a connection's first INSERT; this one just ran.
                assert cur.lastrowid is not None
                stored.append((cur.lastrowid, token))
        return stored

    def prediction_id(self, token: str) -> int | None:
        row = self._connect().execute(
            "SELECT id FROM predictions WHERE token = ?", (token,)).fetchone()
        return int(row[0]) if row else None

    _PREDICTION_SELECT = ("SELECT id, review, label, probability, model_version, created,"
                          " token, view_token, browser FROM predictions")

    def prediction(self, prediction_id: int) -> StoredPrediction | None:
        row = self._connect().execute(f"{self._PREDICTION_SELECT} WHERE id = ?",
                                      (prediction_id,)).fetchone()
        return StoredPrediction(*row) if row else None

    def view_token_for(self, token: str) -> str | None:
        row = self._connect().execute(
            "SELECT view_token FROM predictions WHERE token = ?", (token,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def prediction_to_view(self, view_token: str) -> StoredPrediction | None:
        row = self._connect().execute(f"{self._PREDICTION_SELECT} WHERE view_token = ?",
                                      (view_token,)).fetchone()
        return StoredPrediction(*row) if row else None

    def verdict_on(self, prediction_id: int) -> Verdict | None:
        row = self._connect().execute(
            f"{_VERDICT_SELECT} WHERE f.prediction_id = ? AND f.released_from IS NULL",
            (prediction_id,)).fetchone()
        return _verdict(row) if row else None

    # -- verdicts ---------------------------------------------------------
    def add_verdict(self, prediction_id: int, correct: bool, client: str | None = None,
                    judge: Judge | None = None) -> Verdict:
        """Commit a verdict; the label learned is the prediction's, or its opposite.

        A verdict of a client that already has an accepted verdict on the same
        text is stored as a repeat of it, and not learned: five verdicts from
        one client on five predictions of one review weigh as one. Any other
        is accepted, or held (quarantined with the reason) if ``judge`` says so,
        judged on what the log holds when it commits.
        """
        with self._transaction(durable=True) as db:
            row = db.execute(
                "SELECT label, review, probability FROM predictions WHERE id = ?",
                (prediction_id,)).fetchone()
            if row is None:
                raise UnknownPrediction(f"no prediction with id {prediction_id}")
            label = row[0] if correct else 1 - row[0]
            key = review_key(row[1])
            earlier = db.execute(
                "SELECT id FROM feedback WHERE client IS ? AND text_key = ?"
                " AND status = 'accepted' AND repeat_of IS NULL ORDER BY id LIMIT 1",
                (client, key),
            ).fetchone() if client is not None else None
            judgement = None
            if judge is not None and earlier is None:
                judgement = judge.judge(
                    self._evidence(db, judge, prediction_id, row[2], correct, client))
            held = judgement is not None and not judgement.accept
            try:
                cur = db.execute(
                    "INSERT INTO feedback (prediction_id, correct, label, client, created,"
                    " repeat_of, text_key, status, reason, new_client)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (prediction_id, int(correct), label, client, now(),
                     earlier[0] if earlier else None, key,
                     "quarantined" if held else "accepted",
                     judgement.reason if judgement is not None and held else None,
                     int(judgement is not None and judgement.new_client)),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateVerdict("this prediction already has a verdict") from exc
            verdict_id = cur.lastrowid
        # lastrowid is None only before a connection's first INSERT; this one just ran.
        assert verdict_id is not None
        return self.verdict(verdict_id)

    @staticmethod
    def _evidence(db: sqlite3.Connection, judge: Judge, prediction_id: int,
                  probability: float, correct: bool, client: str | None) -> Evidence:
        """What ``judge`` weighs, counted inside the verdict's own write transaction."""
        confident = judge.confident
        if client is None:
            client_confident = client_verdicts = client_contradicted = 0
        else:
            client_verdicts, client_contradicted = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(f.correct = 0 AND p.probability >= ?), 0)"
                " FROM feedback f JOIN predictions p ON p.id = f.prediction_id"
                " WHERE f.client = ? AND f.released_from IS NULL",
                (confident, client)).fetchone()
            client_confident = db.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM predictions WHERE client = ?"
                " AND probability >= ? AND id < ? LIMIT ?)",
                (client, confident, prediction_id,
                 judge.confident_enough(int(client_contradicted)))).fetchone()[0]
        newest = db.execute(
            "SELECT f.correct = 0 AND p.probability >= ? FROM feedback f"
            " JOIN predictions p ON p.id = f.prediction_id"
            " WHERE f.new_client = 1 AND f.released_from IS NULL"
            " ORDER BY f.id DESC LIMIT ?", (confident, judge.newcomer_window)).fetchall()
        return Evidence(probability, correct, int(client_confident), int(client_verdicts),
                        int(client_contradicted),
                        tuple(bool(r[0]) for r in reversed(newest)))

    def verdict(self, verdict_id: int) -> Verdict:
        row = self._connect().execute(
            _VERDICT_SELECT + " WHERE f.id = ?", (verdict_id,)
        ).fetchone()
        if row is None:
            raise UnknownPrediction(f"no verdict with id {verdict_id}")
        return _verdict(row)

    def accepted_after(self, after_id: int, upto_id: int | None = None) -> list[Verdict]:
        """Accepted verdicts with ``after_id < id <= upto_id``, in id order."""
        sql = _VERDICT_SELECT + (" WHERE f.id > ? AND f.status = 'accepted'"
                                 " AND f.repeat_of IS NULL")
        args: tuple[int, ...] = (after_id,)
        if upto_id is not None:
            sql += " AND f.id <= ?"
            args += (upto_id,)
        rows = self._connect().execute(sql + " ORDER BY f.id", args).fetchall()
        return [_verdict(r) for r in rows]

    def accepted_before(self, before_id: int, n: int) -> list[Verdict]:
        """The last ``n`` accepted verdicts with ``id < before_id``, in id order."""
        if n <= 0:
            return []
        rows = self._connect().execute(
            _VERDICT_SELECT + " WHERE f.id < ? AND f.status = 'accepted' AND f.repeat_of IS NULL"
            " ORDER BY f.id DESC LIMIT ?", (before_id, n)).fetchall()
        return [_verdict(r) for r in reversed(rows)]

    def verdicts(self, status: str | None = None, client: str | None = None) -> list[Verdict]:
        sql = _VERDICT_SELECT + " WHERE 1"
        args: tuple[str, ...] = ()
        if status:
            sql += " AND f.status = ?"
            args += (status,)
        if client is not None:
            sql += " AND f.client = ?"
            args += (client,)
        return [_verdict(r) for r in self._connect().execute(sql + " ORDER BY f.id", args)]

    def clients(self, confident: float, limit: int = 20) -> list[ClientRecord]:
        """The clients with the most verdicts (first verdicts only), with their records;
        ``confident``: the probability from which a prediction counts as confident."""
        rows = self._connect().execute(
            "WITH judged AS (SELECT f.client, COUNT(*) AS verdicts,"
            " SUM(f.correct = 0) AS incorrect,"
            " SUM(f.correct = 0 AND p.probability >= :confident) AS contradicted,"
            " SUM(f.status = 'quarantined') AS held"
            " FROM feedback f JOIN predictions p ON p.id = f.prediction_id"
            " WHERE f.released_from IS NULL AND f.client IS NOT NULL"
            " GROUP BY f.client ORDER BY verdicts DESC, f.client LIMIT :limit)"
            " SELECT j.client, COUNT(p.id), j.verdicts, j.incorrect,"
            " COALESCE(SUM(p.probability >= :confident), 0), j.contradicted, j.held"
            " FROM judged j LEFT JOIN predictions p ON p.client = j.client"
            " GROUP BY j.client ORDER BY j.verdicts DESC, j.client",
            {"confident": confident, "limit": limit}).fetchall()
        return [ClientRecord(str(r[0]), *(int(v) for v in r[1:])) for r in rows]

    def head(self) -> tuple[int, int]:
        """(highest verdict id, generation): a cheap "has anything changed?" probe."""
        row = self._connect().execute(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM feedback),"
            " (SELECT value FROM meta WHERE key = 'generation')"
        ).fetchone()
        return int(row[0]), int(row[1])

    def counts(self) -> dict[str, int]:
        db = self._connect()
        out = {"predictions": db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]}
        for status, n in db.execute("SELECT status, COUNT(*) FROM feedback GROUP BY status"):
            out[status] = n
        return out

    def daily(self) -> list[DayCounts]:
        """Predictions and verdicts per UTC day, oldest first."""
        db = self._connect()
        days: dict[str, DayCounts] = {}
        for day, n in db.execute("SELECT substr(created, 1, 10), COUNT(*) FROM predictions"
                                 " GROUP BY 1"):
            days[day] = DayCounts(day, predictions=n)
        for day, n, incorrect, repeats in db.execute(
                "SELECT substr(created, 1, 10), COUNT(*), SUM(correct = 0),"
                " SUM(repeat_of IS NOT NULL) FROM feedback WHERE released_from IS NULL"
                " GROUP BY 1"):
            counts = days.setdefault(day, DayCounts(day))
            days[day] = DayCounts(day, counts.predictions, n, int(incorrect), int(repeats))
        return [days[day] for day in sorted(days)]

    def quarantine_reasons(self) -> list[tuple[str, int]]:
        """(reason, verdicts) of what is quarantined now, most verdicts first."""
        rows = self._connect().execute(
            "SELECT COALESCE(reason, ''), COUNT(*) FROM feedback WHERE status = 'quarantined'"
            " GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
        return [(str(reason), int(n)) for reason, n in rows]

    # -- quarantine (run inside ``exclusive()``) -----------------------------
    def quarantine(self, after_id: int, upto_id: int | None, reason: str) -> int:
        """Flag accepted verdicts in (after_id, upto_id] as quarantined; bump the generation.

        Only inside :meth:`exclusive` (this thread's connection is then in its
        write transaction).
        """
        db = self._connect()
        sql = "UPDATE feedback SET status = 'quarantined', reason = ? WHERE status = 'accepted'"
        sql += " AND id > ?"
        args: tuple[str | int, ...] = (reason, after_id)
        if upto_id is not None:
            sql += " AND id <= ?"
            args += (upto_id,)
        changed = db.execute(sql, args).rowcount
        if changed:
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        return changed

    def release(self, verdict_ids: Sequence[int]) -> list[int]:
        """Re-append quarantined verdicts at the end of the log; returns the new ids."""
        new_ids = []
        with self._transaction(durable=True) as db:
            for verdict_id in verdict_ids:
                row = db.execute(
                    "SELECT prediction_id, correct, label, status, client, text_key, rejected"
                    " FROM feedback WHERE id = ?", (verdict_id,),
                ).fetchone()
                if row is None:
                    raise UnknownPrediction(f"no verdict with id {verdict_id}")
                if row[3] != "quarantined":
                    raise FeedbackError(f"verdict {verdict_id} is {row[3]}, not quarantined")
                if row[6]:
                    raise FeedbackError(f"verdict {verdict_id} was rejected: it stays out")
                db.execute(
                    "UPDATE feedback SET status = 'released' WHERE id = ?", (verdict_id,)
                )
                cur = db.execute(
                    "INSERT INTO feedback (prediction_id, correct, label, released_from, client,"
                    " created, text_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (row[0], row[1], row[2], verdict_id, row[4], now(), row[5]),
                )
                # lastrowid is None only before a connection's first INSERT; this one just ran.
                assert cur.lastrowid is not None
                new_ids.append(cur.lastrowid)
        return new_ids

    def reject(self, verdict_ids: Sequence[int]) -> int:
        """Mark quarantined verdicts as rejected for good (never released); how many."""
        with self._transaction(durable=True) as db:
            for verdict_id in verdict_ids:
                row = db.execute("SELECT status FROM feedback WHERE id = ?",
                                 (verdict_id,)).fetchone()
                if row is None:
                    raise UnknownPrediction(f"no verdict with id {verdict_id}")
                if row[0] != "quarantined":
                    raise FeedbackError(f"verdict {verdict_id} is {row[0]}, not quarantined")
                db.execute("UPDATE feedback SET rejected = 1 WHERE id = ?", (verdict_id,))
        return len(verdict_ids)

    def integrity_check(self) -> str:
        return cast(str, self._connect().execute("PRAGMA integrity_check").fetchone()[0])
