"""Operator commands: ``flask --app app model ...``, ``feedback ...`` and ``db ...``."""

from __future__ import annotations

import csv
import sys
from typing import IO, cast

import click
from flask import current_app
from flask.cli import AppGroup

from sentiment.learning.learner import Learner
from sentiment.learning.trust import TrustPolicy
from sentiment.learning.versions import CorruptVersion
from sentiment.settings import Settings, SettingsError
from sentiment.storage import open_log
from sentiment.storage.log import MAX_ID, FeedbackError
from sentiment.storage.migrations import MIGRATIONS, pending

model_cli = AppGroup("model", help="Model versions: list, roll back, rebuild from the log.")
feedback_cli = AppGroup("feedback", help="The feedback log: list, clients, release, reject, "
                                         "stats, export.")


def learner() -> Learner:
    return cast(Learner, current_app.extensions["learner"])


@model_cli.command("list")
def model_list() -> None:
    """List model versions with holdout accuracy and the feedback ids they contain."""
    ln = learner()
    chain = set(ln.store.chain())
    current = ln.store.current_name()
    click.echo(f"{'':2}{'version':<9}{'parent':<9}{'feedback ids':<16}{'holdout':>8}  created")
    for info in ln.store.list():
        ids = "-" if info.first_feedback_id is None else (
            f"{info.first_feedback_id}..{info.last_feedback_id}")
        acc = "-" if info.holdout_accuracy is None else f"{info.holdout_accuracy:.4f}"
        mark = "*" if info.name == current else (" " if info.name in chain else "x")
        pruned = "" if ln.store.has_state(info.name) else "  (state pruned)"
        click.echo(f"{mark:<2}{info.name:<9}{info.parent or '-':<9}{ids:<16}{acc:>8}"
                   f"  {info.created}{pruned}")
    click.echo(f"\n* current ({ln.model_version}); x: superseded by a rollback or quarantine;"
               f" a pruned state is rebuilt from the log on rollback")


@model_cli.command("rollback")
@click.argument("version")
def model_rollback(version: str) -> None:
    """Make VERSION current again; verdicts after it are quarantined (releasable)."""
    try:
        n = learner().rollback(version)
    except (ValueError, OSError, CorruptVersion) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"current version is now {version}; {n} later verdicts quarantined")


@model_cli.command("rebuild")
def model_rebuild() -> None:
    """Replay the whole accepted log onto the base model and compare with the live model."""
    ln = learner()
    ln.sync()
    state = ln.rebuild().state()
    same = state.equals(ln.model.state())
    click.echo(f"replayed {ln.applied_id and len(ln.feedback.accepted_after(0))} accepted verdicts;"
               f" live model {ln.model_version}: {'bit-identical' if same else 'DIFFERENT'}")
    # What every host's /api/health gives as model_digest once it holds the same log.
    click.echo(f"rebuilt model digest {state.digest()}")
    if not same:
        sys.exit(1)


CLIENT = click.option("--client", help="only this client's verdicts (its address, as "
                                       "'feedback clients' lists them)")


@feedback_cli.command("list")
@click.option("--status", type=click.Choice(["accepted", "quarantined", "released"]))
@CLIENT
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="newest N rows; 0 for all")
def feedback_list(status: str | None, client: str | None, limit: int) -> None:
    """List verdicts, newest last."""
    rows = learner().feedback.verdicts(status, client)
    if limit:
        rows = rows[-limit:]
    for v in rows:
        verdict = "correct" if v.correct else "incorrect"
        status_shown = "rejected" if v.rejected else v.status
        click.echo(f"{v.id:>7} pred {v.prediction_id:>7} {verdict:<9}"
                   f" -> {('negative', 'positive')[v.label]:<8} {status_shown:<11} {v.created}"
                   f"  {v.client or '-'}  {v.reason or ''}")
    click.echo(f"{len(rows)} verdicts", err=True)


@feedback_cli.command("clients")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def feedback_clients(limit: int) -> None:
    """The clients with the most verdicts, and what their record says of them.

    "confident": predictions the model gave with at least the trust policy's
    probability; "contradicted": how many of those the client said were wrong.
    An honest client contradicts a small share (the model's confident mistakes).
    """
    ln = learner()
    confident = (ln.config.trust or TrustPolicy()).confident
    click.echo(f"{'client':<40}{'predictions':>12}{'verdicts':>9}{'incorrect':>10}"
               f"{'confident':>10}{'contradicted':>13}{'held':>6}")
    for r in ln.feedback.clients(confident, limit):
        click.echo(f"{r.client[:39]:<40}{r.predictions:>12,}{r.verdicts:>9,}{r.incorrect:>10,}"
                   f"{r.confident:>10,}{r.contradicted:>13,}{r.held:>6,}")


def _quarantined_ids(ln: Learner, ids: tuple[int, ...], client: str | None) -> list[int]:
    """``ids`` (each once), or, with ``client``, that client's quarantined verdicts."""
    if ids and client is not None:
        raise click.UsageError("give verdict IDS or --client, not both")
    if client is not None:
        return [v.id for v in ln.feedback.verdicts("quarantined", client) if not v.rejected]
    if not ids:
        raise click.UsageError("give verdict IDS or --client")
    return list(dict.fromkeys(ids))


@feedback_cli.command("stats")
def feedback_stats() -> None:
    """How the model is doing: verdicts per day, Incorrect presses, versions, quarantines."""
    from sentiment.learning.stats import model_stats

    stats = model_stats(learner())
    share = stats["incorrect_share"]
    live = stats["live_accuracy"]
    click.echo(f"model {stats['model_version']}: {stats['predictions']:,} predictions, "
               f"{stats['verdicts']:,} verdicts ("
               f"{'-' if share is None else f'{share:.1%}'} Incorrect, live accuracy "
               f"{'-' if live is None else f'{live:.1%}'}), "
               f"{stats['repeats']:,} repeats, {stats['accepted']:,} accepted, "
               f"{stats['quarantined']:,} quarantined ({stats['held_by_trust']:,} held by "
               "the trust policy)")
    click.echo(f"\n{'day':<12}{'predictions':>12}{'verdicts':>10}{'incorrect':>11}"
               f"{'live accuracy':>15}")
    for day in stats["days"]:
        share, live = day["incorrect_share"], day["live_accuracy"]
        click.echo(f"{day['day']:<12}{day['predictions']:>12,}{day['verdicts']:>10,}"
                   f"{'-' if share is None else f'{share:.1%}':>11}"
                   f"{'-' if live is None else f'{live:.1%}':>15}")
    for quarantine in stats["quarantines"]:
        click.echo(f"quarantined: {quarantine['verdicts']:,} verdicts: {quarantine['reason']}")


@feedback_cli.command("release")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_ID))
@CLIENT
def feedback_release(ids: tuple[int, ...], client: str | None) -> None:
    """Re-apply quarantined verdicts IDS, or all of a client's (appended to the end of the
    log)."""
    ln = learner()
    try:
        new_ids = ln.feedback.release(_quarantined_ids(ln, ids, client))
    except FeedbackError as exc:
        raise click.ClickException(str(exc)) from exc
    ln.sync()
    click.echo(f"released {len(new_ids)} verdicts"
               + (f" as {', '.join(map(str, new_ids))}" if new_ids else ""))


@feedback_cli.command("reject")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_ID))
@CLIENT
def feedback_reject(ids: tuple[int, ...], client: str | None) -> None:
    """Keep quarantined verdicts IDS, or all of a client's, out for good (kept in the log,
    never released)."""
    ln = learner()
    try:
        n = ln.feedback.reject(_quarantined_ids(ln, ids, client))
    except FeedbackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"rejected {n} verdicts")


# What a spreadsheet reads as the start of a formula (=HYPERLINK(...), +cmd|...):
# OWASP's list for CSV injection.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a cell a spreadsheet shows as text: a leading quote before a formula start."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@feedback_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@click.option("--output", type=click.File("w"), default="-", help="file (default: stdout)")
def feedback_export(fmt: str, output: IO[str]) -> None:
    """Export every verdict with its review as CSV (reviews that would start a spreadsheet
    formula get a leading quote)."""
    writer = csv.writer(output)
    writer.writerow(["id", "prediction_id", "correct", "label", "status", "reason",
                     "released_from", "created", "review"])
    for v in learner().feedback.verdicts():
        writer.writerow([v.id, v.prediction_id, int(v.correct), v.label, v.status, v.reason or "",
                         v.released_from or "", v.created, spreadsheet_safe(v.review)])


# -- db: the log's schema ------------------------------------------------------------
# A plain click group, registered as a Flask command plugin (pyproject.toml,
# "flask.commands"): Flask finds it without building the app, which could not
# start while a migration that only runs by hand is pending.
db_cli = click.Group("db", help="The feedback log's schema: status, upgrade (migrations).")


def _settings() -> Settings:
    try:
        return Settings.load()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


@db_cli.command("status")
def db_status() -> None:
    """List the migrations this log has had, and those it still needs."""
    settings = _settings()
    try:
        log = open_log(settings.database_url, settings.sqlite_path, upgrade=False)
    except FeedbackError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        try:
            applied = log.schema_versions()
        except FeedbackError as exc:  # out of reach, say
            raise click.ClickException(str(exc)) from exc
        click.echo(f"feedback log: {log.where}")
        for version, name, when in applied:
            click.echo(f"  applied  {version:>3}  {name}  ({when})")
        for migration in pending(MIGRATIONS, {v for v, _, _ in applied}):
            how = "" if migration.on_start else "  (by hand: db upgrade)"
            click.echo(f"  pending  {migration.version:>3}  {migration.name}{how}")
    finally:
        log.close()


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration this log still needs (those not run on start included)."""
    settings = _settings()
    try:
        log = open_log(settings.database_url, settings.sqlite_path, upgrade=False)
        try:
            done = log.migrate(MIGRATIONS, on_start=False)
        finally:
            log.close()
    except FeedbackError as exc:
        raise click.ClickException(str(exc)) from exc
    for migration in done:
        click.echo(f"applied {migration.version}: {migration.name}")
    click.echo(f"the feedback log at {log.where} is up to date "
               f"(schema version {max(m.version for m in MIGRATIONS)})")
