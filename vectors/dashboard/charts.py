"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, nothing the browser has to fetch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

BLUE, LIGHT_BLUE, AMBER, RED, GREY = "#417690", "#79aec8", "#d68a00", "#ba2121", "#999999"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 12, 28, 34


@dataclass(frozen=True)
class Series:
    """One named line or set of bars."""

    name: str
    values: Sequence[float | None]
    color: str = BLUE


def nice_ceiling(value: float) -> float:
    """Round `value` up to 1, 2 or 5 times a power of ten (a readable axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * power * (1 + 1e-9):
            return factor * power
    return 10 * power


def short(value: float | None) -> str:
    """Format a number compactly for a label: 0.42, 3.5, 120, 4.2k, 1.3M."""
    if value is None:
        return "–"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.0f}k"
    if magnitude >= 1e3:
        return f"{value / 1e3:.1f}k"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


class Canvas:
    """An SVG document with a plotting area and a y axis from 0 to a readable maximum."""

    def __init__(self, title: str, width: int, height: int, y_max: float, unit: str) -> None:
        self.title, self.width, self.height, self.unit = title, width, height, unit
        self.y_max = nice_ceiling(y_max)
        self.left, self.top = MARGIN_LEFT, MARGIN_TOP
        self.plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
        self.plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
        self.parts: list[str] = []

    def y(self, value: float) -> float:
        return self.top + self.plot_h * (1 - min(value, self.y_max) / self.y_max)

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def text(self, x: float, y: float, label: str, anchor: str = "middle", color: str = "#333") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}">{escape(label)}</text>')

    def grid(self) -> None:
        for i in range(5):
            value = self.y_max * i / 4
            y = self.y(value)
            right = self.left + self.plot_w
            self.add(f'<line x1="{self.left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            self.text(self.left - 6, y + 4, short(value), anchor="end", color="#666")
        if self.unit:
            self.text(self.left - 6, self.top - 10, self.unit, anchor="end", color="#666")

    def legend(self, series: Sequence[Series]) -> None:
        x = self.left
        for item in series:
            self.add(f'<rect x="{x}" y="6" width="10" height="10" fill="{item.color}"/>')
            self.text(x + 14, 15, item.name, anchor="start")
            x += 22 + 7 * len(item.name)

    def render(self) -> SafeString:
        body = "".join(self.parts)
        return mark_safe(  # noqa: S308 - every label went through escape()
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(self.title)}" '
            f'viewBox="0 0 {self.width} {self.height}" width="100%" style="max-width:{self.width}px" {FONT}>'
            f"<title>{escape(self.title)}</title>{body}</svg>"
        )


def empty(title: str, width: int, height: int) -> SafeString:
    canvas = Canvas(title, width, height, 1, "")
    canvas.text(width / 2, height / 2, "no requests in this window", color="#999")
    return canvas.render()


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    width: int = 660,
    height: int = 240,
) -> SafeString:
    """Draw lines over shared x positions; None values leave gaps."""
    values = [v for s in series for v in s.values if v is not None]
    if not x_labels or not values:
        return empty(title, width, height)
    canvas = Canvas(title, width, height, max(values), unit)
    canvas.grid()
    count = len(x_labels)

    def x(i: int) -> float:
        return canvas.left + (canvas.plot_w * (i + 0.5) / count)

    for item in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(item.values):
            if value is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{canvas.y(value):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                canvas.add(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{item.color}"/>')
            elif run:
                points = " ".join(run)
                canvas.add(f'<polyline points="{points}" fill="none" stroke="{item.color}" stroke-width="1.8"/>')
    step = max(1, math.ceil(count / 8))
    for i in range(0, count, step):
        canvas.text(x(i), canvas.top + canvas.plot_h + 16, x_labels[i], color="#666")
    canvas.legend(series)
    return canvas.render()


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    width: int = 660,
    height: int = 240,
    value_labels: bool = True,
) -> SafeString:
    """Draw bars per label; several series become groups of bars side by side."""
    values = [v for s in series for v in s.values if v is not None]
    if not labels or not values or max(values) <= 0:
        return empty(title, width, height)
    canvas = Canvas(title, width, height, max(values), unit)
    canvas.grid()
    group_w = canvas.plot_w / len(labels)
    bar_w = group_w * 0.8 / len(series)
    baseline = canvas.y(0)
    for g, label in enumerate(labels):
        left = canvas.left + g * group_w + group_w * 0.1
        for s, item in enumerate(series):
            value = item.values[g]
            if value is None:
                continue
            top = canvas.y(value)
            bx = left + s * bar_w
            canvas.add(
                f'<rect x="{bx:.1f}" y="{top:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                f'height="{max(baseline - top, 0):.1f}" fill="{item.color}"><title>{escape(label)} '
                f"{escape(item.name)}: {escape(short(value))}{escape(unit)}</title></rect>"
            )
            if value_labels and bar_w >= 18:
                canvas.text(bx + bar_w / 2 - 1, top - 3, short(value), color="#333")
        canvas.text(left + group_w * 0.4, canvas.top + canvas.plot_h + 16, label, color="#666")
    if len(series) > 1:
        canvas.legend(series)
    return canvas.render()
