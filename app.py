"""The web app's entry point.

``python app.py`` serves it (gunicorn, one process per CPU core, on
127.0.0.1:5000; ``--help`` for options); ``flask --app app ...`` runs the
operator commands; ``from app import create_app`` builds it. The code lives in
the ``sentiment`` package: ``sentiment/web/`` for the app itself.
"""

from sentiment.web.factory import create_app

__all__ = ["create_app"]

if __name__ == "__main__":
    from sentiment.serving.main import main

    raise SystemExit(main())
