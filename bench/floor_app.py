"""The floor under any results page: a Flask app that does nothing but answer the form.

``python -m bench.serving --floor`` measures it beside the tutorial's app and
ours, under the same load and the same server (waitress, 4 threads): it reads
the review from the tutorial's form and echoes it into a registered Jinja
template, with no model, no database and no form library. What a page costs
on top of it is what the app itself does; what it costs, no Flask page
served so can cost less (docs/measurements.md).

    python -m bench.floor_app --port 8080
"""

from __future__ import annotations

import argparse
import logging
import sys

from flask import Flask, render_template, request
from jinja2 import DictLoader

from bench.tutorial_app import THREADS

TEMPLATES = {"page.html": """\
<!doctype html>
<html><head><title>Movie review</title></head>
<body><p>{{ review|length }} characters</p><blockquote>{{ review }}</blockquote></body></html>
"""}


def create_app() -> Flask:
    app = Flask(__name__)
    app.jinja_loader = DictLoader(TEMPLATES)

    @app.route("/", methods=["GET", "POST"])
    @app.route("/results", methods=["POST"])
    def page() -> str:
        return render_template("page.html", review=request.form.get("moviereview", ""))

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_app",
                                     description="Serve an empty Flask page (a benchmark "
                                                 "floor) with waitress, 4 threads.")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="default: 5000")
    args = parser.parse_args(argv)
    from waitress import serve

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as the tutorial's app
    serve(create_app(), host=args.host, port=args.port, threads=THREADS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
