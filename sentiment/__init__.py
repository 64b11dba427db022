"""A movie-review sentiment web app that keeps learning from its users.

Floors, top down (each imports only from the floors below it):

* ``serving``: processes (gunicorn), ``python app.py``;
* ``web``: the Flask app: factory, pages, JSON API, errors, forms, limits;
* ``cli``: operator commands (``flask --app app model|feedback ...``);
* ``learning``: applies the feedback log to the live model exactly once,
  checkpoints versions, guards them;
* ``models``: the served model (vectorizer + classifier) and its state;
  ``storage``: the ordered log of predictions and verdicts;
* ``text``: tokenizer and features, shared by training and serving;
  ``settings``, ``files``, ``locks``, ``memory``: small shared parts.
"""
