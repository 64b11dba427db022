"""/explore/: the data exploration report (``python -m train.explore``) as a page.

The report is Markdown written by the exploration run, with its plots beside
it in one folder; the page renders it (raw HTML in it is escaped) and serves
the plots from the same folder, so nothing is copied into ``static/``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from markdown_it import MarkdownIt
from markupsafe import Markup
from werkzeug.wrappers import Response

REPORT = "report.md"
# Plots the report links to: the only other files served from its folder.
PLOT_SUFFIX = ".png"


def _folder() -> Path:
    folder: Path = current_app.extensions["settings"].explore_dir
    return folder


def make_blueprint() -> Blueprint:
    explore = Blueprint("explore", __name__, url_prefix="/explore")
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")

    @explore.get("/")
    def report() -> str:
        try:
            text = (_folder() / REPORT).read_text(encoding="utf-8")
        except OSError:
            abort(404, "No exploration report here yet: run python -m train.explore, "
                       f"which writes {_folder() / REPORT}.")
        return render_template("explore.html", report=Markup(renderer.render(text)))

    @explore.get("/<name>")
    def plot(name: str) -> Response:
        if not name.endswith(PLOT_SUFFIX):
            abort(404, "The exploration report has no such file.")
        return send_from_directory(_folder(), name, max_age=3600)

    return explore
