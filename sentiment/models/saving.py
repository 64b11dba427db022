"""Writing a trained base model: the files training leaves in ``pkl_objects/``.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier

from sentiment.files import atomic_write, sha256_bytes
from sentiment.text.spec import ColumnMap


def prepare_for_serving(clf: SGDClassifier, online: dict[str, Any]) -> SGDClassifier:
    """Turn a trained classifier into the one the app keeps learning with.

    Training averages the SGD iterates; feedback must instead move the model
    noticeably, one review at a time, so the served classifier continues from
    the averaged weights with plain SGD and the online step size from the
    preset. Averaging buffers are dropped: they would double the pickle.
    """
    served = copy.deepcopy(clf)
    if served.average:
        for name in ("_standard_coef", "_average_coef",
                     "_standard_intercept", "_average_intercept"):
            if hasattr(served, name):
                delattr(served, name)
    served.set_params(average=False, **online)
    return served


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of an ``.npy`` file."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def save_base(
    out_dir: Path,
    classifier: SGDClassifier,
    stopwords: Sequence[str],
    weights: np.ndarray | None,
    columns: ColumnMap | None,
    manifest: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write the base model's files, each atomically, manifest (with checksums) last.

    ``weights`` and ``columns`` go to the files the manifest's vectorizer
    names, where :func:`vectorizer.load_vectorizer` reads them back.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "classifier.pkl": pickle.dumps(classifier, protocol=pickle.HIGHEST_PROTOCOL),
        "stopwords.pkl": pickle.dumps(list(stopwords), protocol=pickle.HIGHEST_PROTOCOL),
    }
    if weights is not None:
        files[manifest["vectorizer"]["feature_weights"]] = npy_bytes(weights)
    if columns is not None:
        files[manifest["vectorizer"]["columns"]] = npy_bytes(columns.kept.astype(np.int32))
    files.update(extra_files or {})
    for stale in ("feature_weights.npy", "columns.npy", "holdout.csv.gz"):
        if stale not in files:
            (out_dir / stale).unlink(missing_ok=True)
    for name, data in files.items():
        atomic_write(out_dir / name, data)
    manifest = {**manifest, "files": {name: sha256_bytes(data) for name, data in files.items()}}
    manifest["size_bytes"] = sum(len(d) for d in files.values())
    atomic_write(out_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest
