"""The log in PostgreSQL: one log for several hosts (``DATABASE_URL=postgresql://...``).

The queries are :mod:`sentiment.storage.sql`'s; this module connects
(psycopg 3, a connection pool per process) and keeps verdict ids in commit
order across every connection of every host.

Why a lock, and not the identity column alone: PostgreSQL hands out sequence
values when a row is inserted, not when it commits. Two transactions that
draw 7 and 8 may commit 8 first, and a host that read "after id 6" at that
moment would see 8, move past it, and never learn 7. So every transaction
that writes the feedback table first takes one transaction-level advisory
lock (:data:`LOG_LOCK`), and draws its ids after that: they commit one at a
time, in id order. Predictions need no order and are not serialised.

Each ordered transaction also sends ``NOTIFY sentiment_log`` (delivered when
it commits): :meth:`PostgresFeedbackLog.wait_for_change` is how a host's
learner wakes within milliseconds of a verdict taken by another host. A
notification is only a wake-up: a learner also polls, and what it reads is
always the log itself.

A database that cannot be reached (down, restarting, the pool exhausted for
:data:`CONNECT_TIMEOUT` seconds) raises :class:`LogUnavailable`, a 503 with
``Retry-After``: a transaction either committed or left nothing behind.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from sentiment.storage.log import LogUnavailable
from sentiment.storage.migrations import MIGRATIONS, POSTGRESQL, Migration
from sentiment.storage.sql import Cursor, SQLFeedbackLog

log = logging.getLogger(__name__)

#: The advisory lock every ordered transaction takes (any fixed 64-bit numbers
#: will do, as long as nothing else in the database uses them).
LOG_LOCK = 0x2B1F6A2E5D3C4B18
#: The one a checkpoint or a rollback holds while it publishes a version.
VERSIONS_LOCK = LOG_LOCK + 1
CHANNEL = "sentiment_log"
#: How long a request waits for a connection before answering 503.
CONNECT_TIMEOUT = 2.0
#: What a client is told (the database's address is the operator's business). A
#: connection lost while a commit's answer was on its way leaves it unknown whether
#: that commit happened: sending the same verdict again is what settles it.
OUT_OF_REACH = ("The feedback log is out of reach just now. Please try again in a few "
                "seconds: a verdict sent again is never counted twice (a 409 then means "
                "the first one was stored).")
#: A pooled connection idle this long is checked (a round trip) before it is handed
#: out: one the database dropped meanwhile (a restart) is replaced, not failed on.
#: Busier connections skip the check, which cost a round trip per request.
CHECK_AFTER_IDLE = 1.0
#: After the database was found out of reach, requests fail at once for this long
#: (then one tries again): predictions keep being served from the live model
#: without each waiting for the database first.
OUTAGE_BACKOFF = 1.0


# When each pooled connection was last given back (psycopg's connections take no
# new attributes); an entry goes with its connection.
_LAST_USED: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = \
    weakref.WeakKeyDictionary()


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's check, made only on a connection idle for :data:`CHECK_AFTER_IDLE`."""
    if time.monotonic() - _LAST_USED.get(conn, 0.0) >= CHECK_AFTER_IDLE:
        ConnectionPool.check_connection(conn)


def _placeholders(sql: str) -> str:
    """The shared queries' ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "a PostgreSQL database (unreadable URL)"
    where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
    return f"postgresql://{info.get('user', '')}@{where}/{info.get('dbname', '')}"


class _Transaction:
    """One connection's transaction, speaking the shared queries' placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(_placeholders(sql), tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        """One statement for many rows (psycopg pipelines them: one round trip)."""
        with self._conn.cursor() as cursor:
            cursor.executemany(_placeholders(sql), [tuple(row) for row in rows])


class PostgresFeedbackLog(SQLFeedbackLog):
    """The log in a PostgreSQL database, shared by every process of every host."""

    dialect = POSTGRESQL
    integrity_errors = (psycopg.errors.UniqueViolation,)
    missing_table_errors = (psycopg.errors.UndefinedTable,)
    notifies = True
    over_network = True

    def __init__(self, url: str, durable: bool = True, pool_size: int = 8,
                 upgrade: bool = True, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        """``pool_size``: connections this process may hold (one per request thread,
        plus the checkpoint's); ``upgrade``: as for the SQLite log."""
        super().__init__()
        self.url = url
        self._durable = durable
        # check: a connection idle for a while, which may have died with its server
        # (a restart), is tried before a request gets it (see _check_if_idle).
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True},
            check=_check_if_idle, timeout=CONNECT_TIMEOUT, num_workers=1,
            name="feedback-log", open=False)
        self._listener: psycopg.Connection[Any] | None = None
        self._down_until = 0.0
        self._listener_lock = threading.Lock()
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            if upgrade:
                self.migrate(migrations, on_start=True)
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise LogUnavailable(f"cannot use the feedback log at {self.where}: {exc}") from exc

    @property
    def where(self) -> str:
        return redacted(self.url)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a database out of reach becomes :class:`LogUnavailable`."""
        if time.monotonic() < self._down_until:
            raise LogUnavailable(OUT_OF_REACH)
        try:
            with self._pool.connection() as conn:
                try:
                    yield conn
                finally:
                    _LAST_USED[conn] = time.monotonic()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._down_until = time.monotonic() + OUTAGE_BACKOFF
            log.warning("the feedback log at %s is out of reach: %s", self.where, exc)
            raise LogUnavailable(OUT_OF_REACH) from exc

    @contextmanager
    def _begin(self, durable: bool, ordered: bool) -> Iterator[_Transaction]:
        with self._connection() as conn, conn.transaction():
            if not (durable and self._durable):
                # Like SQLite's synchronous=NORMAL for predictions: committed, not
                # yet flushed; a crash of the database (not of the app) may lose it.
                conn.execute("SET LOCAL synchronous_commit = off")
            if ordered:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOG_LOCK,))
            yield _Transaction(conn)
            if ordered:
                conn.execute(pgsql.SQL("NOTIFY {}").format(pgsql.Identifier(CHANNEL)))

    def _read_alone(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_placeholders(sql), tuple(args)).fetchall()

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        return self._pool

    def read_rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One query of this database's other tables (``?`` placeholders)."""
        return self._read(sql, args)

    def write_rows(self, sql: str, args: Sequence[Any] = ()) -> None:
        """One durable statement on this database's other tables, committed alone."""
        with self._transaction(durable=True) as tx:
            tx.execute(sql, args)

    def version_files(self) -> DatabaseVersionFiles:
        """Model versions in this database: every host publishes into one chain, and a
        quarantine or a rollback sends every host back to the same version."""
        return DatabaseVersionFiles(self)

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for another ordered transaction to commit.

        True when one did (a notification came); False on timeout, or when
        the database is out of reach (the listening connection is then made
        again on the next call: the caller's polling covers the gap).
        """
        with self._listener_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = psycopg.connect(self.url, autocommit=True,
                                                     connect_timeout=int(CONNECT_TIMEOUT))
                    self._listener.execute(pgsql.SQL("LISTEN {}").format(
                        pgsql.Identifier(CHANNEL)))
                    return True  # anything may have happened while nobody listened
                return any(True for _ in self._listener.notifies(timeout=timeout,
                                                                 stop_after=1))
            except psycopg.Error:
                log.warning("cannot listen for changes of the feedback log at %s", self.where)
                self._close_listener()
                return False

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        self._pool.close()
        with self._listener_lock:
            self._close_listener()

    def integrity_check(self) -> str:
        """PostgreSQL checks its own pages; what is checked here is the log's promise:
        at most one first verdict per prediction, every verdict on a stored prediction."""
        problems = self._read(
            "SELECT (SELECT COUNT(*) FROM (SELECT prediction_id FROM feedback"
            " WHERE released_from IS NULL GROUP BY prediction_id HAVING COUNT(*) > 1) AS d),"
            " (SELECT COUNT(*) FROM feedback f LEFT JOIN predictions p"
            " ON p.id = f.prediction_id WHERE p.id IS NULL)")[0]
        if any(problems):
            return (f"{problems[0]} predictions with several verdicts, "
                    f"{problems[1]} verdicts without a prediction")
        return "ok"


class DatabaseLock:
    """A lock for every thread of every host: a thread lock, then a session-level
    advisory lock on a connection kept for as long as it is held.

    If that connection dies meanwhile (the database restarts), PostgreSQL has
    already released the lock; :meth:`release` then only returns the connection.
    """

    def __init__(self, log: PostgresFeedbackLog, key: int) -> None:
        self._log = log
        self._key = key
        self._threads = threading.Lock()
        self._held: psycopg.Connection[Any] | None = None

    def acquire(self, blocking: bool = True) -> bool:
        if not self._threads.acquire(blocking):
            return False
        try:
            conn = self._log.pool.getconn()
        except PoolTimeout as exc:
            self._threads.release()
            raise LogUnavailable(OUT_OF_REACH) from exc
        try:
            if blocking:
                conn.execute("SELECT pg_advisory_lock(%s)", (self._key,))
                got = True
            else:
                got = bool(conn.execute("SELECT pg_try_advisory_lock(%s)",
                                        (self._key,)).fetchone()[0])  # type: ignore[index]
        except BaseException as exc:
            self._log.pool.putconn(conn)
            self._threads.release()
            if isinstance(exc, psycopg.OperationalError):
                raise LogUnavailable(OUT_OF_REACH) from exc
            raise
        if not got:
            self._log.pool.putconn(conn)
            self._threads.release()
            return False
        self._held = conn
        return True

    def release(self) -> None:
        conn, self._held = self._held, None
        try:
            if conn is not None:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        except psycopg.Error:
            log.warning("the versions lock's connection was lost (released with it)")
        finally:
            if conn is not None:
                self._log.pool.putconn(conn)
            self._threads.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class DatabaseVersionFiles:
    """Model versions' files in the log's database (table ``version_files``), for every
    host; each write is its own committed transaction, like a file's rename."""

    def __init__(self, log: PostgresFeedbackLog) -> None:
        self._log = log
        self.lock = DatabaseLock(log, VERSIONS_LOCK)

    def read(self, name: str) -> bytes:
        rows = self._log.read_rows("SELECT data FROM version_files WHERE name = ?", (name,))
        if not rows:
            raise FileNotFoundError(f"no version file {name} in {self._log.where}")
        return bytes(rows[0][0])

    def write(self, name: str, data: bytes) -> None:
        self._log.write_rows(
            "INSERT INTO version_files (name, data) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET data = excluded.data", (name, data))

    def exists(self, name: str) -> bool:
        return bool(self._log.read_rows("SELECT 1 FROM version_files WHERE name = ?", (name,)))

    def delete(self, name: str) -> None:
        self._log.write_rows("DELETE FROM version_files WHERE name = ?", (name,))

    def names(self, suffix: str) -> list[str]:
        return [str(r[0]) for r in self._log.read_rows(
            "SELECT name FROM version_files WHERE name LIKE ?", (f"v%{suffix}",))]
