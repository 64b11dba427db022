"""The Keras models (issue 24): recurrent, convolutional and recurrent-convolutional.

Modules, in the order they depend on one another: :mod:`.text` (words to
indices) and :mod:`.state` (named arrays) never import Keras; :mod:`.backend`
sets the process up before Keras is imported; :mod:`.architectures` builds the
models; :mod:`.engine` compiles the served one; :mod:`.served` is the
:class:`~sentiment.models.protocol.ServedModel`. docs/deep-models.md has the
figures behind every choice.
"""
