"""A Keras model's learnable state as named numpy arrays: what versions store and compare.

The state is every weight of the served (dropout-free) model plus the online
optimizer's variables (plain SGD: its step counter and learning rate), in the
model's own order. It is saved with ``np.savez`` and hashed over each array's
name, dtype, shape and bytes in that order, never over the file: zip headers
carry times, and the digest must only say whether two models are the same.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# npz member names: a sortable position, then the variable's path.
SEPARATOR = "__"


@dataclass(frozen=True)
class DeepState:
    """Named arrays, in order. Callers never change them in place (they are copies)."""

    names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.arrays):
            raise ValueError(f"{len(self.names)} names for {len(self.arrays)} arrays")

    @classmethod
    def of(cls, names: Sequence[str], arrays: Sequence[Any]) -> DeepState:
        """A state holding its own copies of ``arrays`` (numpy or JAX)."""
        return cls(tuple(names), tuple(np.array(a, copy=True) for a in arrays))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        members: dict[str, Any] = {f"{i:04d}{SEPARATOR}{name}": array for i, (name, array)
                                   in enumerate(zip(self.names, self.arrays, strict=True))}
        np.savez(buf, **members)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DeepState:
        """What :meth:`to_bytes` wrote; ValueError if it is not that."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                keys = sorted(npz.files)
                arrays = tuple(npz[k] for k in keys)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"unreadable state: {exc}") from exc
        names = []
        for position, key in enumerate(keys):
            index, _, name = key.partition(SEPARATOR)
            if not name or not index.isdigit() or int(index) != position:
                raise ValueError(f"unexpected array {key!r} in the state")
            names.append(name)
        return cls(tuple(names), arrays)

    def digest(self) -> str:
        """sha256 of the whole state: equal digests mean bit-identical models."""
        h = hashlib.sha256()
        for name, array in zip(self.names, self.arrays, strict=True):
            h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def equals(self, other: Any) -> bool:
        """Bit-for-bit equality (what exactly-once promises); NaNs compare by their bits."""
        if not isinstance(other, DeepState) or self.names != other.names:
            return False
        return all(
            a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
            for a, b in zip(self.arrays, other.arrays, strict=True)
        )
