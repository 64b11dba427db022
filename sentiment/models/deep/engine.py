"""The served Keras model's compiled functions: predict, one SGD step, explain.

Pure functions of the model's variables, compiled once per architecture and
shared by every :class:`~sentiment.models.deep.served.DeepModel` of it (the
base, the live model, the guard's and ``model rebuild``'s clones): each model
keeps its own arrays and passes them in, so a clone costs no compilation and
the functions always read the variables of the call (never stale ones).
Nothing donates its input buffers, so a prediction holding the arrays of
before an update can never meet freed memory ("Invalid buffer").

Why not ``model.predict`` and ``train_on_batch``: each clone would recompile,
and ``predict`` in a request thread costs more than the arithmetic. The step
is the one ``train_on_batch`` takes with ``keras.optimizers.SGD`` (the same
``stateless_apply``), on the binary cross-entropy computed from the logit:
from the sigmoid's output Keras would clip the probability, and a review the
model is sure of, and wrong about, would give no gradient at all.

Every input shape compiles once, so batches are padded to :data:`BATCH_SIZES`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sentiment.models.deep import backend
from sentiment.models.deep.architectures import EMBEDDING, LOGIT, build

# Predictions run on batches of these sizes (the last one padded): one compile each.
BATCH_SIZES = (1, 16, 128)

Params = tuple[Any, ...]  # JAX arrays: the trainable variables, then the optimizer's

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(architecture: str, vocab_size: int, seq_len: int,
               params: Mapping[str, Any], online: Mapping[str, Any]) -> Engine:
    """The process's engine for this configuration (built, and compiled, once)."""
    key = json.dumps([architecture, vocab_size, seq_len, params, online], sort_keys=True)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = Engine(architecture, vocab_size, seq_len, params, online)
        return _engines[key]


class Engine:
    """One dropout-free Keras model of an architecture and its jitted functions."""

    def __init__(self, architecture: str, vocab_size: int, seq_len: int,
                 params: Mapping[str, Any], online: Mapping[str, Any]) -> None:
        """``online``: ``learning_rate`` of the SGD step, and ``layers``: "embedding"
        (feedback moves only the vectors of the review's words) or "all"."""
        keras = backend.prepare()  # before the first array: pins this process to one CPU
        import jax
        import jax.numpy as jnp

        full = build(architecture, vocab_size, seq_len, dropout=0.0, params=params,
                     initialize=False)
        # The same layers and variables, up to the logit (see the module's docstring).
        model = keras.Model(full.inputs, full.get_layer(LOGIT).output, name=architecture)
        if any("seed_generator" not in v.path for v in model.non_trainable_variables):
            raise ValueError(f"{architecture}: non-trainable weights are not supported")
        self.seq_len = seq_len
        self.optimizer = keras.optimizers.SGD(learning_rate=float(online["learning_rate"]))
        self.optimizer.build(model.trainable_variables)
        self.weight_names = tuple(v.path for v in model.trainable_variables)
        self.names = self.weight_names + tuple(v.path for v in self.optimizer.variables)
        variables = [*model.trainable_variables, *self.optimizer.variables]
        # (dtype, shape) of each array of the state, to check saved states against.
        self.specs = tuple((np.dtype(v.dtype), tuple(v.shape)) for v in variables)
        self._non_trainable = [v.value for v in model.non_trainable_variables]
        n_weights = len(self.weight_names)
        optimizer = self.optimizer
        constants = self._non_trainable

        def logits(weights: Params, x: Any) -> Any:
            out, _ = model.stateless_call(list(weights), constants, x, training=False)
            return out[:, 0]

        layers = online.get("layers", "all")
        if layers not in ("all", "embedding"):
            raise ValueError(f"online layers must be 'all' or 'embedding', got {layers!r}")
        learned = [i for i, name in enumerate(self.weight_names)
                   if layers == "all" or name.startswith(f"{EMBEDDING}/")]

        def step(params: Params, x: Any, y: Any) -> Params:
            weights, opt = list(params[:n_weights]), list(params[n_weights:])

            def loss(trained: list[Any]) -> Any:
                w = list(weights)
                for i, value in zip(learned, trained, strict=True):
                    w[i] = value
                z = logits(tuple(w), x)
                return jnp.mean(jax.nn.softplus(z) - y * z)  # cross-entropy from the logit

            # Weights not learned get a zero gradient: SGD leaves them exactly as they were.
            grads = [jnp.zeros_like(w) for w in weights]
            for i, g in zip(learned, jax.grad(loss)([weights[i] for i in learned]), strict=True):
                grads[i] = g
            weights, opt = optimizer.stateless_apply(opt, grads, weights)
            return (*weights, *opt)

        # Gradient x input on the embeddings: the part of the logit each word carries.
        embedding = full.get_layer(EMBEDDING)
        head = keras.Model(embedding.output, full.get_layer(LOGIT).output)
        position = {id(v): i for i, v in enumerate(model.trainable_variables)}
        head_at = [position[id(v)] for v in head.trainable_variables]
        table_at = position[id(embedding.embeddings)]
        head_constants = [v.value for v in head.non_trainable_variables]

        def explain(weights: Params, x: Any) -> tuple[Any, Any]:
            vectors = jnp.take(weights[table_at], x, axis=0)
            head_weights = [weights[i] for i in head_at]

            def logit(e: Any) -> Any:
                out, _ = head.stateless_call(head_weights, head_constants, e, training=False)
                return out[0, 0]

            value, grad = jax.value_and_grad(logit)(vectors)
            return value, jnp.sum(grad * vectors, axis=-1)[0]

        self._probabilities: Callable[..., Any] = jax.jit(
            lambda weights, x: jax.nn.sigmoid(logits(weights, x)))
        self._step: Callable[..., Any] = jax.jit(step)
        self._explain: Callable[..., Any] = jax.jit(explain)
        self._n_weights = n_weights
        self._jnp = jnp

    # -- state -------------------------------------------------------------
    def fits(self, names: tuple[str, ...], arrays: Sequence[np.ndarray]) -> bool:
        """Whether named arrays are a state of this model (names, dtypes, shapes)."""
        return names == self.names and all(
            (a.dtype, a.shape) == spec for a, spec in zip(arrays, self.specs, strict=True))

    def initial_optimizer_state(self) -> list[np.ndarray]:
        """The optimizer's variables before any online step (step 0, the learning rate)."""
        return [np.asarray(v.value) for v in self.optimizer.variables]

    def to_device(self, arrays: tuple[np.ndarray, ...]) -> Params:
        """Own copies of ``arrays`` as JAX arrays (numpy arrays may change, JAX ones not)."""
        return tuple(self._jnp.array(a, copy=True) for a in arrays)

    # -- the compiled functions ---------------------------------------------
    def probabilities(self, params: Params, X: np.ndarray) -> np.ndarray:
        """P(positive) for each row of ``X``, in batches of :data:`BATCH_SIZES`."""
        weights = params[:self._n_weights]
        out = np.empty(len(X), dtype=np.float32)
        largest = BATCH_SIZES[-1]
        for start in range(0, len(X), largest):
            part = X[start:start + largest]
            size = next(s for s in BATCH_SIZES if s >= len(part))
            if size != len(part):
                part = np.concatenate(
                    [part, np.zeros((size - len(part), self.seq_len), dtype=np.int32)])
            p = np.asarray(self._probabilities(weights, part))
            out[start:start + largest] = p[:min(largest, len(X) - start)]
        return out

    def step(self, params: Params, row: np.ndarray, label: int) -> Params:
        """One SGD step on one review (shape (1, seq_len)): the online update."""
        y = np.asarray([label], dtype=np.float32)
        return tuple(self._step(params, row, y))

    def explain(self, params: Params, row: np.ndarray) -> tuple[float, np.ndarray]:
        """(logit, push of each position): push > 0 pushes towards "positive"."""
        value, pushes = self._explain(params[:self._n_weights], row)
        return float(value), np.asarray(pushes, dtype=np.float64)
