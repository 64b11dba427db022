"""The ordered log of predictions and verdicts (:mod:`.log`) and its backends."""

from __future__ import annotations

from pathlib import Path

from sentiment.storage.log import FeedbackLog, LogUnavailable
from sentiment.storage.sql import SQLFeedbackLog
from sentiment.storage.sqlite import SQLiteFeedbackLog


def open_log(url: str | None, path: Path, durable: bool = True, connections: int = 8,
             upgrade: bool = True) -> SQLFeedbackLog:
    """The log the settings name: PostgreSQL at ``url`` (``DATABASE_URL``), else the
    embedded SQLite file at ``path``.

    ``connections``: how many the process may hold at once (PostgreSQL);
    ``upgrade``: apply the schema migrations that are safe on start.
    """
    if url:
        # Imported here: psycopg is only needed by hosts that use PostgreSQL.
        from sentiment.storage.postgres import PostgresFeedbackLog

        return PostgresFeedbackLog(url, durable=durable, pool_size=connections,
                                   upgrade=upgrade)
    return SQLiteFeedbackLog(path, durable=durable, upgrade=upgrade)


__all__ = ["FeedbackLog", "LogUnavailable", "SQLFeedbackLog",
           "SQLiteFeedbackLog", "open_log"]
