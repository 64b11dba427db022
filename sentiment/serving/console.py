"""``sentiment ...``: the operator commands as an installed console script.

The same commands as ``flask --app app ...`` (``model``, ``feedback``, ``db``, plus
Flask's ``routes`` and ``shell``), for a shell that has not activated the
virtual environment: ``.venv/bin/sentiment model list``.
"""

from __future__ import annotations

from flask.cli import FlaskGroup

from sentiment.web.factory import create_app


def main() -> None:
    FlaskGroup(create_app=create_app, add_version_option=False,
               help="Operator commands of the sentiment app (settings: SENTIMENT_* "
                    "variables, INSTANCE_PATH).")(prog_name="sentiment")
