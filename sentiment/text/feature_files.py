"""Labelled feature rows on disk: training's feature cache and the guard's vectorised holdout.
"""


from __future__ import annotations

from typing import BinaryIO

import numpy as np
import scipy.sparse as sp


def write_features(fh: BinaryIO, X: sp.csr_matrix, y: np.ndarray,
                   member: np.ndarray | None = None) -> None:
    """Labelled feature rows as consecutive ``.npy`` records, for :func:`read_features`.

    The on-disk form of training's feature cache and of the app's vectorised
    holdout. Plain ``np.save`` records rather than an ``.npz``: no zip
    directory and no CRC pass, so reading back is about twice as fast.
    ``member``: an optional per-row table (training's evaluation-set membership).
    """
    no_member = np.zeros(0, dtype=bool)  # 1-d: "no member table"
    for array in (X.data, X.indices, X.indptr, np.asarray(X.shape, dtype=np.int64), y,
                  no_member if member is None else member):
        np.save(fh, array, allow_pickle=False)


def read_features(fh: BinaryIO) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
    """What :func:`write_features` wrote: (features, labels, member table or None)."""
    data, indices, indptr, shape, y, member = (
        np.load(fh, allow_pickle=False) for _ in range(6)
    )
    X = sp.csr_matrix((data, indices, indptr), shape=tuple(int(n) for n in shape))
    return X, y, member if member.ndim == 2 else None
