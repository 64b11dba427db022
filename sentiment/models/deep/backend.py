"""The Keras backend, set up before Keras is imported: JAX on the CPU, one CPU per process.

Why (docs/deep-backend-study.md): an online step of JAX on XLA:CPU gives the
same bits in every process only when the process runs on one CPU before JAX
makes its first array (XLA sizes its thread pool from the CPUs the process may
use; its thread flags had no effect). The feedback log must replay to the same
model in every serving process, in ``model rebuild`` and after a restart, so
every process that serves, learns or rebuilds a deep model calls
:func:`prepare` first. Training may use every core (:func:`prepare` with
``one_cpu=False``): it is reproducible run to run on one machine with the same
CPUs, not across CPU counts.

Nothing here imports Keras or JAX: this module only decides how they will start.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import cast

BACKEND = "jax"
ENVIRONMENT = {
    "KERAS_BACKEND": BACKEND,
    "JAX_PLATFORMS": "cpu",
    "OMP_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


class BackendError(RuntimeError):
    """Keras cannot be set up as the deep models need (wrong backend, started too early)."""


def one_cpu() -> int:
    """The CPU a process that learns runs on: the lowest it may use.

    Deterministic, so every process outside a server (the CLI, tests, training's
    checks) picks the same one. A server's workers are already pinned, each to
    a CPU of its own (``sentiment.serving.server``), and are left where they are.
    """
    return min(os.sched_getaffinity(0))


def pin_to_one_cpu() -> None:
    """Restrict this process to :func:`one_cpu` if it may use several."""
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {one_cpu()})


def backend_started() -> bool:
    """Whether JAX has already made its CPU client (after which pinning is too late)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # no public way to ask without starting it

    return bool(xla_bridge.backends_are_initialized())


def prepare(one_cpu: bool = True) -> ModuleType:
    """Set the environment, pin to one CPU (unless ``one_cpu`` is False), import Keras.

    Returns the ``keras`` module. Raises :class:`BackendError` if Keras was
    imported with another backend, or if one CPU is asked for but JAX already
    runs on several (its thread pool cannot shrink any more).
    """
    if one_cpu:
        if backend_started() and len(os.sched_getaffinity(0)) > 1:
            raise BackendError("JAX started before the process was pinned to one CPU: "
                               "online updates would not be reproducible")
        pin_to_one_cpu()
    for name, value in ENVIRONMENT.items():
        if name == "OMP_NUM_THREADS" and not one_cpu:
            continue
        os.environ[name] = value
    import keras

    if keras.backend.backend() != BACKEND:
        raise BackendError(f"Keras runs on {keras.backend.backend()!r}; the deep models need "
                           f"{BACKEND!r} (set KERAS_BACKEND={BACKEND} before importing keras)")
    return cast(ModuleType, keras)  # Keras has no type hints
