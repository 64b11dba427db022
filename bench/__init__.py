"""Benchmarks of the model, the learner and the running app (``python -m bench.<name>``)."""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

from train.data import DataError, resolve_archive

# The releases that move the figures: scikit-learn 1.9 alone made a verdict's
# update 2-3 times slower, scipy 1.17 start-up about 0.6 s slower (README and
# docs/measurements.md, "Library versions").
MEASURED_LIBRARIES = ("scikit-learn", "scipy", "numpy", "pandas", "Flask", "waitress")


def library_versions() -> dict[str, str]:
    """Python's version and the measured libraries', stored with every report.

    A figure cannot be compared with another without them.
    """
    return {"python": platform.python_version(),
            **{name: metadata.version(name) for name in MEASURED_LIBRARIES}}


def versions_line(versions: dict[str, str] | None = None) -> str:
    """``versions`` (default: :func:`library_versions`) as the line each benchmark prints first."""
    versions = versions or library_versions()
    return "measured with " + ", ".join(f"{name} {v}" for name, v in versions.items())


def add_archive_argument(parser: argparse.ArgumentParser) -> None:
    """``--archive``, which :func:`archive_or_none` resolves."""
    parser.add_argument("--archive", help="aclImdb archive (else $ACLIMDB_ARCHIVE, else "
                                          "download)")


def add_sentence_sets_argument(parser: argparse.ArgumentParser) -> None:
    """``--data``: the labelled sentence files a learning benchmark reads
    (:mod:`bench.labelled`)."""
    parser.add_argument("--data", type=Path, nargs="*", default=None,
                        help="text<TAB>label files (default: the shared sentence sets)")


def archive_or_none(given: str | None) -> Path | None:
    """The aclImdb archive a benchmark reads: ``given``, else $ACLIMDB_ARCHIVE, else the
    official download; None once the reason there is none is printed (exit 2)."""
    try:
        return resolve_archive(given)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def command_line(module: str, argv: list[str] | None) -> str:
    """How a benchmark was run, for its report: ``python -m bench.loop --data F``."""
    return f"python -m {module}" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
