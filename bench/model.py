"""The book preset and the default side by side, in one run, in one table.

``python -m bench.model`` trains both presets from the archive (end to end,
CSV included), once on the corpus and once on the corpus replicated 4 times
(peak memory must not grow with it), then loads each model as the app does
and times single-review predictions. Every figure is printed with the ratio
default/book measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import add_archive_argument, archive_or_none, library_versions, versions_line
from train.data import minibatches, stream_docs

ROOT = Path(__file__).resolve().parent.parent


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def latency_ms(model_dir: Path, csv_path: Path, n: int) -> dict[str, float]:
    """p50/p99 of one in-process prediction on real test reviews, as the app calls it."""
    from sentiment.models.linear import SentimentModel

    model = SentimentModel.load(model_dir)
    texts, _ = next(minibatches(stream_docs(csv_path, "test"), n))
    for text in texts[:50]:
        model.predict([text])  # warm-up
    times = []
    for text in texts:
        start = time.perf_counter()
        model.predict([text])
        times.append((time.perf_counter() - start) * 1000)
    return {
        "p50": float(np.percentile(times, 50)),
        "p99": float(np.percentile(times, 99)),
        "n": len(times),
    }


def train_in_subprocess(name: str, archive: Path, work: Path, copies: int, save: bool
                        ) -> dict[str, Any]:
    """``python -m train`` in its own process, so peak memory is that run's alone."""
    tag = f"{name}-x{copies}"
    command = [sys.executable, "-m", "train", "--preset", name, "--archive", str(archive),
               "--csv", str(work / f"{tag}.csv"), "--report-dir", str(work / tag),
               "--copies", str(copies), "--quiet"]
    command += ["--out", str(work / tag / "model")] if save else ["--no-save"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads((work / tag / f"train-{name}.json").read_text())


def bench_preset(name: str, archive: Path, work: Path, copies: int, latency_n: int
                 ) -> dict[str, Any]:
    report = train_in_subprocess(name, archive, work, 1, save=True)
    model_dir = work / f"{name}-x1" / "model"
    result: dict[str, Any] = {"report": report, "size_bytes": folder_size(model_dir)}
    result["latency_ms"] = latency_ms(model_dir, work / f"{name}-x1.csv", latency_n)
    if copies > 1:
        result["report_big"] = train_in_subprocess(name, archive, work, copies, save=False)
    return result


def peak(report: dict[str, Any]) -> float:
    """Peak RSS of the run: the main process plus its largest vectorizing worker."""
    rss = report["peak_rss_mb"]
    return rss["main"] + rss["largest_worker"]


def rows(
    book: dict[str, Any], default: dict[str, Any], copies: int
) -> list[tuple[str, Any, Any, str]]:
    """(figure, book, default, format) rows of the table."""
    out: list[tuple[str, Any, Any, str]] = []
    for split in book["report"]["accuracy"]:
        out.append(
            (
                f"accuracy {split}",
                book["report"]["accuracy"][split]["accuracy"],
                default["report"]["accuracy"][split]["accuracy"],
                ".4f",
            )
        )
    out.append(
        (
            "end-to-end wall time (s)",
            book["report"]["wall_seconds"],
            default["report"]["wall_seconds"],
            ".1f",
        )
    )
    for stage in default["report"]["stages"]:
        b = book["report"]["stages"].get(stage, {})
        d = default["report"]["stages"][stage]
        if d.get("docs_per_s") or b.get("docs_per_s"):
            out.append((f"{stage} docs/s", b.get("docs_per_s"), d.get("docs_per_s"), ",.0f"))
    out.append(("peak RSS 1x (MB)", peak(book["report"]), peak(default["report"]), ".0f"))
    if copies > 1:
        out.append(
            (
                f"peak RSS {copies}x (MB)",
                peak(book["report_big"]),
                peak(default["report_big"]),
                ".0f",
            )
        )
        out.append(
            (
                f"peak RSS {copies}x / 1x",
                peak(book["report_big"]) / peak(book["report"]),
                peak(default["report_big"]) / peak(default["report"]),
                ".2f",
            )
        )
    out.append(
        (
            "model size on disk (MB)",
            book["size_bytes"] / 2**20,
            default["size_bytes"] / 2**20,
            ".1f",
        )
    )
    out.append(
        ("prediction p50 (ms)", book["latency_ms"]["p50"], default["latency_ms"]["p50"], ".2f")
    )
    out.append(
        ("prediction p99 (ms)", book["latency_ms"]["p99"], default["latency_ms"]["p99"], ".2f")
    )
    return out


def print_table(table: list[tuple[str, Any, Any, str]]) -> None:
    print(f"\n| {'figure':<28} | {'book':>10} | {'default':>10} | {'default/book':>12} |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 12}|{'-' * 14}|")
    for name, b, d, fmt in table:
        ratio = f"{d / b:.3f}" if b and d else "-"
        bs = format(b, fmt) if b is not None else "-"
        ds = format(d, fmt) if d is not None else "-"
        print(f"| {name:<28} | {bs:>10} | {ds:>10} | {ratio:>12} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.model", description=__doc__.split("\n")[0]
    )
    add_archive_argument(parser)
    parser.add_argument(
        "--copies", type=int, default=4, help="corpus replication for the memory check"
    )
    parser.add_argument("--latency-n", type=int, default=2000, help="single predictions timed")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench-model.json")
    args = parser.parse_args(argv)
    archive = archive_or_none(args.archive)
    if archive is None:
        return 2
    print(versions_line())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {
            name: bench_preset(name, archive, work, args.copies, args.latency_n)
            for name in ("book", "default")
        }
    table = rows(results["book"], results["default"], args.copies)
    print_table(table)
    d = results["default"]["report"]
    print(
        f"\ndefault: {d['train_docs']:,} training reviews, official test accuracy "
        f"{d['accuracy']['test']['accuracy']:.4f}; whole pipeline {d['wall_seconds']:.1f} s"
    )
    print(
        "note: the book preset trains on 45,000 shuffled reviews of both splits, so about half "
        "of the official test split is in its training data; the default never sees a test "
        "review, and about half of the tutorial's 5,000 are default training reviews."
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "table": [{"figure": n, "book": b, "default": v} for n, b, v, _ in table],
                "versions": library_versions(),
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
