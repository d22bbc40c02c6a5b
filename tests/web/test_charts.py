"""The server-side charts: what they draw from what the store holds."""

from __future__ import annotations

import re
from datetime import timedelta

from lanscope.web import charts
from lanscope.web.views import _online_series
from tests.factories import T0


def rects(svg: str, cls: str) -> list[tuple[float, float]]:
    return [(float(x), float(w)) for x, w in
            re.findall(rf'<rect class="{cls}" x="([\d.]+)" y="2" width="([\d.]+)"', svg)]


def test_presence_draws_online_and_offline_spans_and_nothing_before_first_sight() -> None:
    start, end = T0, T0 + timedelta(days=7)
    first_seen = T0 + timedelta(days=1)
    svg = str(charts.presence([(first_seen, False, True),                        # new: no "offline" before
                               (T0 + timedelta(days=3), True, False),
                               (T0 + timedelta(days=5), False, True)], start, end, True, first_seen))
    online, offline = rects(svg, "online"), rects(svg, "offline")
    assert len(online) == 2 and len(offline) == 1
    day = (1200 - 20) / 7
    assert abs(online[0][0] - (10 + day)) < 0.2 and abs(online[0][1] - 2 * day) < 0.2
    assert abs(offline[0][0] - (10 + 3 * day)) < 0.2 and abs(offline[0][1] - 2 * day) < 0.2


def test_presence_opens_with_the_state_before_the_window() -> None:
    start, end = T0, T0 + timedelta(days=7)
    svg = str(charts.presence([(T0 - timedelta(days=30), True, False)], start, end, False,
                              T0 - timedelta(days=60)))
    assert rects(svg, "online") == [] and len(rects(svg, "offline")) == 1     # offline all week


def test_hosts_online_is_walked_back_from_now() -> None:
    now = T0 + timedelta(hours=5)
    moves = [{"bucket": (T0 + timedelta(hours=1)).isoformat(), "delta": 10},    # 10 came
             {"bucket": (T0 + timedelta(hours=3)).isoformat(), "delta": -2}]    # 2 went
    series = _online_series(8, moves, now - timedelta(hours=24))
    assert [v for _, v in series] == [0, 10, 8]
    assert series[0][0] == now - timedelta(hours=24)


def test_chart_labels_are_escaped() -> None:
    svg = str(charts.line_chart([(T0, 1.0)], T0, T0 + timedelta(hours=1), '<b onmouseover="x">'))
    assert "<b onmouseover" not in svg and "&lt;b onmouseover=" in svg
