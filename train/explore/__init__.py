"""``python -m train.explore``: what the aclImdb training split looks like.

The figures a sequence (deep) model needs before training: class balance,
review lengths, frequent and discriminative n-grams, how large a vocabulary
covers the text, how long a sequence holds most reviews, and how much of the
test split falls outside that vocabulary. Everything is counted in one
streaming pass over the archive (``stats``), drawn (``plots``) and written up
(``report``); ``__main__`` is the command line.
"""
