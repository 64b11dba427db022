"""/stats: how the model is doing, for people: the figures of /api/stats as charts and tables."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template
from markupsafe import Markup

from sentiment.learning.stats import CachedStats
from sentiment.web.charts import Point, bars, line


def charts(stats: dict[str, Any]) -> dict[str, Markup]:
    days = stats["days"][-30:]  # the last 30 days with activity
    versions = [v for v in stats["versions"] if v["holdout_accuracy"] is not None]
    accuracies = [v["holdout_accuracy"] for v in versions]
    low = min(accuracies, default=0.0)
    high = max(accuracies, default=1.0)
    pad = max((high - low) * 0.25, 0.005)
    return {
        "verdicts": bars("verdicts", [Point(d["day"][5:], d["verdicts"]) for d in days],
                         "Verdicts per day", "How many predictions users judged each day."),
        "incorrect": line("incorrect", [Point(d["day"][5:], d["incorrect_share"])
                                        for d in days],
                          "Share of Incorrect presses per day",
                          "Of the predictions users judged each day, the share they said "
                          "were wrong."),
        "versions": line("versions", [Point(v["name"], v["holdout_accuracy"])
                                      for v in versions],
                         "Holdout accuracy of each model version",
                         "Accuracy on held-out reviews of each version, scored by the guard "
                         "before it became current.",
                         low=max(0.0, low - pad), high=min(1.0, high + pad)),
    }


def make_blueprint() -> Blueprint:
    dashboard = Blueprint("dashboard", __name__)

    @dashboard.get("/stats")
    def stats() -> str:
        cached: CachedStats = current_app.extensions["stats"]
        figures = cached.get()
        return render_template("stats.html", stats=figures, charts=charts(figures))

    return dashboard
