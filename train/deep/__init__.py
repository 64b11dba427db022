"""Offline training of the Keras presets (``python -m train --preset rnn|cnn|rcnn``).

Imports no Keras until a preset is trained: ``python -m train --help`` and the
linear presets stay fast without the deep requirements installed.
"""
