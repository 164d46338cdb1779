"""A gate's samples against its threshold, as a small server-rendered SVG: where each point and line goes (the
template draws them). One polyline per series of values, a point per value coloured by the sample's status,
a dashed line per bound; a sample without a value (no data, error) sits on the baseline as a hollow mark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from estate.app.views.rollouts import SampleView

WIDTH, HEIGHT = 320, 120
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 10, 22  # room for the axis labels


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    status: str  # ok | breach | no_data | error
    label: str  # what a tooltip says
    empty: bool = False  # no value: drawn hollow on the baseline


@dataclass(frozen=True)
class Mark:
    """A horizontal line (a bound, a tick) at `y`, labelled `label`, or an x-axis label at `x`."""

    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    series: list[str]  # polyline `points` attributes
    points: list[Point]
    bounds: list[Mark]
    ticks: list[Mark]
    rounds: list[Mark]
    summary: str  # the chart in words (its accessible name)


def _number(value: float) -> str:
    return f"{value:.4g}"


def sample_chart(
    samples: Sequence[SampleView], *, low: float | None, high: float | None, subject: str, verdict: str
) -> Chart:
    """The chart of `samples` (in round order) against the bounds `low` (min) and `high` (max)."""
    values = [v for s in samples for v in s.values]
    limits = [b for b in (low, high) if b is not None]
    top_value = max([*values, *limits, 0.0])
    bottom_value = min([*values, *limits, 0.0])
    span = (top_value - bottom_value) * 1.15 or 1.0
    plot_right, plot_bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    rounds = sorted({s.round for s in samples}) or [1]
    step = (plot_right - LEFT) / max(len(rounds) - 1, 1)
    x_of = {r: LEFT + (i * step if len(rounds) > 1 else (plot_right - LEFT) / 2) for i, r in enumerate(rounds)}

    def y_of(value: float) -> float:
        return round(plot_bottom - (value - bottom_value) / span * (plot_bottom - TOP), 2)

    points: list[Point] = []
    lines: dict[int, list[str]] = {}
    for s in samples:
        x = round(x_of[s.round], 2)
        if not s.values:
            label = f"round {s.round}: {s.status}" + (f" ({s.detail})" if s.detail else "")
            points.append(Point(x, plot_bottom, s.status, label, empty=True))
        for i, v in enumerate(s.values):
            points.append(Point(x, y_of(v), s.status, f"round {s.round}: {_number(v)} ({s.status})"))
            lines.setdefault(i, []).append(f"{x},{y_of(v)}")
    bounds = [Mark(y_of(b), f"{name} {_number(b)}") for name, b in (("min", low), ("max", high)) if b is not None]
    ticks = [Mark(y_of(v), _number(v)) for v in sorted({bottom_value, top_value})]
    shown = ", ".join(_number(v) for v in values) or "no values"
    limit_text = " and ".join(b.label for b in bounds) or "no bound"
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=plot_right,
        top=TOP,
        bottom=plot_bottom,
        series=[" ".join(p) for p in lines.values() if len(p) > 1],
        points=points,
        bounds=bounds,
        ticks=ticks,
        rounds=[Mark(round(x_of[r], 2), str(r)) for r in rounds],
        summary=f"{subject}: {len(samples)} samples ({shown}) against {limit_text}: {verdict}",
    )
