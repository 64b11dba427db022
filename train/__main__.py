"""``python -m train``: build the model from the IMDb Large Movie Review Dataset."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from train.data import ARCHIVE_ENV, ARCHIVE_URL, DataError
from train.deep.presets import DEEP_PRESETS
from train.presets import PRESETS
from train.stopwords import MissingStopwordsError

ROOT = Path(__file__).resolve().parent.parent
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds 0..2**32-1
INTERRUPTED = 130  # the shell's exit code for a command stopped by Ctrl-C (128 + SIGINT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train the sentiment model out-of-core on aclImdb and pickle it.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS) + sorted(DEEP_PRESETS),
                        default="default",
                        help="training recipe: 'default' (ours), 'book' (the tutorial), or a "
                             "Keras model: 'rnn', 'cnn', 'rcnn' (needs requirements-deep.txt "
                             "and --out)")
    parser.add_argument("--archive", metavar="PATH",
                        help=f"local aclImdb archive; else ${ARCHIVE_ENV}; "
                             f"else download {ARCHIVE_URL}")
    parser.add_argument("--csv", type=Path, default=ROOT / "data" / "movie_data.csv",
                        help="where the shuffled CSV is written (default: data/movie_data.csv)")
    parser.add_argument("--reuse-csv", action="store_true",
                        help="train from an existing --csv instead of rebuilding it "
                             "from the archive")
    parser.add_argument("--out", type=Path,
                        help="model folder (default: pkl_objects, for the linear presets)")
    parser.add_argument("--no-save", action="store_true", help="train and report, write no pickles")
    parser.add_argument("--report-dir", type=Path, default=ROOT / "reports",
                        help="folder for train-PRESET.json and its learning-curve PNG")
    parser.add_argument("--workers", type=int, default=2, help="vectorizing processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("--copies", type=int, default=1,
                        help="replicate the corpus N times (memory check; default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.copies < 1:
        parser.error("--workers and --copies must be at least 1")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be between 0 and {MAX_SEED}")
    if args.reuse_csv and not args.csv.is_file():
        parser.error(f"--reuse-csv: {args.csv} does not exist")
    if args.preset in DEEP_PRESETS:
        if args.out is None and not args.no_save:
            parser.error(f"--preset {args.preset}: give --out DIR (pkl_objects/ holds the "
                         f"committed linear model)")
        if args.copies != 1:
            parser.error("--copies is for the linear presets")
    elif args.out is None:
        args.out = ROOT / "pkl_objects"
    return args


def print_summary(report: dict) -> None:
    print(f"\npreset {report['preset']}: {report['train_docs']:,} training reviews")
    for name, result in report["accuracy"].items():
        print(f"  accuracy {name:<12} {result['accuracy']:.4f}  ({result['n']:,} reviews)")
    for name, stage in report["stages"].items():
        rate = f"{stage['docs_per_s']:>10,.0f} docs/s" if stage["docs_per_s"] else ""
        print(f"  {name:<10} {stage['seconds']:7.2f} s {rate}")
    rss = report["peak_rss_mb"]
    cpu = report["cpu_seconds"]
    print(f"  wall {report['wall_seconds']:.2f} s; peak RSS {rss['main']:.0f} MB "
          f"(largest worker {rss['largest_worker']:.0f} MB); CPU {cpu['main']:.1f} s "
          f"+ workers {cpu['workers']:.1f} s")


@contextmanager
def ctrl_c_stops_main_process_only() -> Iterator[None]:
    """Inside, Ctrl-C raises KeyboardInterrupt in this process only.

    Ctrl-C signals the whole process group, worker processes included, and
    each would print a KeyboardInterrupt traceback of its own. The (forked)
    workers inherit this handler, so they ignore the signal and are shut down
    by the main process as it unwinds. Left alone when Ctrl-C is already
    ignored (nohup, background job) or handled by someone else.
    """
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() == main_pid:
            raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with ctrl_c_stops_main_process_only():
            out = None if args.no_save else args.out
            if args.preset in DEEP_PRESETS:
                from train.deep.train import run as run_deep

                report = run_deep(DEEP_PRESETS[args.preset], args.archive, args.csv, out,
                                  args.report_dir, seed=args.seed, skip_csv=args.reuse_csv,
                                  progress=not args.quiet)
            else:
                from train.train import run

                report = run(
                    PRESETS[args.preset], args.archive, args.csv, out, args.report_dir,
                    workers=args.workers, seed=args.seed, copies=args.copies,
                    skip_csv=args.reuse_csv, progress=not args.quiet,
                )
    except (DataError, MissingStopwordsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # temporary files are gone: removed as the stack unwound
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    print_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
