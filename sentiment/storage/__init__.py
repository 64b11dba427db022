"""The ordered log of predictions and verdicts (:mod:`.log`) and its backends."""

from __future__ import annotations

from pathlib import Path

from sentiment.storage.log import FeedbackLog
from sentiment.storage.sqlite import SQLiteFeedbackLog


def open_log(path: Path, durable: bool = True) -> FeedbackLog:
    """The log the settings name: an SQLite file (the embedded default)."""
    return SQLiteFeedbackLog(path, durable=durable)


__all__ = ["FeedbackLog", "SQLiteFeedbackLog", "open_log"]
