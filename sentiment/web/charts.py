"""Small SVG charts drawn on the server for the /stats page.

Hand-written rather than a charting library: the page needs two kinds of chart
(bars per day, a line over model versions), no script may run inline under the
Content-Security-Policy, and a library served to the browser would be a
dependency larger than the whole app's front end. Colours come from classes in
static/style.css, so both themes apply; every chart carries a title and a
description for screen readers, and the same figures are in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 36


@dataclass(frozen=True)
class Point:
    label: str  # along the x axis (a day, a version)
    value: float | None  # None: nothing to draw there


def _frame(name: str, title: str, description: str, body: str,
           y_labels: Sequence[tuple[float, str]]) -> Markup:
    ticks = "".join(
        f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}'
        "</text>" for y, text in y_labels)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{name}-title {name}-desc">'
        f'<title id="{name}-title">{escape(title)}</title>'
        f'<desc id="{name}-desc">{escape(description)}</desc>{ticks}{body}</svg>')


def _x_labels(points: Sequence[Point], step: float) -> str:
    every = max(1, len(points) // 8)  # at most about eight labels
    return "".join(
        f'<text class="tick" x="{LEFT + step * (i + 0.5):.1f}" y="{HEIGHT - 14}" '
        f'text-anchor="middle">{escape(p.label)}</text>'
        for i, p in enumerate(points) if i % every == 0)


def bars(name: str, points: Sequence[Point], title: str, description: str) -> Markup:
    """One bar per point, from zero; ``name``: unique in the page (its element ids)."""
    top = max((p.value or 0.0 for p in points), default=0.0) or 1.0
    plot = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    width = min(step * 0.7, 48.0)  # a few days: bars, not walls
    body = "".join(
        f'<rect class="bar" x="{LEFT + step * (i + 0.5) - width / 2:.1f}" '
        f'y="{TOP + plot * (1 - (p.value or 0) / top):.1f}" width="{width:.1f}" '
        f'height="{plot * (p.value or 0) / top:.1f}"><title>{escape(p.label)}: '
        f'{p.value or 0:,.0f}</title></rect>' for i, p in enumerate(points))
    # Whole numbers only: the middle line is drawn when it falls on one.
    ticks = (0.0, 0.5, 1.0) if top % 2 == 0 else (0.0, 1.0)
    y_labels = [(TOP + plot * (1 - f), f"{top * f:,.0f}") for f in ticks]
    return _frame(name, title, description, body + _x_labels(points, step), y_labels)


def line(name: str, points: Sequence[Point], title: str, description: str, low: float = 0.0,
         high: float = 1.0, percent: bool = True) -> Markup:
    """A line through the points that have a value, between ``low`` and ``high``."""
    plot = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)

    def y(value: float) -> float:
        return TOP + plot * (1 - (value - low) / ((high - low) or 1.0))

    shown = [(LEFT + step * (i + 0.5), y(p.value), p) for i, p in enumerate(points)
             if p.value is not None]
    path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy, _ in shown)
    dots = "".join(
        f'<circle class="dot" cx="{x:.1f}" cy="{yy:.1f}" r="3.5"><title>{escape(p.label)}: '
        f'{p.value:.1%}</title></circle>' if percent else
        f'<circle class="dot" cx="{x:.1f}" cy="{yy:.1f}" r="3.5"><title>{escape(p.label)}: '
        f'{p.value}</title></circle>' for x, yy, p in shown)
    body = (f'<polyline class="line" points="{path}"/>' if len(shown) > 1 else "") + dots
    fmt = ("{:.1%}" if high - low < 0.2 else "{:.0%}") if percent else "{:.3g}"
    y_labels = [(y(v), fmt.format(v)) for v in (low, (low + high) / 2, high)]
    return _frame(name, title, description, body + _x_labels(points, step), y_labels)
