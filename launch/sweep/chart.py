"""The sweep page's chart: mean score against checkpoint as inline SVG, one line per category plus overall.

Every checkpoint has a place on the x axis, in sweep order, evenly spaced (steps need not be evenly spaced, and a
sweep ordered by name has none). The y axis spans the figures and their intervals, padded, on a round tick step,
within the judge's 0-10 scale. Each line is a `<g class="series">` holding its 95 % band, its line and a point per
checkpoint with a tooltip; a mean that does not exist (no sample of that category scored) breaks the line there.
Standard library only.
"""

from __future__ import annotations

import math
from typing import Any

from shards.report.numbers import interval, number
from shards.report.page import escape

COLOURS = ("#1d1d1f", "#4f7cff", "#e4572e", "#2a9d8f", "#f4a259", "#8e44ad", "#c9184a", "#588157", "#b08968",
           "#0096c7")
LEFT, TOP, PLOT_H, SLOT = 56, 16, 300, 72     # px: y axis labels, top margin, plot height, width per checkpoint
MIN_PLOT_W = 560                               # px: a sweep of three checkpoints still gets a readable chart
TICK_STEPS = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0)


def series(result: dict[str, Any]) -> list[tuple[str, list[tuple[float | None, list[float] | None, str]]]]:
    """(label, per checkpoint (mean, interval, count text)) for the overall mean, then each category."""
    rows = result["checkpoints"]
    found = [("overall (mean over samples)",
              [(r["mean_over_samples"], r["mean_over_samples_ci95"], f"{r['counts']['scored']} scored") for r in rows])]
    for c in result["categories"]:
        figures = [r["categories"].get(c) for r in rows]
        found.append((c, [(None, None, "no sample") if f is None else
                          (f["mean"], f["mean_ci95"], f"{f['counts']['scored']} scored") for f in figures]))
    return found


def y_range(values: list[float]) -> tuple[float, float, float]:
    """(low, high, tick step) of the y axis: the values padded by a tenth of their span (at least 0.25), on a
    step that gives four to ten ticks, within 0-10."""
    if not values:
        return 0.0, 10.0, 2.0
    low, high = min(values), max(values)
    pad = max((high - low) / 10, 0.25)
    low, high = max(0.0, low - pad), min(10.0, high + pad)
    step = next((s for s in TICK_STEPS if (high - low) / s <= 10), 2.0)
    return max(0.0, math.floor(low / step) * step), min(10.0, math.ceil(high / step) * step), step


def chart(result: dict[str, Any]) -> str:
    """The chart section: the checkboxes that pick its lines, then the SVG."""
    lines = series(result)
    names = [r["name"] for r in result["checkpoints"]]
    values = [v for _, points in lines for mean, bounds, _ in points for v in [mean, *(bounds or [])]
              if v is not None]
    low, high, step = y_range(values)
    label_h = 14 + 6.5 * min(max(map(len, names)), 32)
    plot_w = max(MIN_PLOT_W, SLOT * len(names))
    width, height = LEFT + plot_w + 16, TOP + PLOT_H + label_h

    def x(i: int) -> float:
        return LEFT + plot_w * (i + 0.5) / len(names)

    def y(v: float) -> float:
        return TOP + PLOT_H * (high - v) / (high - low)

    drawn = [_series(i, label, points, names, x, y) for i, (label, points) in enumerate(lines)]
    picks = "".join(f'<label><input type="checkbox" data-series="{i}" checked><span class="swatch" style="background:'
                    f'{COLOURS[i % len(COLOURS)]}"></span>{escape(label)}</label>' for i, (label, _) in enumerate(lines))
    return (f'<section id="chart"><h2>Mean score per checkpoint, with 95% bootstrap intervals</h2>'
            f'<div class="series-pick" id="series-pick">{picks}</div><div class="chart">'
            f'<svg width="{width}" height="{height:.0f}" role="img">{_axes(low, high, step, names, x, y, width)}'
            f'{"".join(drawn)}</svg></div></section>')


def _axes(low: float, high: float, step: float, names: list[str], x, y, width: float) -> str:
    ticks = [low + k * step for k in range(round((high - low) / step) + 1)]
    grid = "".join(f'<line x1="{LEFT}" x2="{width - 8}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>' for t in ticks)
    labels = "".join(
        f'<g class="tick" data-checkpoint="{escape(name)}"><line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP + PLOT_H}" '
        f'y2="{TOP + PLOT_H + 5}" stroke="#999"/><text transform="translate({x(i) + 4:.1f},{TOP + PLOT_H + 12}) '
        f'rotate(35)">{escape(_short(name))}<title>{escape(name)}</title></text></g>' for i, name in enumerate(names))
    return (f'{grid}<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + PLOT_H}" stroke="#999"/>'
            f'<line x1="{LEFT}" x2="{width - 8}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H}" stroke="#999"/>{labels}')


def _short(name: str) -> str:
    return name if len(name) <= 32 else name[:31] + "…"


def _segments(points: list) -> list[list[int]]:
    """Runs of consecutive checkpoints that have a mean: each is drawn as one piece of line."""
    runs: list[list[int]] = [[]]
    for i, (mean, _, _) in enumerate(points):
        if mean is None:
            runs.append([])
        else:
            runs[-1].append(i)
    return [r for r in runs if r]


def _series(index: int, label: str, points: list, names: list[str], x, y) -> str:
    colour = COLOURS[index % len(COLOURS)]
    parts = []
    for run in _segments(points):
        banded = [i for i in run if points[i][1] is not None]
        if len(banded) == len(run):
            outline = [(x(i), y(points[i][1][1])) for i in run] + [(x(i), y(points[i][1][0])) for i in reversed(run)]
            parts.append(f'<polygon class="band" points="{_pts(outline)}" fill="{colour}" fill-opacity="0.12" '
                         f'stroke="none"/>' if len(run) > 1 else
                         f'<line class="band" x1="{x(run[0]):.1f}" x2="{x(run[0]):.1f}" y1="{outline[0][1]:.1f}" '
                         f'y2="{outline[1][1]:.1f}" stroke="{colour}" stroke-opacity="0.4" stroke-width="6"/>')
        parts.append(f'<polyline class="line" points="{_pts([(x(i), y(points[i][0])) for i in run])}" fill="none" '
                     f'stroke="{colour}" stroke-width="{3 if index == 0 else 2}"/>')
    dots = "".join(
        f'<circle class="point" cx="{x(i):.1f}" cy="{y(mean):.1f}" r="3.5" fill="{colour}" '
        f'data-checkpoint="{escape(names[i])}"><title>{escape(label)} at {escape(names[i])}: {number(mean)} '
        f'{interval(bounds)} ({escape(count)})</title></circle>'
        for i, (mean, bounds, count) in enumerate(points) if mean is not None)
    return f'<g class="series" data-series="{index}" data-name="{escape(label)}">{"".join(parts)}{dots}</g>'


def _pts(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
