"""The log in an SQLite file: the embedded default backend, for one host.

The queries are :mod:`sentiment.storage.sql`'s; this module connects (one
connection per thread, WAL mode) and orders writes. SQLite has one writer
at a time, so every write transaction is ordered: ids are handed out in
commit order and no reader can see row N+1 before row N.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sentiment.locks import HostLock
from sentiment.storage.migrations import MIGRATIONS, SQLITE, Migration
from sentiment.storage.sql import SQLFeedbackLog

# How long a connection waits for another process's write lock.
BUSY_TIMEOUT = 30.0
# Pages the write-ahead log may hold before a commit copies it into the database
# itself (SQLite's automatic checkpoint): SQLite's default, and ten times that
# once a background thread checkpoints instead (see hand_over_upkeep), in case
# that thread ever falls behind or stops.
AUTOCHECKPOINT_PAGES = 1_000
BACKSTOP_PAGES = 10_000


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


class SQLiteFeedbackLog(SQLFeedbackLog):
    """The log in an SQLite file, thread-safe: one connection per thread, WAL mode."""

    dialect = SQLITE
    integrity_errors = (sqlite3.IntegrityError,)
    missing_table_errors = (sqlite3.OperationalError,)  # "no such table: ..."

    def __init__(self, path: Path, durable: bool = True, upgrade: bool = True,
                 migrations: Sequence[Migration] = MIGRATIONS) -> None:
        """``upgrade``: apply the migrations that are safe on start (False: an operator
        command that looks at the log as it is, such as ``db status``)."""
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A verdict is fsynced before it is acknowledged (FULL), so it survives
        # power loss. Predictions are written with NORMAL: in WAL mode that
        # still survives the process being killed, and losing one to a power
        # cut only means its verdict would be refused, so it is not worth an
        # fsync on every prediction.
        self._verdict_sync = "FULL" if durable else "NORMAL"
        self._connections = threading.local()
        self._autocheckpoint = AUTOCHECKPOINT_PAGES
        # Writers queue on this lock before SQLite's own: SQLite polls its lock,
        # and under concurrent load its busy handler's sleeps (1, 2, 5 ... 100
        # ms) made the slowest requests 100 ms slower. SQLite still arbitrates
        # against anything that skips this lock (the ``sqlite3`` shell, say).
        self._writer = HostLock(self.path.with_name(self.path.name + "-writer.lock"))
        try:
            if upgrade:
                self.migrate(migrations, on_start=True)
        except sqlite3.Error as exc:  # SQLite's messages do not name the file
            raise type(exc)(f"{exc}: {self.path}") from exc

    @property
    def where(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._connections, "db", None)
        if db is None:
            db = _open_wal(self.path)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")
            self._connections.db = db
        return db

    def hand_over_upkeep(self) -> Callable[[], object]:
        """Checkpoints of the write-ahead log, for a background thread from now on.

        SQLite copies the log into the database on the commit that takes it past
        1,000 pages: the pages copied and two fsyncs, while the request that
        committed waits (a batch of 1,000 predictions writes about 1,000 pages,
        so nearly every batch request waited for one). The background thread
        copies what has accumulated since its last call (:meth:`checkpoint_wal`;
        SQLite lets other threads run meanwhile); the commits of this log's
        connections only checkpoint past :data:`BACKSTOP_PAGES`, should that
        thread fall behind.
        """
        self._autocheckpoint = BACKSTOP_PAGES
        db: sqlite3.Connection | None = getattr(self._connections, "db", None)
        if db is not None:
            db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        return self.checkpoint_wal

    def checkpoint_wal(self) -> None:
        """Copy the write-ahead log's committed pages into the database, without waiting
        for (or holding up) any reader or writer: a PASSIVE checkpoint copies what
        it can now, and costs nothing when there is nothing new."""
        self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @contextmanager
    def _begin(self, durable: bool, ordered: bool) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        db.execute(f"PRAGMA synchronous={self._verdict_sync if durable else 'NORMAL'}")
        with self._writer:  # every SQLite write is ordered: one writer at a time
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read_alone(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._connect().execute(sql, args).fetchall()

    def close(self) -> None:
        db = getattr(self._connections, "db", None)
        if db is not None:
            db.close()
            self._connections.db = None

    def integrity_check(self) -> str:
        return cast(str, self._connect().execute("PRAGMA integrity_check").fetchone()[0])
