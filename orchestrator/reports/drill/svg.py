"""The pictures of a drill's evidence, as inline SVG (so the HTML report stands alone):

- :func:`timeline` — each step (or each system of a rehearsal) as a bar on a time axis, with
  the RTO target as a vertical line (at the right edge with an arrow when it lies far beyond
  the drill's length, so the bars stay readable);
- :func:`history` — achieved RPO and RTO over a system's drills, each against its target.

Pure functions of numbers and (escaped) labels; no outside resource, no script. Durations
are written as :func:`orchestrator.human.duration` writes them in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from orchestrator.human import duration

OK_FILL, BAD_FILL, TARGET = "#2e7d32", "#c62828", "#d84315"
FONT = "font-family='DejaVu Sans, Arial, sans-serif' font-size='12'"
SMALL = "font-family='DejaVu Sans, Arial, sans-serif' font-size='10'"


@dataclass(frozen=True)
class Bar:
    label: str
    start: float
    seconds: float
    ok: bool
    note: str = ""


@dataclass(frozen=True)
class Point:
    label: str
    rpo: float | None
    rto: float | None
    ok: bool


def nice_step(span: float, ticks: int = 6) -> float:
    """A round tick interval (1, 2, 5 × 10^n) giving about ``ticks`` ticks over ``span``."""
    raw = max(span, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _axis(x0: float, width: float, span: float, y: float, unit: str) -> list[str]:
    step = nice_step(span)
    out = [f"<line x1='{x0}' y1='{y}' x2='{x0 + width}' y2='{y}' stroke='#555'/>"]
    value = 0.0
    while value <= span + 1e-9:
        x = x0 + width * value / span
        out.append(f"<line x1='{x:.1f}' y1='{y}' x2='{x:.1f}' y2='{y + 5}' stroke='#555'/>")
        out.append(f"<text x='{x:.1f}' y='{y + 18}' text-anchor='middle' {FONT}>"
                   f"{value:g}{unit}</text>")
        value += step
    return out


def timeline(bars: Sequence[Bar], target: float | None, target_label: str,
             axis_label: str, width: int = 900) -> str:
    """Bars on a time axis (seconds from the start) and the target line."""
    left, right, row = 230, 90, 26
    plot = width - left - right
    end = max((b.start + b.seconds for b in bars), default=1.0) or 1.0
    span = end * 1.05
    target_in = target is not None and target <= end * 1.5
    if target is not None and target_in:
        span = max(span, target * 1.05)
    height = 40 + row * len(bars) + 50
    axis_y = 30 + row * len(bars) + 6
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(axis_label)}'>",
             "<rect width='100%' height='100%' fill='#fff'/>"]
    for i, bar in enumerate(bars):
        y = 30 + i * row
        x = left + plot * bar.start / span
        w = max(2.0, plot * bar.seconds / span)
        fill = OK_FILL if bar.ok else BAD_FILL
        parts.append(f"<text x='{left - 8}' y='{y + 15}' text-anchor='end' {FONT}>"
                     f"{escape(bar.label)}</text>")
        parts.append(f"<rect x='{x:.1f}' y='{y + 3}' width='{w:.1f}' height='{row - 8}' "
                     f"fill='{fill}' rx='2'><title>{escape(bar.label)}: "
                     f"{duration(bar.seconds)}</title></rect>")
        text_x = x + w + 4
        parts.append(f"<text x='{text_x:.1f}' y='{y + 15}' {FONT} fill='#333'>"
                     f"{escape(duration(bar.seconds) + (' ' + bar.note if bar.note else ''))}"
                     "</text>")
    parts += _axis(left, plot, span, axis_y, " s")
    parts.append(f"<text x='{left + plot / 2}' y='{axis_y + 36}' text-anchor='middle' "
                 f"{FONT}>{escape(axis_label)}</text>")
    if target is not None:
        label = f"{target_label} {duration(target)}"
        if target_in:
            x = left + plot * target / span
            parts.append(f"<line x1='{x:.1f}' y1='20' x2='{x:.1f}' y2='{axis_y}' "
                         f"stroke='{TARGET}' stroke-width='2' stroke-dasharray='6 4'/>")
            parts.append(f"<text x='{x - 4:.1f}' y='14' text-anchor='end' {FONT} "
                         f"fill='{TARGET}'>{escape(label)}</text>")
        else:
            x = left + plot
            parts.append(f"<line x1='{x}' y1='20' x2='{x}' y2='{axis_y}' stroke='{TARGET}' "
                         "stroke-width='2' stroke-dasharray='2 3'/>")
            parts.append(f"<text x='{x}' y='14' text-anchor='end' {FONT} fill='{TARGET}'>"
                         f"{escape(label)} →</text>")
    parts.append("</svg>")
    return "".join(parts)


def _panel(x0: float, title: str, values: Sequence[float | None], oks: Sequence[bool],
           labels: Sequence[str], target: float | None, target_label: str, width: float,
           height: float) -> list[str]:
    top, bottom, left = 30, 40, 86
    plot_w, plot_h = width - left - 20, height - top - bottom
    present = [v for v in values if v is not None]
    peak = max(present, default=1.0) or 1.0
    span = peak * 1.15
    target_in = target is not None and target <= peak * 1.5
    if target is not None and target_in:
        span = max(span, target * 1.1)
    out = [f"<text x='{x0 + width / 2}' y='18' text-anchor='middle' {FONT} "
           f"font-weight='bold'>{escape(title)}</text>"]
    base = top + plot_h
    out.append(f"<line x1='{x0 + left}' y1='{base}' x2='{x0 + left + plot_w}' y2='{base}' "
               "stroke='#555'/>")
    for frac in (0.0, 0.5, 1.0):
        y = base - plot_h * frac
        out.append(f"<text x='{x0 + left - 6}' y='{y + 4:.1f}' text-anchor='end' {FONT}>"
                   f"{escape(duration(span * frac))}</text>")
    n = max(1, len(values))
    slot = plot_w / n
    for i, (value, ok, label) in enumerate(zip(values, oks, labels, strict=False)):
        cx = x0 + left + slot * i + slot / 2
        if value is not None:
            h = plot_h * value / span
            out.append(f"<rect x='{cx - min(18, slot / 3):.1f}' y='{base - h:.1f}' "
                       f"width='{2 * min(18, slot / 3):.1f}' height='{max(h, 1):.1f}' "
                       f"fill='{OK_FILL if ok else BAD_FILL}'><title>{escape(label)}: "
                       f"{escape(duration(value))}</title></rect>")
        else:
            out.append(f"<text x='{cx:.1f}' y='{base - 4}' text-anchor='middle' {FONT}>–</text>")
        out.append(f"<text x='{cx:.1f}' y='{base + 16}' text-anchor='middle' {SMALL}>"
                   f"{escape(label)}</text>")
    if target is not None:
        text = f"{target_label} {duration(target)}"
        y = base - plot_h * target / span if target_in else top
        dash = "6 4" if target_in else "2 3"
        out.append(f"<line x1='{x0 + left}' y1='{y:.1f}' x2='{x0 + left + plot_w}' "
                   f"y2='{y:.1f}' stroke='{TARGET}' stroke-width='2' stroke-dasharray='{dash}'/>")
        out.append(f"<text x='{x0 + left + plot_w}' y='{y - 4:.1f}' text-anchor='end' {FONT} "
                   f"fill='{TARGET}'>{escape(text + ('' if target_in else ' ↑'))}</text>")
    return out


def history(points: Sequence[Point], rpo_target: float | None, rto_target: float | None,
            titles: tuple[str, str], target_label: str, width: int = 900) -> str:
    """Two panels: achieved RPO and achieved RTO per drill (oldest first), each with its
    target."""
    height = 230
    half = width / 2
    labels = [p.label for p in points]
    oks = [p.ok for p in points]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(titles[0])}, "
             f"{escape(titles[1])}'>", "<rect width='100%' height='100%' fill='#fff'/>"]
    parts += _panel(0, titles[0], [p.rpo for p in points], oks, labels, rpo_target,
                    target_label, half, height)
    parts += _panel(half, titles[1], [p.rto for p in points], oks, labels, rto_target,
                    target_label, half, height)
    parts.append("</svg>")
    return "".join(parts)
