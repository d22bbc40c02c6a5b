"""Server-side SVG charts: hosts online over time, changes per hour, a host's presence.

Plain SVG strings (no script, no JavaScript library), sized by the viewBox and
scaled by CSS. Every text that goes in is escaped; the numbers are ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

_W, _H = 640, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 10, 12, 24


def _ticks(top: float) -> list[int]:
    """Up to 4 round y-axis values from 0 to at least ``top``."""
    if top <= 0:
        return [0, 1]
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000):
        if top / step <= 4:
            break
    else:
        step = int(top // 4) or 1
    count = int(-(-top // step))
    return [i * step for i in range(count + 1)]


def _label(at: datetime, span: timedelta) -> str:
    local = at.astimezone()
    return local.strftime("%H:%M") if span <= timedelta(hours=36) else local.strftime("%d %b")


def _frame(ticks: list[int], x_labels: list[tuple[float, str]], title: str) -> list[str]:
    inner_h = _H - _TOP - _BOTTOM
    top = ticks[-1] or 1
    out = [f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for tick in ticks:
        y = _TOP + inner_h * (1 - tick / top)
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for i, (x, text) in enumerate(x_labels):
        anchor = "start" if i == 0 else "end" if i == len(x_labels) - 1 else "middle"
        out.append(f'<text class="axis" x="{x:.1f}" y="{_H - 6}" text-anchor="{anchor}">'
                   f'{escape(text)}</text>')
    return out


def _x_labels(start: datetime, end: datetime, count: int = 6) -> list[tuple[float, str]]:
    span = end - start
    inner_w = _W - _LEFT - _RIGHT
    return [(_LEFT + inner_w * i / (count - 1), _label(start + span * i / (count - 1), span))
            for i in range(count)]


def line_chart(points: Sequence[tuple[datetime, float]], start: datetime, end: datetime,
               title: str) -> Markup:
    """A step line with its area: ``points`` are (time, value) in time order."""
    if not points:
        return Markup('<p class="muted">No data in this window.</p>')
    ticks = _ticks(max(v for _, v in points))
    top = ticks[-1] or 1
    inner_w, inner_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    span = max((end - start).total_seconds(), 1.0)

    def xy(at: datetime, value: float) -> tuple[float, float]:
        x = _LEFT + inner_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)
        return x, _TOP + inner_h * (1 - value / top)

    coords: list[tuple[float, float]] = []
    for i, (at, value) in enumerate(points):
        x, y = xy(at, value)
        if i:
            coords.append((x, coords[-1][1]))      # a step: the value holds until it changes
        coords.append((x, y))
    coords.append((float(_W - _RIGHT), coords[-1][1]))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    base = _TOP + inner_h
    area = f"{coords[0][0]:.1f},{base:.1f} {line} {coords[-1][0]:.1f},{base:.1f}"
    out = _frame(ticks, _x_labels(start, end), title)
    out.append(f'<polygon class="area" points="{area}"/><polyline class="line" points="{line}"/></svg>')
    return Markup("".join(out))


def bar_chart(bars: Sequence[tuple[datetime, float]], start: datetime, end: datetime, step: timedelta,
              title: str) -> Markup:
    """One bar per ``step`` from ``start`` to ``end`` (missing buckets are 0)."""
    by_time = {at: value for at, value in bars}
    buckets: list[tuple[datetime, float]] = []
    at = start
    while at < end:
        buckets.append((at, by_time.get(at, 0.0)))
        at += step
    if not buckets:
        return Markup('<p class="muted">No data in this window.</p>')
    ticks = _ticks(max(v for _, v in buckets))
    top = ticks[-1] or 1
    inner_w, inner_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    width = inner_w / len(buckets)
    out = _frame(ticks, _x_labels(start, end), title)
    for i, (at, value) in enumerate(buckets):
        if not value:
            continue
        height = inner_h * value / top
        label = f"{_label(at, end - start)}: {value:g}"
        out.append(f'<rect class="bar" x="{_LEFT + i * width + 1:.1f}" y="{_TOP + inner_h - height:.1f}" '
                   f'width="{max(width - 2, 1):.1f}" height="{height:.1f}">'
                   f'<title>{escape(label)}</title></rect>')
    out.append("</svg>")
    return Markup("".join(out))


def presence(changes: Sequence[tuple[datetime, bool | None, bool]], start: datetime, end: datetime,
             now_active: bool | None, first_seen: datetime | None = None) -> Markup:
    """A band over [start, end]: online green, offline grey, unknown (before first sight) blank.

    ``changes`` are (time, old, new) of ``active`` in order; the first may lie before
    ``start`` (then its new value is the state the window opens with), else its old one is.
    Nothing is drawn before ``first_seen``."""
    width, height, band = 1200, 40, 20
    left, right = 10, 10
    inner_w = width - left - right
    if first_seen is not None and first_seen > start:
        changes = [c for c in changes if c[0] >= first_seen]
        cursor_start = first_seen
    else:
        cursor_start = start
    span = max((end - start).total_seconds(), 1.0)
    state: bool | None = changes[0][1] if changes and changes[0][0] > cursor_start else None
    segments: list[tuple[datetime, datetime, bool]] = []
    cursor = cursor_start
    for at, _old, active in changes:
        if at <= start:
            state = active
            continue
        if state is not None:
            segments.append((cursor, at, state))
        cursor, state = at, active
    if state is None:
        state = now_active
    if state is not None:
        segments.append((cursor, end, state))
    out = [f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="presence" xmlns="http://www.w3.org/2000/svg">',
           f'<rect class="unknown" x="{left}" y="2" width="{inner_w}" height="{band}"/>']
    for seg_start, seg_end, active in segments:
        x = left + inner_w * (seg_start - start).total_seconds() / span
        w = max(inner_w * (seg_end - seg_start).total_seconds() / span, 0.5)
        what = "online" if active else "offline"
        label = f"{what} {seg_start.astimezone():%d %b %H:%M} to {seg_end.astimezone():%d %b %H:%M}"
        out.append(f'<rect class="{what}" x="{x:.1f}" y="2" width="{w:.1f}" height="{band}">'
                   f'<title>{escape(label)}</title></rect>')
    for i in range(8):
        x = left + inner_w * i / 7
        anchor = "start" if i == 0 else "end" if i == 7 else "middle"
        text = _label(start + (end - start) * i / 7, end - start)
        out.append(f'<text class="axis" x="{x:.1f}" y="{height - 3}" text-anchor="{anchor}">'
                   f'{escape(text)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
