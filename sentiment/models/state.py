"""A model's learnable state and its predictions: what versions store and compare.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np

Label = Literal["negative", "positive"]
LABELS: tuple[Literal["negative"], Literal["positive"]] = ("negative", "positive")
CLASSES = np.array([0, 1])



@dataclass(frozen=True)
class Prediction:
    label: Label
    probability: float  # of the predicted label, in [0.5, 1]
    positive: float  # probability of "positive"


@dataclass(frozen=True)
class ModelState:
    """The learnable part of the classifier: all that feedback ever changes."""

    coef: np.ndarray
    intercept: np.ndarray
    t: float

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, coef=self.coef, intercept=self.intercept, t=np.array([self.t]))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelState:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return cls(npz["coef"], npz["intercept"], float(npz["t"][0]))

    def digest(self) -> str:
        """sha256 of the whole state: equal digests mean bit-identical models."""
        h = hashlib.sha256()
        for array in (self.coef, self.intercept):
            h.update(f"{array.dtype}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(struct.pack("<d", self.t))
        return h.hexdigest()

    def equals(self, other: ModelState) -> bool:
        """Bit-for-bit equality (what exactly-once promises)."""
        return (
            self.coef.dtype == other.coef.dtype
            and np.array_equal(self.coef, other.coef)
            and np.array_equal(self.intercept, other.intercept)
            and self.t == other.t
        )
