"""A tiny generated aclImdb archive, scaled-down presets and a helper to train on them.

The real archive takes minutes to train on and may be absent; a generated one
in the official layout (``aclImdb/{train,test}/{pos,neg}/ID_RATING.txt``)
exercises exactly the same code, from the tar reader to the pickles, in a few
seconds. Its reviews use a clearly positive or negative vocabulary, so any
working pipeline must score them almost perfectly: a low score means a bug,
not a hard dataset.

The pytest fixtures built on these live in ``tests/train_fixtures.py``.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.fakes import NEGATIVE, NEUTRAL, POSITIVE, make_review
from train.presets import OFFICIAL_TEST, PRESETS, SHORT_TEST, EvalSet, Preset

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REAL_ARCHIVE = SHARED / "data" / "aclImdb_v1_labeled.tar.gz"
SHARED_NLTK = SHARED / "nltk_data"

if SHARED_NLTK.is_dir():
    os.environ.setdefault("NLTK_DATA", str(SHARED_NLTK))

PER_CLASS = 40  # reviews per class per split: 160 in all

def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_300_000_000
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))


def write_archive(
    path: Path, per_class: int = PER_CLASS, seed: int = 0, fmt: int = tarfile.GNU_FORMAT
) -> Path:
    """An aclImdb-layout ``.tar.gz`` with ``per_class`` reviews per class and split.

    Besides the reviews it holds what the real archive holds and the reader
    must skip: folders, README, imdb.vocab, urls files and an unlabelled folder.
    """
    rng = random.Random(seed)
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        _add(tar, "aclImdb")
        _add(tar, "aclImdb/README", b"Large Movie Review Dataset (generated for tests)\n")
        _add(tar, "aclImdb/imdb.vocab", "\n".join(POSITIVE + NEGATIVE + NEUTRAL).encode())
        for split in ("train", "test"):
            _add(tar, f"aclImdb/{split}")
            _add(tar, f"aclImdb/{split}/urls_pos.txt", b"http://www.imdb.com/title/tt0000001/\n")
            for label in ("pos", "neg"):
                _add(tar, f"aclImdb/{split}/{label}")
                for i in range(per_class):
                    rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                    text = make_review(rng, int(label == "pos"))
                    _add(tar, f"aclImdb/{split}/{label}/{i}_{rating}.txt", text.encode())
        _add(tar, "aclImdb/train/unsup")
        _add(tar, "aclImdb/train/unsup/0_0.txt", b"An unlabelled review.")
    return path


def tiny_preset(name: str) -> Preset:
    """The named preset scaled to the tiny archive; everything else as in production.

    Only sizes change (holdout, minibatch, training rows, the tutorial's
    rows 45,000-50,000 become 120-160, fewer hash buckets): the recipe,
    stopwords, n-grams and SGD settings are the real ones.
    """
    preset = PRESETS[name]
    tutorial = EvalSet("tutorial_5k", "the tutorial's split, scaled: rows 120-160",
                       start=120, stop=160)
    evaluations = (OFFICIAL_TEST, tutorial, SHORT_TEST)
    vectorizer = replace(preset.vectorizer, n_features=2**18)
    if name == "book":
        return replace(preset, vectorizer=vectorizer, train_stop=120, batch_size=20,
                       curve_set=tutorial, evaluations=evaluations)
    return replace(preset, vectorizer=vectorizer, holdout=16, batch_size=16,
                   evaluations=evaluations)


@dataclass(frozen=True)
class TrainedRun:
    """Where one training run on the tiny archive left its outputs."""

    preset: Preset
    csv: Path
    out: Path
    reports: Path
    report: dict[str, Any]


def train_tiny(name: str, archive: Path, folder: Path, seed: int = 0) -> TrainedRun:
    """``train.train.run`` on the tiny archive, from the archive to pickles and report."""
    from train.train import run

    preset = tiny_preset(name)
    folder.mkdir(parents=True, exist_ok=True)
    report = run(preset, archive, folder / "movie_data.csv", folder / "pkl", folder / "reports",
                 workers=2, seed=seed, progress=False)
    return TrainedRun(preset, folder / "movie_data.csv", folder / "pkl", folder / "reports", report)
