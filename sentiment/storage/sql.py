"""The log's queries, once, for every SQL backend: what SQLite and PostgreSQL both speak.

The queries are written in the subset of SQL both databases accept (``?``
placeholders, which the PostgreSQL backend turns into ``%s``; ``COUNT(*)
FILTER (WHERE ...)`` rather than sums of booleans; ``RETURNING id``), so that
the two backends cannot drift apart in what they mean: a backend only says
how to connect, how to open a transaction and how to keep verdict ids in
commit order (:class:`SQLFeedbackLog`'s abstract methods).

The feedback table is an ordered, append-only log: the served model is a
deterministic function of (base model, the accepted rows in id order). So a
verdict is committed before anyone is thanked for it, and the learner only
ever reads rows "after id N" in id order. Every transaction that writes to
the feedback table is *ordered*: the backend serialises them (SQLite's one
writer, PostgreSQL's advisory lock), and the row's id is drawn inside that
transaction, so ids commit in increasing order and no reader can see row N+1
before row N.

Rows are never deleted. A quarantined verdict keeps its row (status and
reason change); releasing it appends a fresh copy at the end of the log, so
the model stays a function of the log in id order.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

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
    VersionFiles,
    new_token,
    now,
    prediction_tokens,
    review_key,
)
from sentiment.storage.migrations import Migration, MigrationNeeded, pending


class Cursor(Protocol):
    """What the log reads back from a statement (sqlite3's and psycopg's cursors)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    """Runs statements with ``?`` placeholders inside a transaction."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


_VERDICT_SELECT = """
    SELECT f.id, f.prediction_id, f.correct, f.label, p.review, f.status, f.reason,
           f.released_from, f.created, p.features, f.repeat_of, f.client, f.rejected
    FROM feedback f JOIN predictions p ON p.id = f.prediction_id
"""

_PREDICTION_SELECT = ("SELECT id, review, label, probability, model_version, created,"
                      " token, view_token, browser FROM predictions")


def _verdict(row: Sequence[Any]) -> Verdict:
    (id_, prediction_id, correct, label, review, status, reason, released_from, created,
     features, repeat_of, client, rejected) = row
    return Verdict(id_, prediction_id, bool(correct), label, review, status, reason,
                   released_from, created, None if features is None else bytes(features),
                   repeat_of, client, bool(rejected))


def _prediction(row: Sequence[Any]) -> StoredPrediction:
    return StoredPrediction(*row)


# Tokens looked up per query after a batch of predictions (SQLite's default cap
# on a statement's parameters is 32,766; PostgreSQL's 65,535).
TOKENS_PER_QUERY = 500


class SQLFeedbackLog(ABC):
    """The log over one SQL database; subclasses connect and keep ids in commit order.

    It meets :class:`sentiment.storage.log.FeedbackLog`. Thread-safe: the
    backend gives each thread its own connection (or one from a pool) for
    each read and transaction.
    """

    #: Which of :class:`Migration`'s statements this backend runs.
    dialect: str
    #: What the database raises when a unique index refuses a row.
    integrity_errors: tuple[type[Exception], ...] = ()
    #: What querying a table the database does not have raises.
    missing_table_errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._local = threading.local()  # the transaction under way in this thread, if any

    # -- what a backend provides ---------------------------------------------
    @abstractmethod
    def _begin(self, durable: bool, ordered: bool) -> AbstractContextManager[Executor]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        ``durable``: on disk before it returns (verdicts; a prediction may be
        lost to a power cut, its verdict then refused). ``ordered``: it writes
        the feedback table, so it waits for every other ordered transaction
        (ids in commit order, see the module's docstring).
        """

    @abstractmethod
    def _read_alone(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """The rows of one query run on its own (no transaction of this thread is open)."""

    @abstractmethod
    def integrity_check(self) -> str:
        """"ok", or what the database finds wrong with itself."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def where(self) -> str:
        """The database, for messages (a path, or a URL without its password)."""

    #: Whether :meth:`wait_for_change` hears other processes' commits.
    notifies = False
    #: Whether statements travel to a database server (see FeedbackLog.over_network).
    over_network = False

    def version_files(self) -> VersionFiles | None:
        """None: one host's processes share the models folder beside the log."""
        return None

    def wait_for_change(self, timeout: float) -> bool:
        """Wait ``timeout`` seconds; a backend that can be told of commits returns early."""
        time.sleep(timeout)
        return False

    def hand_over_upkeep(self) -> Callable[[], object] | None:
        """None: the database server does its own housekeeping (SQLite overrides this)."""
        return None

    # -- transactions ----------------------------------------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query; inside this thread's transaction if one is open (it
        sees what the transaction wrote, and takes no second connection)."""
        tx: Executor | None = getattr(self._local, "tx", None)
        if tx is not None:
            return tx.execute(sql, args).fetchall()
        return self._read_alone(sql, args)

    @contextmanager
    def _transaction(self, durable: bool = False,
                     ordered: bool = False) -> Iterator[Executor]:
        outer = getattr(self._local, "tx", None)  # a version file written inside exclusive()
        with self._begin(durable, ordered) as tx:
            self._local.tx = tx
            try:
                yield tx
            finally:
                self._local.tx = outer

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A write transaction, also a lock shared by every process (and host).

        :meth:`quarantine` runs inside one, so that deciding what to quarantine
        and doing it are one step for every process following the log.
        """
        with self._transaction(durable=True, ordered=True):
            yield

    # -- schema ----------------------------------------------------------------
    def migrate(self, migrations: Sequence[Migration], on_start: bool) -> list[Migration]:
        """Apply the migrations this database has not had yet, in one ordered transaction.

        ``on_start``: the app is starting; a migration not marked safe to run
        then (a long rewrite of every row, say) is refused with
        :class:`MigrationNeeded`, which names the command that runs it.
        Returns the migrations applied.
        """
        with self._transaction(durable=True, ordered=True) as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY"
                       " KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
            done = {int(r[0]) for r in tx.execute(
                "SELECT version FROM schema_migrations").fetchall()}
            todo = pending(migrations, done)
            refused = [m for m in todo if on_start and not m.on_start]
            if refused:
                raise MigrationNeeded(refused, self.where)
            for migration in todo:
                migration.apply(self.dialect, tx)
                tx.execute("INSERT INTO schema_migrations (version, name, applied)"
                           " VALUES (?, ?, ?)", (migration.version, migration.name, now()))
        return todo

    def schema_versions(self) -> list[tuple[int, str, str]]:
        """(version, name, when applied) of every migration this database has had: none
        for a log older than migrations (no ``schema_migrations`` table). Any other
        error (the database out of reach, say) is raised, not taken for "none"."""
        try:
            rows = self._read(
                "SELECT version, name, applied FROM schema_migrations ORDER BY version")
        except self.missing_table_errors as exc:
            if "schema_migrations" not in str(exc):
                raise
            return []
        return [(int(v), str(n), str(a)) for v, n, a in rows]

    # -- predictions ----------------------------------------------------------
    def add_predictions(
        self,
        rows: Sequence[tuple[str, int, float, bytes | None]],
        model_version: str,
        client: str | None = None,
        browser: str | None = None,
    ) -> list[tuple[int, str]]:
        """Store (review, label, probability, features) rows; their (id, token) in order.

        Predictions asked by a ``browser`` (the page's) get a permalink token;
        the API's show no permalink, so they get none.
        """
        created = now()
        tokens = prediction_tokens(len(rows))
        ids: dict[str, int] = {}
        with self._transaction() as tx:
            # One statement for the batch, then the ids by token: a round trip
            # per row (INSERT ... RETURNING) took a third of a batch request.
            tx.executemany(
                "INSERT INTO predictions (review, label, probability, model_version, client,"
                " created, features, token, view_token, browser)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(review, label, probability, model_version, client, created, features,
                  token, None if browser is None else new_token(), browser)
                 for (review, label, probability, features), token in zip(rows, tokens,
                                                                          strict=True)])
            for start in range(0, len(tokens), TOKENS_PER_QUERY):
                part = tokens[start:start + TOKENS_PER_QUERY]
                ids.update((str(token), int(id_)) for id_, token in tx.execute(
                    "SELECT id, token FROM predictions WHERE token IN"
                    f" ({', '.join('?' * len(part))})", part).fetchall())
        return [(ids[token], token) for token in tokens]

    def prediction_id(self, token: str) -> int | None:
        rows = self._read("SELECT id FROM predictions WHERE token = ?", (token,))
        return int(rows[0][0]) if rows else None

    def prediction(self, prediction_id: int) -> StoredPrediction | None:
        rows = self._read(f"{_PREDICTION_SELECT} WHERE id = ?", (prediction_id,))
        return _prediction(rows[0]) if rows else None

    def view_token_for(self, token: str) -> str | None:
        rows = self._read("SELECT view_token FROM predictions WHERE token = ?", (token,))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def prediction_to_view(self, view_token: str) -> StoredPrediction | None:
        rows = self._read(f"{_PREDICTION_SELECT} WHERE view_token = ?", (view_token,))
        return _prediction(rows[0]) if rows else None

    def verdict_on(self, prediction_id: int) -> Verdict | None:
        rows = self._read(
            f"{_VERDICT_SELECT} WHERE f.prediction_id = ? AND f.released_from IS NULL",
            (prediction_id,))
        return _verdict(rows[0]) if rows else None

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
        try:
            with self._transaction(durable=True, ordered=True) as tx:
                row = tx.execute(
                    "SELECT label, review, probability FROM predictions WHERE id = ?",
                    (prediction_id,)).fetchone()
                if row is None:
                    raise UnknownPrediction(f"no prediction with id {prediction_id}")
                label = row[0] if correct else 1 - row[0]
                key = review_key(row[1])
                earlier = tx.execute(
                    "SELECT id FROM feedback WHERE client = ? AND text_key = ?"
                    " AND status = 'accepted' AND repeat_of IS NULL ORDER BY id LIMIT 1",
                    (client, key),
                ).fetchone() if client is not None else None
                judgement = None
                if judge is not None and earlier is None:
                    judgement = judge.judge(
                        _evidence(tx, judge, prediction_id, row[2], correct, client))
                held = judgement is not None and not judgement.accept
                verdict_id = tx.execute(
                    "INSERT INTO feedback (prediction_id, correct, label, client, created,"
                    " repeat_of, text_key, status, reason, new_client)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (prediction_id, int(correct), label, client, now(),
                     earlier[0] if earlier else None, key,
                     "quarantined" if held else "accepted",
                     judgement.reason if judgement is not None and held else None,
                     int(judgement is not None and judgement.new_client)),
                ).fetchall()[0][0]
                # Read back inside the transaction: once it commits, nothing may touch
                # the database again, or an outage right then would answer "not
                # stored" about a stored verdict.
                stored = _verdict(tx.execute(_VERDICT_SELECT + " WHERE f.id = ?",
                                             (verdict_id,)).fetchall()[0])
        except self.integrity_errors as exc:
            raise DuplicateVerdict("this prediction already has a verdict") from exc
        return stored

    def verdict(self, verdict_id: int) -> Verdict:
        rows = self._read(_VERDICT_SELECT + " WHERE f.id = ?", (verdict_id,))
        if not rows:
            raise UnknownPrediction(f"no verdict with id {verdict_id}")
        return _verdict(rows[0])

    def accepted_after(self, after_id: int, upto_id: int | None = None) -> list[Verdict]:
        """Accepted verdicts with ``after_id < id <= upto_id``, in id order."""
        sql = _VERDICT_SELECT + (" WHERE f.id > ? AND f.status = 'accepted'"
                                 " AND f.repeat_of IS NULL")
        args: tuple[int, ...] = (after_id,)
        if upto_id is not None:
            sql += " AND f.id <= ?"
            args += (upto_id,)
        return [_verdict(r) for r in self._read(sql + " ORDER BY f.id", args)]

    def accepted_before(self, before_id: int, n: int) -> list[Verdict]:
        """The last ``n`` accepted verdicts with ``id < before_id``, in id order."""
        if n <= 0:
            return []
        rows = self._read(
            _VERDICT_SELECT + " WHERE f.id < ? AND f.status = 'accepted' AND f.repeat_of IS NULL"
            " ORDER BY f.id DESC LIMIT ?", (before_id, n))
        return [_verdict(r) for r in reversed(rows)]

    def verdicts(self, status: str | None = None, client: str | None = None) -> list[Verdict]:
        sql = _VERDICT_SELECT + " WHERE 1 = 1"
        args: tuple[str, ...] = ()
        if status:
            sql += " AND f.status = ?"
            args += (status,)
        if client is not None:
            sql += " AND f.client = ?"
            args += (client,)
        return [_verdict(r) for r in self._read(sql + " ORDER BY f.id", args)]

    def clients(self, confident: float, limit: int = 20) -> list[ClientRecord]:
        """The clients with the most verdicts (first verdicts only), with their records;
        ``confident``: the probability from which a prediction counts as confident."""
        rows = self._read(
            "WITH judged AS (SELECT f.client, COUNT(*) AS verdicts,"
            " COUNT(*) FILTER (WHERE f.correct = 0) AS incorrect,"
            " COUNT(*) FILTER (WHERE f.correct = 0 AND p.probability >= ?) AS contradicted,"
            " COUNT(*) FILTER (WHERE f.status = 'quarantined') AS held"
            " FROM feedback f JOIN predictions p ON p.id = f.prediction_id"
            " WHERE f.released_from IS NULL AND f.client IS NOT NULL"
            " GROUP BY f.client ORDER BY verdicts DESC, f.client LIMIT ?)"
            " SELECT j.client, COUNT(p.id), j.verdicts, j.incorrect,"
            " COUNT(p.id) FILTER (WHERE p.probability >= ?), j.contradicted, j.held"
            " FROM judged j LEFT JOIN predictions p ON p.client = j.client"
            " GROUP BY j.client, j.verdicts, j.incorrect, j.contradicted, j.held"
            " ORDER BY j.verdicts DESC, j.client",
            (confident, limit, confident))
        return [ClientRecord(str(r[0]), *(int(v) for v in r[1:])) for r in rows]

    def head(self) -> tuple[int, int]:
        """(highest verdict id, generation): a cheap "has anything changed?" probe."""
        row = self._read(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM feedback),"
            " (SELECT value FROM meta WHERE key = 'generation')")[0]
        return int(row[0]), int(row[1])

    def counts(self) -> dict[str, int]:
        out = {"predictions": int(self._read("SELECT COUNT(*) FROM predictions")[0][0])}
        for status, n in self._read("SELECT status, COUNT(*) FROM feedback GROUP BY status"):
            out[str(status)] = int(n)
        return out

    def daily(self) -> list[DayCounts]:
        """Predictions and verdicts per UTC day, oldest first."""
        days: dict[str, DayCounts] = {}
        for day, n in self._read("SELECT substr(created, 1, 10), COUNT(*) FROM predictions"
                                 " GROUP BY substr(created, 1, 10)"):
            days[day] = DayCounts(day, predictions=int(n))
        for day, n, incorrect, repeats in self._read(
                "SELECT substr(created, 1, 10), COUNT(*),"
                " COUNT(*) FILTER (WHERE correct = 0),"
                " COUNT(*) FILTER (WHERE repeat_of IS NOT NULL)"
                " FROM feedback WHERE released_from IS NULL GROUP BY substr(created, 1, 10)"):
            counts = days.setdefault(day, DayCounts(day))
            days[day] = DayCounts(day, counts.predictions, int(n), int(incorrect), int(repeats))
        return [days[day] for day in sorted(days)]

    def quarantine_reasons(self) -> list[tuple[str, int]]:
        """(reason, verdicts) of what is quarantined now, most verdicts first."""
        rows = self._read(
            "SELECT COALESCE(reason, '') AS why, COUNT(*) AS n FROM feedback"
            " WHERE status = 'quarantined' GROUP BY COALESCE(reason, '') ORDER BY n DESC, why")
        return [(str(reason), int(n)) for reason, n in rows]

    # -- quarantine (run inside ``exclusive()``) -----------------------------
    def quarantine(self, after_id: int, upto_id: int | None, reason: str) -> int:
        """Flag accepted verdicts in (after_id, upto_id] as quarantined; bump the generation.

        Only inside :meth:`exclusive` (this thread's transaction is then the
        log's ordered one).
        """
        tx: Executor | None = getattr(self._local, "tx", None)
        if tx is None:
            raise RuntimeError("quarantine() runs inside exclusive()")
        sql = "UPDATE feedback SET status = 'quarantined', reason = ? WHERE status = 'accepted'"
        sql += " AND id > ?"
        args: tuple[str | int, ...] = (reason, after_id)
        if upto_id is not None:
            sql += " AND id <= ?"
            args += (upto_id,)
        changed = tx.execute(sql, args).rowcount
        if changed:
            tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        return changed

    def release(self, verdict_ids: Sequence[int]) -> list[int]:
        """Re-append quarantined verdicts at the end of the log; returns the new ids."""
        new_ids = []
        with self._transaction(durable=True, ordered=True) as tx:
            for verdict_id in verdict_ids:
                row = tx.execute(
                    "SELECT prediction_id, correct, label, status, client, text_key, rejected"
                    " FROM feedback WHERE id = ?", (verdict_id,),
                ).fetchone()
                if row is None:
                    raise UnknownPrediction(f"no verdict with id {verdict_id}")
                if row[3] != "quarantined":
                    raise FeedbackError(f"verdict {verdict_id} is {row[3]}, not quarantined")
                if row[6]:
                    raise FeedbackError(f"verdict {verdict_id} was rejected: it stays out")
                tx.execute("UPDATE feedback SET status = 'released' WHERE id = ?",
                           (verdict_id,))
                new_ids.append(int(tx.execute(
                    "INSERT INTO feedback (prediction_id, correct, label, released_from, client,"
                    " created, text_key) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (row[0], row[1], row[2], verdict_id, row[4], now(), row[5]),
                ).fetchall()[0][0]))
        return new_ids

    def reject(self, verdict_ids: Sequence[int]) -> int:
        """Mark quarantined verdicts as rejected for good (never released); how many."""
        with self._transaction(durable=True, ordered=True) as tx:
            for verdict_id in verdict_ids:
                row = tx.execute("SELECT status FROM feedback WHERE id = ?",
                                 (verdict_id,)).fetchone()
                if row is None:
                    raise UnknownPrediction(f"no verdict with id {verdict_id}")
                if row[0] != "quarantined":
                    raise FeedbackError(f"verdict {verdict_id} is {row[0]}, not quarantined")
                tx.execute("UPDATE feedback SET rejected = 1 WHERE id = ?", (verdict_id,))
        return len(verdict_ids)


def _client_record(tx: Executor, client: str, confident: float) -> tuple[int, int]:
    """(verdicts, those contradicting a prediction at least ``confident``) of the client,
    copies of released verdicts left out: its stored running counts, brought up to date
    with the verdicts committed since.

    Exact because the columns counted never change once a verdict is written, and
    because this runs in the ordered transaction, where every verdict after the
    counts' ``through_id`` has a greater id. Counting the whole history on every
    verdict made one client's verdicts cost more and more.
    """
    stored = tx.execute(
        "SELECT through_id, verdicts, contradicted FROM client_verdict_counts"
        " WHERE client = ? AND confident = ?", (client, confident)).fetchone()
    through, verdicts, contradicted = (int(v) for v in stored) if stored else (0, 0, 0)
    new, new_contradicted, last = tx.execute(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE f.correct = 0 AND p.probability >= ?),"
        " MAX(f.id) FROM feedback f JOIN predictions p ON p.id = f.prediction_id"
        " WHERE f.client = ? AND f.id > ? AND f.released_from IS NULL",
        (confident, client, through)).fetchone()
    verdicts += int(new)
    contradicted += int(new_contradicted)
    if last is not None:
        tx.execute(
            "INSERT INTO client_verdict_counts"
            " (client, confident, through_id, verdicts, contradicted) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (client, confident) DO UPDATE SET through_id = excluded.through_id,"
            " verdicts = excluded.verdicts, contradicted = excluded.contradicted",
            (client, confident, int(last), verdicts, contradicted))
    return verdicts, contradicted


def _evidence(tx: Executor, judge: Judge, prediction_id: int, probability: float,
              correct: bool, client: str | None) -> Evidence:
    """What ``judge`` weighs, counted inside the verdict's own (ordered) transaction."""
    confident = judge.confident
    if client is None:
        client_confident = client_verdicts = client_contradicted = 0
    else:
        client_verdicts, client_contradicted = _client_record(tx, client, confident)
        client_confident = tx.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM predictions WHERE client = ?"
            " AND probability >= ? AND id < ? LIMIT ?) AS counted",
            (client, confident, prediction_id,
             judge.confident_enough(int(client_contradicted)))).fetchone()[0]
    newest = tx.execute(
        "SELECT f.correct = 0 AND p.probability >= ? FROM feedback f"
        " JOIN predictions p ON p.id = f.prediction_id"
        " WHERE f.new_client = 1 AND f.released_from IS NULL"
        " ORDER BY f.id DESC LIMIT ?", (confident, judge.newcomer_window)).fetchall()
    return Evidence(probability, correct, int(client_confident), int(client_verdicts),
                    int(client_contradicted), tuple(bool(r[0]) for r in reversed(newest)))
