"""The aclImdb archive -> a shuffled CSV -> a stream of minibatches.

Nothing here holds the corpus in memory: the archive is read member by member
straight from the tar (no unpacking of 50,000 files), shuffled through a fixed
number of bucket files on disk, and the CSV is read back in chunks. Memory
therefore stays flat whatever the corpus size, which is what lets the same
code train on the corpus replicated many times.
"""

from __future__ import annotations

import csv
import hashlib
import marshal
import os
import random
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

ARCHIVE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# Published checksum of the official archive (84,125,825 bytes).
ARCHIVE_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
ARCHIVE_ENV = "ACLIMDB_ARCHIVE"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sentiment-app"

CSV_COLUMNS = ("review", "sentiment", "split", "id")
SPLITS = ("train", "test")
SHUFFLE_BUCKETS = 64


class DataError(Exception):
    """A problem with the input data the user can fix; the CLI prints it in one line."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_archive(dest: Path, url: str = ARCHIVE_URL, sha256: str = ARCHIVE_SHA256) -> Path:
    """Fetch the official archive with a progress bar and check its checksum.

    The download goes to a temporary file renamed only once the checksum
    matches, so an interrupted or tampered download never passes for the data.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="aclImdb") as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {url} ({reason}); download it on a connected machine and "
            f"pass --archive PATH or set {ARCHIVE_ENV}=PATH"
        ) from exc
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"downloaded archive has sha256 {digest.hexdigest()}, expected {sha256}")
    tmp.replace(dest)
    return dest


def resolve_archive(archive: str | Path | None = None, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The archive to read: the given path, else $ACLIMDB_ARCHIVE, else a download."""
    chosen = archive or os.environ.get(ARCHIVE_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise DataError(f"archive not found: {path}")
        return path
    cached = cache_dir / "aclImdb_v1.tar.gz"
    if cached.is_file() and sha256_file(cached) == ARCHIVE_SHA256:
        return cached
    return download_archive(cached)


@dataclass(frozen=True)
class Review:
    review: str
    sentiment: int
    split: str
    id: str


def iter_archive(archive: Path) -> Iterator[Review]:
    """Labelled reviews in archive order, read straight from the tar stream."""
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not (member.isfile() and len(parts) == 4 and parts[3].endswith(".txt")):
                    continue
                _, split, label, name = parts
                if split not in SPLITS or label not in ("pos", "neg"):
                    continue
                fh = tar.extractfile(member)
                text = fh.read().decode("utf-8", errors="replace")
                yield Review(text, int(label == "pos"), split, f"{split}/{label}/{name[:-4]}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read {archive} as a tar archive: {exc}") from exc


def build_csv(archive: Path, csv_path: Path, seed: int = 0, copies: int = 1) -> dict[str, int]:
    """Write the labelled reviews of ``archive`` to ``csv_path`` in a shuffled order.

    Out-of-core shuffle: each review goes to one of a fixed number of bucket
    files chosen by a seeded RNG, then each bucket is shuffled in memory and
    appended. Buckets are spilled with ``marshal`` (exact and fast); the rows
    are CSV-encoded once. The output depends only on the archive and the seed, byte for
    byte. ``copies`` > 1 repeats the corpus (ids get a ``#k`` suffix); it
    exists to show that memory does not grow with the corpus size.
    """
    rng = random.Random(seed)
    counts = {split: 0 for split in SPLITS}
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=csv_path.parent) as tmp:
        bucket_paths = [Path(tmp) / f"bucket{i:03d}" for i in range(SHUFFLE_BUCKETS)]
        files = [open(p, "wb") for p in bucket_paths]
        try:
            for copy in range(copies):
                for r in iter_archive(archive):
                    doc_id = r.id if copy == 0 else f"{r.id}#{copy}"
                    row = (r.review, r.sentiment, r.split, doc_id)
                    marshal.dump(row, files[rng.randrange(SHUFFLE_BUCKETS)])
                    counts[r.split] += 1
        finally:
            for f in files:
                f.close()
        if counts["train"] == 0 or counts["test"] == 0:
            raise DataError(
                f"{archive} holds no labelled reviews in aclImdb/{{train,test}}/{{pos,neg}}/"
            )
        tmp_csv = csv_path.with_suffix(".csv.part")
        with open(tmp_csv, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            for path in bucket_paths:
                rows = list(_read_marshalled(path))
                rng.shuffle(rows)
                writer.writerows(rows)
        tmp_csv.replace(csv_path)
    return counts


def _read_marshalled(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as fh:
        while True:
            try:
                yield marshal.load(fh)
            except EOFError:
                return


def stream_docs(
    csv_path: Path, split: str | None = None, start: int = 0, stop: int | None = None
) -> Iterator[tuple[str, int]]:
    """(review, sentiment) pairs of the CSV, one at a time, in file order.

    ``start``/``stop`` count rows after the ``split`` filter, so "the first
    45,000 reviews" or "rows 45,000-50,000" mean the same as in the tutorial.
    """
    seen = 0
    for chunk in pd.read_csv(
        csv_path, chunksize=4096, dtype={"review": str, "sentiment": np.int8, "split": str}
    ):
        if split is not None:
            chunk = chunk[chunk["split"] == split]
        for text, label in zip(chunk["review"], chunk["sentiment"], strict=True):
            if stop is not None and seen >= stop:
                return
            if seen >= start:
                yield text, int(label)
            seen += 1


def minibatches(
    docs: Iterator[tuple[str, int]], size: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Group a document stream into (texts, labels) minibatches of ``size``."""
    texts: list[str] = []
    labels: list[int] = []
    for text, label in docs:
        texts.append(text)
        labels.append(label)
        if len(texts) == size:
            yield texts, np.asarray(labels, dtype=np.int64)
            texts, labels = [], []
    if texts:
        yield texts, np.asarray(labels, dtype=np.int64)

