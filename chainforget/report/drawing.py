"""Drawing helpers shared by ``chainforget plot`` and the findings page: bars and forest rows that draw a zero
differently from a missing value, titles wrapped to their figure's width, axis units read from ``MetricSpec``s,
and the check that no two labels of a figure overlap (tests and ``plot`` use it alike).

matplotlib is imported inside the functions (never at import time).
"""

from __future__ import annotations

import textwrap
from typing import Any, Sequence

import numpy as np

from chainforget.metrics.base import TASK_UNIT
from chainforget.plugins import registries

MISSING_COLOR = "#9e9e9e"


def metric_unit(metric: str, task_info: dict | None = None) -> str:
    """The unit a metric's axis names: its ``MetricSpec.unit``, or for a metric in its task's unit the task's own
    score unit (``task_info['unit']`` or its primary metric, e.g. ``acc``)."""
    names = registries("metrics").names()
    unit = registries("metrics").get(metric).unit if metric in names else TASK_UNIT
    if unit and unit != TASK_UNIT:
        return unit
    info = task_info or {}
    return str(info.get("unit") or info.get("primary_metric") or "score")


def wrap(text: str, width_in: float, fontsize: float = 9) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (about 0.55 em per char)."""
    chars = max(12, int(width_in * 72 / (fontsize * 0.55)))
    return "\n".join(textwrap.wrap(str(text), chars)) or str(text)


def short_labels(names: Sequence[str], width: int = 14) -> list[str]:
    """Tick labels no longer than ``width`` characters (long names are cut with '...'; the legend or caption gives
    them in full)."""
    return [n if len(n) <= width else n[: width - 3] + "..." for n in names]


def bars(ax, entries: Sequence[tuple[Any, Any, Any] | None], color) -> list[int]:
    """One bar per entry (value, ci_low, ci_high) with its interval; a value of exactly zero still shows (a dot on
    the axis), a missing entry a grey 'x' on the axis (legend label 'n/a (missing)') instead of a bar. Returns the
    missing positions."""
    colors = list(color) if isinstance(color, (list, tuple)) else [color] * len(entries)
    absent = []
    for i, e in enumerate(entries):
        if e is None or e[0] is None:
            absent.append(i)
            continue
        v, lo, hi = (float(x) if x is not None else float(e[0]) for x in e)
        ax.bar(i, v, width=0.7, color=colors[i], zorder=2)
        ax.errorbar(i, v, yerr=[[v - lo], [hi - v]], color="black", capsize=3, linewidth=1, zorder=3)
        ax.plot(i, v, marker="o", markersize=3.5, color="black", zorder=4)
    if absent:
        ax.plot(absent, [0.0] * len(absent), linestyle="none", marker="x", markersize=7, color=MISSING_COLOR,
                zorder=4, label="n/a (missing)")
    ax.axhline(0, color="grey", linewidth=0.6, zorder=1)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    return absent


def forest(ax, labels: Sequence[str], entries: Sequence[dict | None], bounds=(None, None), color="#2171b5",
           zero: bool = True, mark_missing: bool = True) -> list[int]:
    """A forest plot: one row per entry (``{value, ci_low, ci_high}``, first row on top), point and interval on the
    metric's own scale, the interval clipped to the metric's declared ``bounds`` (an arrow head marks a clipped
    side); a missing row shows a grey 'x' at 0 (``mark_missing``) and 'n/a' at the right edge. ``color`` is one
    color or one per row. Returns the missing rows."""
    low_b, high_b = bounds
    colors = list(color) if isinstance(color, (list, tuple)) else [color] * len(entries)
    absent = []
    open_sides: list[tuple[float, float, Any, bool, bool]] = []
    for i, e in enumerate(entries):
        y = len(entries) - 1 - i
        if not e or e.get("value") is None:
            absent.append(i)
            if mark_missing:
                ax.plot(0, y, marker="x", color=MISSING_COLOR, markersize=7, linestyle="none")
                ax.annotate("n/a", (1, y), xycoords=("axes fraction", "data"), xytext=(-4, 0),
                            textcoords="offset points", ha="right", va="center", color="#555555", fontsize=9,
                            style="italic")
            continue
        v = float(e["value"])
        lo = float(e["ci_low"]) if e.get("ci_low") is not None else v
        hi = float(e["ci_high"]) if e.get("ci_high") is not None else v
        if e.get("unbounded"):  # an open side reaches the axis' edge, drawn once the limits are known
            open_sides.append((y, v, colors[i], e.get("ci_low") is None, e.get("ci_high") is None))
        clip_lo = low_b is not None and lo < low_b
        clip_hi = high_b is not None and hi > high_b
        lo = max(lo, low_b) if low_b is not None else lo
        hi = min(hi, high_b) if high_b is not None else hi
        c = colors[i]
        ax.plot([lo, hi], [y, y], color=c, linewidth=2.2, solid_capstyle="butt")
        for side, clipped, marker in ((lo, clip_lo, "<"), (hi, clip_hi, ">")):
            ax.plot(side, y, marker=marker if clipped else "|", color=c, markersize=8)
        ax.plot(v, y, marker="o", color="black", markersize=5.5, zorder=3)
    if zero:
        ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(entries)), list(reversed(labels)))
    ax.set_ylim(-0.7, len(entries) - 0.3)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    if low_b is not None or high_b is not None:
        left, right = ax.get_xlim()
        span = (right - left) * 0.03
        ax.set_xlim(left if low_b is None else max(left, low_b - span),
                    right if high_b is None else min(right, high_b + span))
    left, right = ax.get_xlim()
    for y, v, c, open_low, open_high in open_sides:
        for is_open, edge, marker in ((open_low, left, "<"), (open_high, right, ">")):
            if is_open:
                ax.plot([v, edge], [y, y], color=c, linewidth=2.2, linestyle=(0, (2, 1)))
                ax.plot(edge, y, marker=marker, color=c, markersize=8, clip_on=False)
    ax.set_xlim(left, right)
    return absent


def label_overlaps(fig, tolerance: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of drawn texts of ``fig`` whose boxes overlap by more than ``tolerance`` pixels (tick labels, axis
    labels, titles, annotations, legend entries; a rotated label's box is rotated with it), and texts that stick out
    of the figure (paired with ``'<figure edge>'``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = []
    undrawn = _undrawn_tick_labels(fig)
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in undrawn:
            continue
        boxes.append((text.get_text(), text.get_window_extent(renderer), _corners(text, renderer)))
    width, height = fig.bbox.width, fig.bbox.height
    bad = [(t, "<figure edge>") for t, b, _ in boxes
           if b.x0 < -tolerance or b.y0 < -tolerance or b.x1 > width + tolerance or b.y1 > height + tolerance]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i][1], boxes[j][1]
            if min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance and min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance \
                    and _polygons_overlap(boxes[i][2], boxes[j][2], tolerance):
                bad.append((boxes[i][0], boxes[j][0]))
    return bad


def _corners(text, renderer) -> np.ndarray:
    """The four corners (pixels) of a text's box, rotated as the text is: the rotated box shares its centre with
    the drawn axis-aligned extent, and has the unrotated layout's width and height."""
    extent = text.get_window_extent(renderer)
    angle = np.deg2rad(text.get_rotation() % 180)
    if min(abs(np.sin(angle)), abs(np.cos(angle))) < 1e-6:
        return np.array([[extent.x0, extent.y0], [extent.x1, extent.y0], [extent.x1, extent.y1],
                         [extent.x0, extent.y1]])
    rotation = text.get_rotation()
    text.set_rotation(0)
    try:
        flat = text.get_window_extent(renderer)
    finally:
        text.set_rotation(rotation)
    w, h = flat.width, flat.height
    centre = np.array([(extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return centre + half @ rot.T


def _polygons_overlap(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """Two convex quadrilaterals overlap by more than ``tolerance`` along every separating axis."""
    for poly in (a, b):
        for k in range(4):
            edge = poly[(k + 1) % 4] - poly[k]
            normal = np.array([-edge[1], edge[0]])
            norm = np.hypot(*normal)
            if norm == 0:
                continue
            normal /= norm
            pa, pb = a @ normal, b @ normal
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tolerance:
                return False
    return True


def _undrawn_tick_labels(fig) -> set[int]:
    """ids of tick labels matplotlib keeps but does not draw: stale ticks from earlier draws, ticks outside the view
    interval, and hidden label sides."""
    hidden: set[int] = set()
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            shown = set()
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is not None and low - span <= loc <= high + span:
                    shown |= {id(label) for label in (tick.label1, tick.label2) if label.get_visible()}
            for tick in list(axis.majorTicks) + list(axis.minorTicks):
                hidden |= {id(label) for label in (tick.label1, tick.label2) if id(label) not in shown}
    return hidden
