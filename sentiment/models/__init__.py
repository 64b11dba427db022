"""The served models: one protocol (:mod:`.protocol`), a linear model and Keras models.

A model folder's ``manifest.json`` says which kind it holds (``"kind"``:
``"linear"``, the default when absent, ``"keras"``, or ``"ensemble"``: Keras
models answering together).
"""

from __future__ import annotations

import json
from pathlib import Path

from sentiment.models.protocol import ServedModel

LINEAR = "linear"
KERAS = "keras"
ENSEMBLE = "ensemble"  # sentiment.models.deep.ensemble.ENSEMBLE, without importing it


def model_kind(model_dir: Path) -> str:
    """The kind of model ``model_dir`` holds (OSError, ValueError if it has no manifest)."""
    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
    kind = manifest.get("kind", LINEAR)
    if kind not in (LINEAR, KERAS, ENSEMBLE):
        raise ValueError(f"{model_dir}: unknown model kind {kind!r} in manifest.json")
    return str(kind)


def load_model(model_dir: Path) -> ServedModel:
    """The model saved in ``model_dir``, checked against its manifest's checksums."""
    kind = model_kind(model_dir)
    if kind == KERAS:
        from sentiment.models.deep.served import DeepModel  # Keras only when asked for

        return DeepModel.load(model_dir)
    if kind == ENSEMBLE:
        from sentiment.models.deep.ensemble import EnsembleModel

        return EnsembleModel.load(model_dir)
    from sentiment.models.linear import SentimentModel

    return SentimentModel.load(model_dir)


def shares_across_fork(model_dir: Path) -> bool:
    """Whether a server may load this model before forking its workers.

    The linear model is numpy arrays, shared by the workers page for page. A
    Keras backend that has run anything before a fork deadlocks in the child
    (docs/deep-backend-study.md), so each worker loads a deep model (or an
    ensemble of them) itself.
    """
    return model_kind(model_dir) == LINEAR
