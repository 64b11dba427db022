"""Operator commands: ``flask --app app model ...`` and ``flask --app app feedback ...``."""

from __future__ import annotations

import csv
import sys
from typing import IO, cast

import click
from flask import current_app
from flask.cli import AppGroup

from sentiment.learning.learner import Learner
from sentiment.learning.versions import CorruptVersion
from sentiment.storage.log import MAX_ID, FeedbackError

model_cli = AppGroup("model", help="Model versions: list, roll back, rebuild from the log.")
feedback_cli = AppGroup("feedback", help="The feedback log: list, release, export.")


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
    rebuilt = ln.rebuild()
    same = rebuilt.state().equals(ln.model.state())
    click.echo(f"replayed {ln.applied_id and len(ln.feedback.accepted_after(0))} accepted verdicts;"
               f" live model {ln.model_version}: {'bit-identical' if same else 'DIFFERENT'}")
    if not same:
        sys.exit(1)


@feedback_cli.command("list")
@click.option("--status", type=click.Choice(["accepted", "quarantined", "released"]))
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="newest N rows; 0 for all")
def feedback_list(status: str | None, limit: int) -> None:
    """List verdicts, newest last."""
    rows = learner().feedback.verdicts(status)
    if limit:
        rows = rows[-limit:]
    for v in rows:
        verdict = "correct" if v.correct else "incorrect"
        click.echo(f"{v.id:>7} pred {v.prediction_id:>7} {verdict:<9}"
                   f" -> {('negative', 'positive')[v.label]:<8} {v.status:<11} {v.created}"
                   f"  {v.reason or ''}")
    click.echo(f"{len(rows)} verdicts", err=True)


@feedback_cli.command("stats")
def feedback_stats() -> None:
    """How the model is doing: verdicts per day, Incorrect presses, versions, quarantines."""
    from sentiment.learning.stats import model_stats

    stats = model_stats(learner())
    share = stats["incorrect_share"]
    click.echo(f"model {stats['model_version']}: {stats['predictions']:,} predictions, "
               f"{stats['verdicts']:,} verdicts ("
               f"{'-' if share is None else f'{share:.1%}'} Incorrect), "
               f"{stats['repeats']:,} repeats, {stats['quarantined']:,} quarantined")
    click.echo(f"\n{'day':<12}{'predictions':>12}{'verdicts':>10}{'incorrect':>11}")
    for day in stats["days"]:
        share = day["incorrect_share"]
        click.echo(f"{day['day']:<12}{day['predictions']:>12,}{day['verdicts']:>10,}"
                   f"{'-' if share is None else f'{share:.1%}':>11}")
    for quarantine in stats["quarantines"]:
        click.echo(f"quarantined: {quarantine['verdicts']:,} verdicts: {quarantine['reason']}")


@feedback_cli.command("release")
@click.argument("ids", nargs=-1, type=click.IntRange(1, MAX_ID), required=True)
def feedback_release(ids: tuple[int, ...]) -> None:
    """Re-apply quarantined verdicts IDS (appended to the end of the log)."""
    ln = learner()
    try:
        new_ids = ln.feedback.release(list(dict.fromkeys(ids)))  # each once
    except FeedbackError as exc:
        raise click.ClickException(str(exc)) from exc
    ln.sync()
    click.echo(f"released {len(new_ids)} verdicts as {', '.join(map(str, new_ids))}")


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
