"""``python -m train.explore``: explore the aclImdb train split, write figures, PNGs and a report.

Every input problem (no archive, unreadable archive, no stopwords, an output
folder that cannot be written, a nonsense number) ends the run with one line
on stderr and exit code 2, before any long work where it can be checked up
front; Ctrl-C ends it with exit code 130 and leaves no half-written file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from train.data import (
    ARCHIVE_ENV,
    ARCHIVE_URL,
    DataError,
    check_writable_folder,
    iter_archive,
    resolve_archive,
    sha256_file,
)
from train.stopwords import MissingStopwordsError, nltk_english

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "reports" / "explore"
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)
MAX_TOP = 1000
MAX_VOCAB_LIMIT = 10_000_000


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], with a message saying which."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high:,}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m train.explore",
        description="Explore the aclImdb train split: class balance, lengths, frequent and "
                    "discriminative n-grams, vocabulary coverage, sequence length, test OOV. "
                    "Writes figures.json, report.md and PNGs.",
    )
    parser.add_argument("--archive", metavar="PATH",
                        help=f"local aclImdb archive; else ${ARCHIVE_ENV}; "
                             f"else download {ARCHIVE_URL}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help="output folder (default: reports/explore)")
    parser.add_argument("--top", type=whole_number(1, MAX_TOP), default=25, metavar="N",
                        help="n-grams per class in the top and discriminative lists (default 25)")
    parser.add_argument("--vocab-limit", type=whole_number(1, MAX_VOCAB_LIMIT), metavar="K",
                        help="vocabulary size for the test OOV rate (default: the smallest grid "
                             "size covering 95%% of training tokens)")
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace, argv: list[str]) -> str:
    """The command that reproduces this run, for the report's header."""
    env = ""
    if args.archive is None and os.environ.get(ARCHIVE_ENV):
        env = f"{ARCHIVE_ENV}={shlex.quote(os.environ[ARCHIVE_ENV])} "
    return f"{env}python -m train.explore {shlex.join(argv)}".rstrip()


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target, then rename: a reader or a Ctrl-C never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def explore(archive: Path, out: Path, top: int, vocab_limit: int | None, command: str,
            stopwords: list[str]) -> dict[str, Any]:
    """Count the archive, then write figures.json, the PNGs and report.md into ``out``."""
    from train.explore import figures as figures_module
    from train.explore import plots, report
    from train.explore.stats import Explorer

    explorer = Explorer(stopwords)
    with tqdm(iter_archive(archive), desc="exploring", unit=" reviews", disable=None,
              file=sys.stderr) as reviews:
        for review in reviews:
            explorer.add(review)
    train, test = explorer.train.reviews, explorer.test.reviews
    if min(train["pos"], train["neg"]) == 0 or sum(test.values()) == 0:
        raise DataError(f"{archive} needs labelled reviews of both classes in "
                        f"aclImdb/train/{{pos,neg}}/ and some in aclImdb/test/")
    info = {"name": archive.name, "sha256": sha256_file(archive)}
    figures, clouds = figures_module.compute(explorer, top, vocab_limit, info)
    pngs = plots.all_plots(figures, clouds)
    text = report.render(figures, sorted(pngs), command)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "figures.json",
                     (json.dumps(figures, indent=2, ensure_ascii=False) + "\n").encode())
        for name, png in pngs.items():
            write_atomic(out / name, png)
        for stale in plots.PNG_NAMES - pngs.keys():  # an earlier run's cloud this run has not
            (out / stale).unlink(missing_ok=True)
        write_atomic(out / "report.md", text.encode())
    except OSError as exc:
        raise DataError(f"cannot write into {out}: {exc.strerror or exc}") from exc
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        check_writable_folder(args.out, "output folder")
        stopwords = nltk_english()  # before a download of minutes
        if importlib.util.find_spec("wordcloud") is None:
            raise DataError("the wordcloud package is missing: pip install wordcloud==1.9.6")
        archive = resolve_archive(args.archive)
        figures = explore(archive, args.out, args.top, args.vocab_limit,
                          command_line(args, argv), stopwords)
    except (DataError, MissingStopwordsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    vocabulary = figures["vocabulary"]["stopwords_removed"]
    test = figures["test"]["stopwords_removed"]
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wrote {args.out}/report.md, figures.json and PNGs ({size / 1e6:.2f} MB)\n"
          f"vocabulary limit {vocabulary['limit']:,} words ({vocabulary['limit_coverage']:.2%} "
          f"of train tokens); sequence length {test['sequence_length']}; "
          f"test OOV {test['oov_rate']:.2%}\n"
          f"{time.perf_counter() - started:.1f} s, peak RSS {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
