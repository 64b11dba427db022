"""The three Keras architectures, built by name from their hyper-parameters.

Training builds one with dropout; the app builds the same one with
``dropout=0`` (dropout layers have no weights, so the weight lists match) and
learns on it one verdict at a time, where dropout's random masks would make an
update depend on more than the model and the verdict.

Every layer is named, so weight paths (``cnn/conv3/kernel``) do not depend on
how many models a process built before: the saved state is matched by name.
Each model ends in a ``logit`` layer (one unit) and its sigmoid: explanations
take gradients of the logit, which does not saturate as the probability does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ARCHITECTURES = ("rnn", "cnn", "rcnn")
EMBEDDING = "embedding"
LOGIT = "logit"

# Defaults for each architecture's hyper-parameters (a preset overrides them).
# embedding_dropout: share of the embeddings' values dropped in training;
# word_dropout: share of the words whose whole vector is dropped.
DEFAULTS: dict[str, dict[str, Any]] = {
    "rnn": {"embedding_dim": 128, "cell": "gru", "units": 64, "embedding_dropout": 0.0,
            "word_dropout": 0.0},
    "cnn": {"embedding_dim": 128, "widths": [3, 4, 5], "filters": 100,
            "embedding_dropout": 0.0, "word_dropout": 0.0},
    "rcnn": {"embedding_dim": 128, "cell": "gru", "units": 64, "hidden": 100,
             "embedding_dropout": 0.0, "word_dropout": 0.0},
}


def hyper_parameters(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The architecture's defaults updated with ``overrides`` (unknown names refused)."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown architecture {name!r}; expected one of {ARCHITECTURES}")
    unknown = set(overrides or {}) - set(DEFAULTS[name])
    if unknown:
        raise ValueError(f"{name}: unknown hyper-parameters {sorted(unknown)}")
    return {**DEFAULTS[name], **(overrides or {})}


def build(name: str, vocab_size: int, seq_len: int, dropout: float,
          params: Mapping[str, Any] | None = None, initialize: bool = True) -> Any:
    """A ``keras.Model`` from int32 rows of ``seq_len`` word indices to P(positive).

    * ``rnn``: a bidirectional GRU (or LSTM) read in full, max- and mean-pooled
      over time, then dropout;
    * ``cnn`` (Kim 2014): convolutions of widths 3, 4 and 5 over the embeddings,
      ReLU, max-over-time pooling, dropout;
    * ``rcnn`` (Lai et al. 2015): each word's left context (a forward recurrent
      state up to the previous word), its embedding and its right context (a
      backward state from the next word), concatenated, projected with tanh and
      max-pooled over time, then dropout.

    ``initialize=False``: every weight starts at zero, for a model whose
    weights are loaded next. Random initialisers compile a JAX program per
    weight shape: 3 s of a worker's start-up, for values thrown away.

    Call after :func:`sentiment.models.deep.backend.prepare` (this imports Keras).
    """
    import keras
    from keras import layers

    hp = hyper_parameters(name, params)
    zero: dict[str, Any] = {} if initialize else {"kernel_initializer": "zeros",
                                                   "bias_initializer": "zeros"}
    tokens = keras.Input((seq_len,), dtype="int32", name="tokens")
    embedded = layers.Embedding(vocab_size, hp["embedding_dim"], name=EMBEDDING,
                                **({} if initialize else {"embeddings_initializer": "zeros"})
                                )(tokens)
    x = embedded
    if dropout and hp["embedding_dropout"]:
        x = layers.Dropout(hp["embedding_dropout"], name="embedding_dropout")(x)
    if dropout and hp["word_dropout"]:
        x = layers.Dropout(hp["word_dropout"], noise_shape=(None, seq_len, 1),
                           name="word_dropout")(x)
    if name == "cnn":
        pooled = [layers.GlobalMaxPooling1D(name=f"max{w}")(
                      layers.Conv1D(hp["filters"], w, activation="relu", name=f"conv{w}",
                                    **zero)(x))
                  for w in hp["widths"]]
        features = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="pools")(pooled)
    elif name == "rnn":
        states = layers.Bidirectional(_cell(hp, "rnn_cell", zero), name="birnn")(x)
        features = layers.Concatenate(name="pools")([
            layers.GlobalMaxPooling1D(name="max")(states),
            layers.GlobalAveragePooling1D(name="mean")(states),
        ])
    else:
        forward, backward = layers.Bidirectional(_cell(hp, "context_cell", zero), merge_mode=None,
                                                 name="context")(x)
        # forward[i] has read words 0..i and backward[i] words i..end; word i's left
        # context is forward[i-1] and its right context backward[i+1] (zeros at the ends).
        left = layers.Cropping1D((0, 1), name="left_crop")(
            layers.ZeroPadding1D((1, 0), name="left_pad")(forward))
        right = layers.Cropping1D((1, 0), name="right_crop")(
            layers.ZeroPadding1D((0, 1), name="right_pad")(backward))
        joined = layers.Concatenate(name="word_in_context")([left, x, right])
        latent = layers.Dense(hp["hidden"], activation="tanh", name="latent", **zero)(joined)
        features = layers.GlobalMaxPooling1D(name="max")(latent)
    if dropout:
        features = layers.Dropout(dropout, name="dropout")(features)
    logit = layers.Dense(1, name=LOGIT, **zero)(features)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(tokens, probability, name=name)


def _cell(hp: Mapping[str, Any], name: str, zero: Mapping[str, Any]) -> Any:
    from keras import layers

    if zero:
        zero = {**zero, "recurrent_initializer": "zeros"}
    if hp["cell"] == "gru":
        return layers.GRU(hp["units"], return_sequences=True, name=name, **zero)
    if hp["cell"] == "lstm":
        return layers.LSTM(hp["units"], return_sequences=True, name=name, **zero)
    raise ValueError(f"unknown recurrent cell {hp['cell']!r}; expected 'gru' or 'lstm'")
