"""The archive -> CSV -> stream side of training, and the CLI's bad-input errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import tarfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.tiny_aclimdb import PER_CLASS, ROOT, SHARED_NLTK, write_archive
from train.data import (
    DataError,
    build_csv,
    download_archive,
    iter_archive,
    minibatches,
    resolve_archive,
    stream_docs,
    stream_rows,
)

pytest_plugins = ["tests.train_fixtures"]

TOTAL = 4 * PER_CLASS


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_csv(tiny_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "movie_data.csv"
    build_csv(tiny_archive, path, seed=0)
    return path


# -- reading the archive --------------------------------------------------------

def _tarfile_reviews(archive: Path) -> list[tuple[str, str]]:
    """What the standard library reads: the reference for the fast tar reader."""
    with tarfile.open(archive) as tar:
        return [(m.name, tar.extractfile(m).read().decode()) for m in tar.getmembers()
                if m.isfile() and m.name.count("/") == 3 and "/unsup/" not in m.name
                and not m.name.endswith("urls_pos.txt")]


def test_iter_archive_reads_every_labelled_review(tiny_archive: Path) -> None:
    reviews = list(iter_archive(tiny_archive))
    assert len(reviews) == TOTAL
    expected = _tarfile_reviews(tiny_archive)
    assert [(f"aclImdb/{r.id}.txt", r.review) for r in reviews] == expected
    assert {(r.split, r.sentiment) for r in reviews} == {
        ("train", 0), ("train", 1), ("test", 0), ("test", 1)
    }
    assert all(r.sentiment == int(r.id.split("/")[1] == "pos") for r in reviews)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_iter_archive_reads_other_tar_formats(tmp_path: Path, fmt: int) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", per_class=3, fmt=fmt)
    assert len(list(iter_archive(archive))) == 12


def test_iter_archive_hands_unusual_headers_to_tarfile(tmp_path: Path) -> None:
    """A pax header (here for a long, non-ASCII name) mid-archive: tarfile reads the rest."""
    archive = tmp_path / "mixed.tar"
    long_dir = "aclImdb/train/pos"
    names = [f"{long_dir}/0_9.txt", f"{long_dir}/{'é' * 120}_8.txt", f"{long_dir}/2_7.txt",
             "aclImdb/test/neg/0_1.txt"]
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for i, name in enumerate(names):
            data = f"review {i}".encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    reviews = list(iter_archive(archive))  # uncompressed tar this time
    assert [r.review for r in reviews] == ["review 0", "review 1", "review 2", "review 3"]
    assert reviews[1].id == f"train/pos/{'é' * 120}_8"


def test_a_file_that_is_not_a_tar_archive_is_a_data_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("these are not the reviews you are looking for\n" * 40)
    with pytest.raises(DataError, match="as a tar archive"):
        build_csv(text, tmp_path / "out.csv")
    zipped = tmp_path / "notes.tar.gz"
    zipped.write_bytes(gzip.compress(text.read_bytes()))
    with pytest.raises(DataError, match="as a tar archive"):
        build_csv(zipped, tmp_path / "out.csv")
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    with pytest.raises(DataError):
        build_csv(empty, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_a_truncated_archive_is_a_data_error(tiny_archive: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tiny_archive.read_bytes()[: tiny_archive.stat().st_size // 2])
    with pytest.raises(DataError):
        build_csv(cut, tmp_path / "out.csv")


def test_an_archive_without_labelled_reviews_is_a_data_error(tmp_path: Path) -> None:
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match="no labelled reviews"):
        build_csv(archive, tmp_path / "out.csv")


def test_a_missing_path_is_a_data_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(DataError, match="archive not found"):
        resolve_archive(missing)
    with pytest.raises(DataError):
        build_csv(missing, tmp_path / "out.csv")


# -- the shuffled CSV -------------------------------------------------------------

def test_build_csv_counts_and_columns(tiny_archive: Path, tiny_csv: Path, tmp_path: Path) -> None:
    counts = build_csv(tiny_archive, tmp_path / "again.csv", seed=0)
    assert counts == {"train": 2 * PER_CLASS, "test": 2 * PER_CLASS}
    frame = pd.read_csv(tiny_csv)
    assert list(frame.columns) == ["review", "sentiment", "split", "id"]
    assert len(frame) == TOTAL
    assert frame["id"].is_unique
    assert frame.groupby(["split", "sentiment"]).size().tolist() == [PER_CLASS] * 4


def test_build_csv_is_shuffled(tiny_csv: Path, tiny_archive: Path) -> None:
    ids = pd.read_csv(tiny_csv)["id"].tolist()
    archive_order = [r.id for r in iter_archive(tiny_archive)]
    assert sorted(ids) == sorted(archive_order)
    assert ids != archive_order
    # Well mixed: every stretch of 40 rows holds both splits and both labels.
    frame = pd.read_csv(tiny_csv)
    for start in range(0, TOTAL, 40):
        window = frame.iloc[start:start + 40]
        assert window["split"].nunique() == 2 and window["sentiment"].nunique() == 2


def test_build_csv_is_reproducible_byte_for_byte(tiny_archive: Path, tiny_csv: Path,
                                                 tmp_path: Path) -> None:
    build_csv(tiny_archive, tmp_path / "same.csv", seed=0)
    build_csv(tiny_archive, tmp_path / "other.csv", seed=1)
    assert sha256(tmp_path / "same.csv") == sha256(tiny_csv)
    assert sha256(tmp_path / "other.csv") != sha256(tiny_csv)
    assert sorted(pd.read_csv(tmp_path / "other.csv")["id"]) == sorted(pd.read_csv(tiny_csv)["id"])


def test_build_csv_copies_repeat_the_corpus(tiny_archive: Path, tmp_path: Path) -> None:
    counts = build_csv(tiny_archive, tmp_path / "x2.csv", copies=2)
    assert counts == {"train": 4 * PER_CLASS, "test": 4 * PER_CLASS}
    assert pd.read_csv(tmp_path / "x2.csv")["id"].str.endswith("#1").sum() == TOTAL


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_build_csv_refuses_to_write_over_the_archive(tmp_path: Path, spelling: str) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", per_class=2)
    before = sha256(archive)
    (tmp_path / "sub").mkdir()
    csv_path = {"same": archive, "dotted": tmp_path / "sub" / ".." / "a.tar.gz",
                "symlink": tmp_path / "link.csv", "hardlink": tmp_path / "hard.csv"}[spelling]
    if spelling == "symlink":
        csv_path.symlink_to(archive)
    if spelling == "hardlink":
        csv_path.hardlink_to(archive)
    with pytest.raises(DataError, match="is the archive"):
        build_csv(archive, csv_path)
    assert sha256(archive) == before


def test_build_csv_into_a_folder_is_a_data_error_and_leaves_nothing(tiny_archive: Path,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "m.csv").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        build_csv(tiny_archive, tmp_path / "m.csv")
    parent = tmp_path / "file"
    parent.write_text("")
    with pytest.raises(DataError, match="not a folder"):
        build_csv(tiny_archive, parent / "m.csv")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "m.csv"]


@given(st.text(), st.sampled_from([0, 1]), st.text(), st.text())
def test_a_csv_line_is_what_the_csv_module_writes(review: str, sentiment: int, split: str,
                                                   doc_id: str) -> None:
    import csv

    import train.data

    written = io.StringIO()
    csv.writer(written, quoting=csv.QUOTE_NONNUMERIC).writerow((review, sentiment, split,
                                                                doc_id))
    assert train.data._csv_line((review, sentiment, split, doc_id)) == written.getvalue()


def test_build_csv_interrupted_while_writing_leaves_nothing(
    tiny_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.data

    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.data, "_read_marshalled", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_csv(tiny_archive, tmp_path / "m.csv")
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_cache_folder_is_a_data_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    with pytest.raises(DataError, match="cannot use the cache folder .*--archive"):
        download_archive(not_a_folder / "sentiment-app" / "a.tar.gz", url="http://invalid./")


def test_an_interrupted_download_leaves_nothing(tiny_archive: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import train.data

    class CtrlC(nullcontext):  # the progress bar: Ctrl-C lands after the first block
        def __init__(self, **kwargs: object) -> None:
            super().__init__(self)

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.data, "tqdm", CtrlC)
    with pytest.raises(KeyboardInterrupt):
        download_archive(tmp_path / "cache" / "a.tar.gz", url=tiny_archive.as_uri())
    assert list((tmp_path / "cache").iterdir()) == []


# -- streaming --------------------------------------------------------------------

def test_stream_docs_filters_by_split(tiny_csv: Path) -> None:
    frame = pd.read_csv(tiny_csv, keep_default_na=False)
    for split in ("train", "test"):
        docs = list(stream_docs(tiny_csv, split))
        expected = frame[frame["split"] == split]
        assert [t for t, _ in docs] == expected["review"].tolist()
        assert [y for _, y in docs] == expected["sentiment"].tolist()
    assert len(list(stream_docs(tiny_csv))) == TOTAL


def test_stream_docs_start_and_stop_count_after_the_split_filter(tiny_csv: Path) -> None:
    train = list(stream_docs(tiny_csv, "train"))
    assert list(stream_docs(tiny_csv, "train", 10, 25)) == train[10:25]
    assert list(stream_docs(tiny_csv, "train", 70)) == train[70:]
    everything = list(stream_docs(tiny_csv))
    assert list(stream_docs(tiny_csv, None, 120, 160)) == everything[120:160]
    assert list(stream_docs(tiny_csv, None, 0, 0)) == []
    assert all(isinstance(t, str) and isinstance(y, int) for t, y in train)


HEADER = "review,sentiment,split,id\n"
BAD_CSVS = {
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "not utf-8": HEADER.encode() + b"\xff\xfe,1,train,1\n",
    "other columns": b"text,label\ngreat,1\n",
    "label not a number": (HEADER + "great,pos,train,1\n").encode(),
    "label not 0 or 1": (HEADER + "great,2,train,1\n").encode(),
    "row cut off": (HEADER + "great,1,train,1\nterri").encode(),
    "row cut off after its label": (HEADER + "great,1,train,1\nterrible,0").encode(),
    "quote cut off": (HEADER + 'great,1,train,1\n"terrible, and').encode(),
}


@pytest.mark.parametrize("name", BAD_CSVS)
def test_a_bad_csv_is_a_data_error_naming_it(tmp_path: Path, name: str) -> None:
    csv_path = tmp_path / "movie_data.csv"
    csv_path.write_bytes(BAD_CSVS[name])
    with pytest.raises(DataError) as err:
        list(stream_rows(csv_path))
    pattern = f"{re.escape(str(csv_path))} is not a training CSV .*without --reuse-csv\\)"
    assert re.fullmatch(pattern, str(err.value))  # one line, naming the file and the way out


def test_a_csv_is_read_back_as_written_whatever_its_extension(tiny_archive: Path,
                                                              tmp_path: Path) -> None:
    csv_path = tmp_path / "movie_data.csv.gz"  # plain text: pandas must not guess gzip
    build_csv(tiny_archive, csv_path)
    assert len(list(stream_rows(csv_path))) == TOTAL


def test_a_csv_broken_far_into_the_file_fails_while_streaming(tmp_path: Path) -> None:
    csv_path = tmp_path / "movie_data.csv"
    csv_path.write_text(HEADER + "fine,1,train,1\n" * 10_000 + "cut,")
    rows = stream_rows(csv_path)
    assert next(rows) == ("fine", 1, "train")  # no up-front pass over the whole file
    with pytest.raises(DataError, match="without --reuse-csv"):
        list(rows)


def test_minibatches_sizes(tiny_csv: Path) -> None:
    batches = list(minibatches(stream_docs(tiny_csv), 50))
    assert [len(texts) for texts, _ in batches] == [50, 50, 50, 10]
    assert all(len(texts) == len(y) and y.dtype == np.int64 for texts, y in batches)
    assert list(minibatches(iter([]), 10)) == []
    assert [len(t) for t, _ in minibatches(stream_docs(tiny_csv), TOTAL)] == [TOTAL]


# -- the command line on bad input ------------------------------------------------

def _train_cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m train`` in a clean environment: no archive, no cache, nothing in HOME."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"), "NLTK_DATA": str(SHARED_NLTK)}
    out = ["--csv", str(tmp_path / "m.csv"), "--out", str(tmp_path / "pkl"),
           "--report-dir", str(tmp_path / "rep"), "--quiet"]
    return subprocess.run([sys.executable, "-m", "train", *out, *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=90)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_cli_without_any_archive_exits_2_with_one_line(tmp_path: Path) -> None:
    # No --archive, no ACLIMDB_ARCHIVE, an empty cache: it tries the download,
    # which fails offline (or, online, would still need minutes: the timeout).
    line = _one_error_line(_train_cli([], tmp_path))
    assert "--archive" in line
    assert not (tmp_path / "pkl").exists()


def test_cli_with_a_missing_archive_exits_2_with_one_line(tmp_path: Path) -> None:
    line = _one_error_line(_train_cli(["--archive", "/nonexistent"], tmp_path))
    assert "archive not found: /nonexistent" in line


def test_cli_with_a_non_tar_archive_exits_2_with_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_text("not a tar file\n" * 100)
    line = _one_error_line(_train_cli(["--archive", str(bogus)], tmp_path))
    assert "as a tar archive" in line


@pytest.mark.slow
def test_cli_without_nltk_stopwords_exits_2_with_one_line(tmp_path: Path,
                                                          tiny_archive: Path) -> None:
    empty = tmp_path / "no_nltk"
    empty.mkdir()
    probe = subprocess.run(
        [sys.executable, "-c", "from nltk.corpus import stopwords; stopwords.words('english')"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(empty), "NLTK_DATA": str(empty)},
        capture_output=True, timeout=60,
    )
    if probe.returncode == 0:
        pytest.skip("NLTK finds stopwords in a system folder even with NLTK_DATA emptied")
    done = _train_cli(["--preset", "book", "--archive", str(tiny_archive)], tmp_path,
                      NLTK_DATA=str(empty))
    line = _one_error_line(done)
    assert "NLTK_DATA" in line and "stopwords" in line


def test_cli_refuses_a_csv_that_is_the_archive(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", per_class=2)
    before = sha256(archive)
    (tmp_path / "sub").mkdir()
    done = _train_cli(["--archive", str(archive),
                       "--csv", str(tmp_path / "sub" / ".." / "a.tar.gz")], tmp_path)
    assert "is the archive" in _one_error_line(done)
    assert sha256(archive) == before


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_cli_refuses_a_seed_numpy_cannot_take(seed: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from train.__main__ import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args(["--seed", seed])
    assert exit_.value.code == 2
    assert "error: --seed must be between 0 and 4294967295" in capsys.readouterr().err
    assert parse_args(["--seed", str(2**32 - 1)]).seed == 2**32 - 1


def test_cli_reusing_a_bad_csv_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(b"")
    line = _one_error_line(_train_cli(["--reuse-csv"], tmp_path))
    assert str(tmp_path / "m.csv") in line and "without --reuse-csv" in line


def test_cli_checks_output_paths_before_any_work(tmp_path: Path, tiny_archive: Path) -> None:
    # Every kind of bad output path: tests/test_train.py (run's checks).
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = _train_cli(["--archive", str(tiny_archive), "--out", str(blocker)], tmp_path)
    assert _one_error_line(done) == f"error: model folder {blocker} is not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "home"]  # no CSV built


def test_cli_with_an_unusable_cache_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache_file"
    cache.write_text("")
    line = _one_error_line(_train_cli([], tmp_path, XDG_CACHE_HOME=str(cache)))
    assert "cache folder" in line and "--archive" in line


# Runs ``python -m train``'s main() with one function replaced by a stall, so
# that Ctrl-C lands at a known stage (argv[1] names the function).
STALL = """
import signal, sys, time
from dataclasses import replace
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
import train.__main__ as cli, train.data, train.train
from tests.tiny_aclimdb import tiny_preset

def stall(*args):
    print("stalled", flush=True)
    time.sleep(60)

module, name = sys.argv.pop(1).rsplit(".", 1)
setattr(sys.modules[module], name, stall)
cli.PRESETS["default"] = replace(tiny_preset("default"), stopwords="none")
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("stage", ["train.data._read_marshalled",  # writing the CSV
                                   "train.train.count_documents"])  # workers hashing
@pytest.mark.slow
def test_cli_ctrl_c_exits_130_with_one_line_and_leaves_nothing(tmp_path: Path,
                                                               tiny_archive: Path,
                                                               stage: str) -> None:
    """Ctrl-C in a terminal signals the whole process group: worker processes too."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    args = ["--archive", str(tiny_archive), "--csv", str(tmp_path / "data" / "m.csv"),
            "--out", str(tmp_path / "pkl"), "--report-dir", str(tmp_path / "rep"), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-c", STALL, stage, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == "stalled\n", proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, err) == (130, "interrupted\n")
    assert list(tmp.iterdir()) == []  # the training's temporary folder is gone
    left = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert left == ([] if stage.startswith("train.data") else ["m.csv"])  # no buckets, no part
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "tmp"]
