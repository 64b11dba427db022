"""The aclImdb archive -> a shuffled CSV -> a stream of minibatches.

Nothing here holds the corpus in memory: the archive is read member by member
straight from the tar (no unpacking of 50,000 files), shuffled through a fixed
number of bucket files on disk, and the CSV is read back in chunks. Memory
therefore stays flat whatever the corpus size, which is what lets the same
code train on the corpus replicated many times.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import marshal
import os
import random
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # $XDG_CACHE_HOME is a file, or somewhere we cannot write
        raise DataError(
            f"cannot use the cache folder {dest.parent} to download the archive "
            f"({exc.strerror or exc}); pass --archive PATH or set {ARCHIVE_ENV}=PATH"
        ) from exc
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
    except BaseException:  # Ctrl-C: leave no partial download behind
        tmp.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"downloaded archive has sha256 {digest.hexdigest()}, expected {sha256}")
    tmp.replace(dest)
    return dest


def given_archive(archive: str | Path | None = None) -> Path | None:
    """The archive the user named (the argument, else $ACLIMDB_ARCHIVE), if any; unchecked.

    Separate from :func:`resolve_archive` so outputs can be checked against
    it before anything is downloaded or read.
    """
    chosen = archive or os.environ.get(ARCHIVE_ENV)
    return Path(chosen).expanduser() if chosen else None


def resolve_archive(archive: str | Path | None = None, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The archive to read: the given path, else $ACLIMDB_ARCHIVE, else a download."""
    path = given_archive(archive)
    if path is not None:
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
    """Labelled reviews in archive order, read straight from the (compressed) tar stream."""
    try:
        with _open_decompressed(Path(archive)) as stream:
            for name, data in _tar_files(stream):
                parts = name.split("/")
                if not (len(parts) == 4 and parts[3].endswith(".txt")):
                    continue
                _, split, label, base = parts
                if split not in SPLITS or label not in ("pos", "neg"):
                    continue
                text = data.decode("utf-8", errors="replace")
                yield Review(text, int(label == "pos"), split, f"{split}/{label}/{base[:-4]}")
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"cannot read {archive} as a tar archive: {exc}") from exc


def _open_decompressed(path: Path) -> BinaryIO:
    """The archive's tar bytes, whatever the compression (what ``tarfile``'s "r|*" accepts)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00")):
        return lzma.open(path, "rb")
    return open(path, "rb")


_BLOCK = 512
_FAST_TYPES = {b"0": True, b"\0": True, b"7": True, b"5": False}  # type -> has data blocks


def _tar_files(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each regular file of a tar stream, in archive order.

    ``tarfile`` parses every header in Python objects and was half of the
    ``csv`` stage; this reads the plain ustar/GNU headers that make up
    aclImdb (regular files and folders) directly. At the first header it does
    not handle itself (pax or GNU long names, links, sparse files, a bad
    checksum...), it hands the rest of the stream to ``tarfile``, so unusual
    archives read exactly as before and broken ones fail the same way.
    """
    first = True
    while True:
        header = stream.read(_BLOCK)
        if not header and not first:
            return  # no end-of-archive blocks: tarfile accepts that too
        if len(header) == _BLOCK and header.count(0) == _BLOCK:
            return  # end-of-archive marker
        member = _plain_header(header)
        if member is None:
            yield from _tarfile_rest(header, stream)
            return
        first = False
        name, size, has_data = member
        if has_data:
            data = stream.read(size)
            if len(data) != size:
                raise tarfile.ReadError("unexpected end of data")
            stream.read(-size % _BLOCK)
            yield name, data


def _plain_header(header: bytes) -> tuple[str, int, bool] | None:
    """(name, size, is a regular file) of a plain header; None when ``tarfile`` must decide."""
    if len(header) != _BLOCK or header[156:157] not in _FAST_TYPES or header[124] & 0x80:
        return None
    try:
        checksum = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    unsigned = 256 + sum(header) - sum(header[148:156])
    if checksum != unsigned:  # some old tars sum signed chars
        high = sum(1 for b in header[:148] + header[156:] if b > 127)
        if checksum != unsigned - 256 * high:
            return None
    has_data = _FAST_TYPES[header[156:157]]
    if header[156:157] == b"\0" and name.endswith("/"):
        has_data = False  # old V7 folder
    if not has_data:
        name = name.rstrip("/")
    if prefix:
        name = f"{prefix}/{name}"
    return name, size, has_data


class _Prepended:
    """A read-only stream: ``head`` bytes, then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = head
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.stream.read(size)
        if size < 0:
            out, self.head = self.head + self.stream.read(), b""
            return out
        out, self.head = self.head[:size], self.head[size:]
        return out + (self.stream.read(size - len(out)) if len(out) < size else b"")


def _tarfile_rest(header: bytes, stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=_Prepended(header, stream), mode="r|") as tar:
        for member in tar:
            if member.isfile():
                yield member.name, tar.extractfile(member).read()


def check_writable_folder(folder: Path, what: str) -> None:
    """Fail now, in one line, if files cannot be written in ``folder``.

    Training takes minutes; a wrong output path should not cost them. Nothing
    is created here (the folder is made when written to), so a run that fails
    later leaves no empty folders behind: the nearest existing ancestor must
    be a folder in which a (temporary) file can be created.
    """
    folder = Path(folder).absolute()
    existing = folder
    while not os.path.lexists(existing):
        existing = existing.parent
    if existing == folder and not existing.is_dir():
        raise DataError(f"{what} {folder} is not a folder")
    if not existing.is_dir():
        raise DataError(f"{what} {folder} cannot be created: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise DataError(f"{what} {folder}: cannot write in {existing} "
                        f"({exc.strerror or exc})") from exc


def check_csv_target(csv_path: Path, archive: str | Path | None = None) -> None:
    """Fail now if the CSV cannot be written at ``csv_path`` or would replace ``archive``.

    Writing the CSV over the archive it is built from would lose the archive
    (the same path, a link, or any path resolving to the same file).
    """
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        raise DataError(f"CSV {csv_path} is a folder; give a file name")
    if archive is not None and _same_file(archive, csv_path):
        raise DataError(f"CSV {csv_path} is the archive {archive}: writing it would "
                        f"destroy the archive; choose another --csv")
    check_writable_folder(csv_path.parent, "CSV folder")


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: nothing to overwrite
        return False


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
    check_csv_target(csv_path, archive)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=csv_path.parent) as tmp:
        bucket_paths = [Path(tmp) / f"bucket{i:03d}" for i in range(SHUFFLE_BUCKETS)]
        with ExitStack() as stack:
            files = [stack.enter_context(open(p, "wb")) for p in bucket_paths]
            for copy in range(copies):
                for r in iter_archive(archive):
                    doc_id = r.id if copy == 0 else f"{r.id}#{copy}"
                    row = (r.review, r.sentiment, r.split, doc_id)
                    marshal.dump(row, files[rng.randrange(SHUFFLE_BUCKETS)])
                    counts[r.split] += 1
        if counts["train"] == 0 or counts["test"] == 0:
            raise DataError(
                f"{archive} holds no labelled reviews in aclImdb/{{train,test}}/{{pos,neg}}/"
            )
        # Written beside the buckets: removed with them if anything fails.
        tmp_csv = Path(tmp) / "shuffled.csv"
        with open(tmp_csv, "w", newline="", encoding="utf-8") as out:
            out.write(",".join(f'"{column}"' for column in CSV_COLUMNS) + "\r\n")
            for path in bucket_paths:
                rows = list(_read_marshalled(path))
                rng.shuffle(rows)
                out.write("".join(map(_csv_line, rows)))
        tmp_csv.replace(csv_path)
    return counts


def _csv_line(row: tuple[str, int, str, str]) -> str:
    """One CSV row, every text quoted: what ``csv.writer`` with ``QUOTE_NONNUMERIC``
    writes (tested), by ``str.replace`` where the csv module scans each character
    in turn (1.3 of the ``csv`` stage's 3.0 s under the profiler)."""
    review, sentiment, split, doc_id = row
    return (f'"{review.replace(QUOTE, DOUBLED)}",{sentiment:d},'
            f'"{split.replace(QUOTE, DOUBLED)}","{doc_id.replace(QUOTE, DOUBLED)}"\r\n')


QUOTE, DOUBLED = '"', '""'


def _read_marshalled(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as fh:
        while True:
            try:
                yield marshal.load(fh)
            except EOFError:
                return


def stream_rows(csv_path: Path) -> Iterator[tuple[str, int, str]]:
    """(review, sentiment, split) of every CSV row, in file order, read in chunks.

    A CSV given with ``--reuse-csv`` may be anything: empty, binary, other
    columns, a row cut off. Such problems only show up as chunks are read, so
    they are turned into a :class:`DataError` here, as they are met, rather
    than by reading the whole file once more up front.
    """
    try:
        with pd.read_csv(
            csv_path, chunksize=4096, usecols=["review", "sentiment", "split"],
            dtype={"review": str, "sentiment": np.int8, "split": str},
            na_filter=False,  # a review reading "NA" or "null" is text, not a missing value
            index_col=False,  # a row with extra fields must not turn column 1 into an index
            compression=None,  # build_csv writes plain text, whatever the file's extension
        ) as reader:
            for chunk in reader:
                _check_values(csv_path, chunk)
                yield from zip(chunk["review"], chunk["sentiment"].tolist(), chunk["split"],
                               strict=True)
    except ValueError as exc:  # pandas' EmptyDataError and ParserError, UnicodeDecodeError
        raise _bad_csv(csv_path, str(exc)) from exc


def _check_values(csv_path: Path, chunk: pd.DataFrame) -> None:
    """Refuse labels scikit-learn would choke on deep in training, and unknown splits.

    A row cut off after its label has an empty split; it would be silently
    left out of training but counted by evaluation sets that take every split.
    """
    for column, allowed in (("sentiment", (0, 1)), ("split", SPLITS)):
        bad = ~chunk[column].isin(allowed)
        if bad.any():
            value = str(chunk[column][bad].iloc[0])
            expected = " or ".join(map(str, allowed))
            raise _bad_csv(csv_path, f"{column} {value!r} is not {expected}")


def _bad_csv(csv_path: Path, reason: str) -> DataError:
    reason = (reason.strip().splitlines() or ["unreadable"])[0]
    reason = reason if len(reason) <= 200 else reason[:200] + "..."
    return DataError(f"{csv_path} is not a training CSV ({reason}); "
                     "rebuild it from the archive (without --reuse-csv)")


def stream_docs(
    csv_path: Path, split: str | None = None, start: int = 0, stop: int | None = None
) -> Iterator[tuple[str, int]]:
    """(review, sentiment) pairs of the CSV, one at a time, in file order.

    ``start``/``stop`` count rows after the ``split`` filter, so "the first
    45,000 reviews" or "rows 45,000-50,000" mean the same as in the tutorial.
    """
    seen = 0
    for text, label, row_split in stream_rows(csv_path):
        if split is not None and row_split != split:
            continue
        if stop is not None and seen >= stop:
            return
        if seen >= start:
            yield text, label
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

