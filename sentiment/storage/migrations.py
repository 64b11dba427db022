"""The log's schema as numbered migrations, for each SQL dialect.

A database records the migrations it has had in ``schema_migrations``; a
log opens by applying the missing ones, in order, in one transaction that
also holds the log's write order (so two hosts starting together on a new
database cannot both create it). ``flask --app app db upgrade`` runs them by
hand and ``db status`` lists them.

A migration that is not safe to run while other hosts serve (one that
rewrites every row, or drops something an older release still reads) is
marked ``on_start=False``: the app then refuses to start until an operator
has run ``db upgrade``, rather than stalling every host behind it.

Migration 1 is the schema as it stood when migrations began. For SQLite it
is written to be re-run on a log of any earlier release (``IF NOT EXISTS``,
and columns added only when missing), which is how such a log joins the
numbered history.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sentiment.storage.log import review_key

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class _Executor(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...


Step = str | Callable[[Any], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    steps: dict[str, tuple[Step, ...]] = field(repr=False)
    on_start: bool = True  # safe to run as the app starts, with other hosts serving

    def apply(self, dialect: str, tx: _Executor) -> None:
        """Run this migration's steps for ``dialect`` inside the transaction ``tx``."""
        for step in self.steps[dialect]:
            if isinstance(step, str):
                tx.execute(step)
            else:
                step(tx)


class MigrationNeeded(RuntimeError):  # noqa: N818 (public name)
    """The database needs a migration that is only run by hand."""

    def __init__(self, migrations: Sequence[Migration], where: str) -> None:
        names = ", ".join(f"{m.version} ({m.name})" for m in migrations)
        super().__init__(f"the feedback log at {where} needs migration {names}, which is not "
                         "run on start: run `flask --app app db upgrade` first")


def pending(migrations: Sequence[Migration], done: Collection[int]) -> list[Migration]:
    """The migrations not yet applied, in version order."""
    return sorted((m for m in migrations if m.version not in done), key=lambda m: m.version)


def _sqlite_columns(tx: Any, table: str) -> set[str]:
    return {row[1] for row in tx.execute(f"PRAGMA table_info({table})").fetchall()}


def _sqlite_bring_up_to_date(tx: Any) -> None:
    """Add what a log of an earlier release lacks (each release added columns in place)."""
    columns = _sqlite_columns(tx, "predictions")
    for column, kind in (("features", "BLOB"), ("token", "TEXT"), ("view_token", "TEXT"),
                         ("browser", "TEXT")):
        if column not in columns:  # earlier predictions keep none: no vote, no permalink
            tx.execute(f"ALTER TABLE predictions ADD COLUMN {column} {kind}")
    columns = _sqlite_columns(tx, "feedback")
    if "repeat_of" not in columns:
        tx.execute("ALTER TABLE feedback ADD COLUMN repeat_of INTEGER REFERENCES feedback(id)")
    if "text_key" not in columns:
        tx.execute("ALTER TABLE feedback ADD COLUMN text_key BLOB")
        # One statement, the key computed by SQLite calling review_key (``tx`` is
        # the sqlite3 connection), rather than a round trip per verdict.
        tx.create_function("review_key", 1, review_key, deterministic=True)
        tx.execute("UPDATE feedback SET text_key = (SELECT review_key(review)"
                   " FROM predictions p WHERE p.id = feedback.prediction_id)")
    for column in ("new_client", "rejected"):
        if column not in columns:
            tx.execute(f"ALTER TABLE feedback ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


_INDEXES = (
    # One verdict per prediction; a released copy re-uses its prediction.
    "CREATE UNIQUE INDEX IF NOT EXISTS one_verdict_per_prediction"
    " ON feedback(prediction_id) WHERE released_from IS NULL",
    "CREATE INDEX IF NOT EXISTS feedback_status ON feedback(status, id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS prediction_token"
    " ON predictions(token) WHERE token IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS prediction_view_token"
    " ON predictions(view_token) WHERE view_token IS NOT NULL",
    # Repeats: an earlier accepted verdict of the same client on the same text.
    "CREATE INDEX IF NOT EXISTS feedback_client_text ON feedback(client, text_key, status)",
    # What a trust Judge's evidence is counted from (sentiment.storage.sql._evidence).
    "CREATE INDEX IF NOT EXISTS feedback_newcomers ON feedback(new_client, id)",
    "CREATE INDEX IF NOT EXISTS prediction_client ON predictions(client, probability, id)",
)


def _tables(ident: str, real: str, blob: str) -> tuple[str, ...]:
    """The two tables and the generation counter, in a dialect's words for an
    auto-increment key, a double and a byte string."""
    return (
        f"""CREATE TABLE IF NOT EXISTS predictions (
            id {ident},
            review TEXT NOT NULL,
            label INTEGER NOT NULL CHECK (label IN (0, 1)),
            probability {real} NOT NULL,
            model_version TEXT NOT NULL,
            client TEXT,
            created TEXT NOT NULL,
            features {blob},  -- the review's feature columns (vectorizer.encode_rows)
            token TEXT,  -- what the client that got the prediction votes with
            view_token TEXT,  -- its permalink's: shows it to anyone, votes for nobody
            browser TEXT  -- the asking browser's random id: its permalink offers it the buttons
        )""",
        f"""CREATE TABLE IF NOT EXISTS feedback (
            id {ident},
            prediction_id BIGINT NOT NULL REFERENCES predictions(id),
            correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
            label INTEGER NOT NULL CHECK (label IN (0, 1)),
            status TEXT NOT NULL DEFAULT 'accepted'
                CHECK (status IN ('accepted', 'quarantined', 'released')),
            reason TEXT,
            released_from BIGINT REFERENCES feedback(id),
            client TEXT,
            created TEXT NOT NULL,
            -- An earlier accepted verdict of the same client on the same text: this
            -- one is kept but not learned, so that repeating a verdict adds nothing.
            repeat_of BIGINT REFERENCES feedback(id),
            text_key {blob},  -- review_key() of the prediction's review
            -- The client had too little record when it arrived: the pool of such
            -- clients' verdicts judged it (see sentiment.learning.trust).
            new_client INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0  -- quarantined for good by an operator
        )""",
        # Bumped whenever accepted rows stop being accepted, so every process
        # following the log knows to rebuild its model from a version.
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('generation', 0) ON CONFLICT DO NOTHING",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "predictions, verdicts and the generation counter", {
        SQLITE: (*_tables("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "BLOB"),
                 _sqlite_bring_up_to_date, *_INDEXES),
        POSTGRESQL: (*_tables("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                              "DOUBLE PRECISION", "BYTEA"), *_INDEXES),
    }),
    # Several hosts publish into one chain of model versions: its files live in the
    # database (sentiment.storage.postgres.DatabaseVersionFiles). SQLite's single
    # host keeps them in its models folder.
    Migration(2, "model versions shared by every host", {
        SQLITE: (),
        POSTGRESQL: ("CREATE TABLE IF NOT EXISTS version_files"
                     " (name TEXT PRIMARY KEY, data BYTEA NOT NULL)",),
    }),
    # The trust policy's count of a client's verdicts, kept up to date by each
    # verdict instead of recounted over the client's whole history (which made
    # a verdict's cost grow with it): see SQLFeedbackLog's _client_record.
    Migration(3, "running counts of each client's verdicts", {
        dialect: (f"""CREATE TABLE IF NOT EXISTS client_verdict_counts (
            client TEXT NOT NULL,
            confident {real} NOT NULL,  -- the trust policy's threshold they count by
            through_id BIGINT NOT NULL,  -- every verdict of the client up to this id
            verdicts BIGINT NOT NULL,
            contradicted BIGINT NOT NULL,  -- of them, "Incorrect" on a confident prediction
            PRIMARY KEY (client, confident)
        )""", "CREATE INDEX IF NOT EXISTS feedback_client_id ON feedback(client, id)")
        for dialect, real in ((SQLITE, "REAL"), (POSTGRESQL, "DOUBLE PRECISION"))
    }),
)
