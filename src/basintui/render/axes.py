"""Axis decisions for the plots, pure and torch-free (no textual, no plotext): log axes whose floor is
chosen, never stretched by one tiny value; integer ticks for integer axes; markers or a line; the
shared step range of the training plots.

A log axis is drawn as log10 of the values on a linear axis (plotext has no safe log scale: log of
zero raises and a 1e-300 value squashes everything else). Values under the floor are drawn AT the
floor and counted, so a plot can say "12 below 1e-17" instead of hiding them or letting them set the
axis."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

EPS = sys.float_info.epsilon  # float64 machine epsilon: every rank decision is float64
MARKER_MAX_POINTS = 40  # at most this many points are drawn as markers, more as a line
NICE_STEPS = (1, 2, 5)
MIN_DECADE = -300  # the lowest floor (below it 10**k is subnormal and log10 no longer inverts it)


@dataclass(frozen=True)
class LogAxis:
    """A log10 axis from 10**lo to 10**hi (whole decades), the plotted log10 values (clipped at lo),
    how many values were below the floor, and decade ticks."""

    lo: int
    hi: int
    ys: tuple[float, ...]
    below: int
    ticks: tuple[int, ...]
    labels: tuple[str, ...]

    @property
    def floor(self) -> float:
        return 10.0 ** self.lo

    def below_text(self) -> str:
        """'12 below 1e-17' ('' when none): the values drawn at the floor."""
        return f"{self.below} below {decade_label(self.lo)}" if self.below else ""


def decade_label(k: int) -> str:
    """10**k as a short tick label: '1', '10', '0.1', '1e-16', '1e+03'."""
    if k == 0:
        return "1"
    if k == 1:
        return "10"
    if k == -1:
        return "0.1"
    return f"1e{k:+03d}" if k > 0 else f"1e{k:03d}"


def _finite_positive(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(float(v)) and float(v) > 0]


def max_ticks(cells: int, cells_per_tick: int) -> int:
    """How many ticks fit along `cells` rows or columns with one tick every `cells_per_tick`: at least 2."""
    return max(2, cells // max(1, cells_per_tick))


def nice_step(span: float, most: int) -> int:
    """The smallest integer step 1, 2, 5, 10, 20, 50, ... that cuts `span` into at most `most` - 1 steps."""
    most = max(2, most)
    scale = 1
    while True:
        for s in NICE_STEPS:
            step = s * scale
            if span / step <= most - 1:
                return step
        scale *= 10


def int_ticks(lo: float, hi: float, most: int) -> list[int]:
    """Integer ticks between lo and hi (inclusive), multiples of a nice step, at most `most` of them
    (at least one: a degenerate range gives its one integer)."""
    a, b = math.ceil(min(lo, hi)), math.floor(max(lo, hi))
    if b < a:  # no integer inside: the nearest one
        return [round((lo + hi) / 2)]
    step = nice_step(b - a, most)
    first = -(-a // step) * step  # the first multiple of step at or above a
    return list(range(first, b + 1, step)) or [a]


def int_limits(values: Sequence[int], at_least: int = 0) -> tuple[int, int]:
    """Limits of an integer axis (a rank): one below the smallest value (not under `at_least`) to one
    above the largest, so equal values sit mid-plot and no value lies on the frame."""
    if not values:
        return at_least, at_least + 1
    return max(at_least, min(values) - 1), max(values) + 1


def log_axis(values: Sequence[float], floor: float, most_ticks: int = 5, top: float | None = None) -> LogAxis:
    """A log axis from the decade at or below `floor` to the decade at or above the largest value
    (or `top`); every value is drawn at max(log10 v, lo), the non-positive and non-finite ones at lo."""
    if not (math.isfinite(floor) and floor > 0):
        raise ValueError(f"a log axis needs a positive floor, got {floor!r}")
    lo = max(MIN_DECADE, math.floor(math.log10(floor)))
    pos = _finite_positive(values)
    biggest = max([*pos, *([top] if top is not None and math.isfinite(top) and top > 0 else [])], default=0.0)
    hi = max(lo + 1, math.ceil(math.log10(biggest)) if biggest > 0 else lo + 1)
    ys, below = [], 0
    for v in values:
        f = float(v)
        if math.isfinite(f) and f > 0 and math.log10(f) >= lo:
            ys.append(math.log10(f))
        else:
            below += 1
            ys.append(float(lo))
    ticks = decade_ticks(lo, hi, most_ticks)
    return LogAxis(lo, hi, tuple(ys), below, tuple(ticks), tuple(decade_label(k) for k in ticks))


def decade_ticks(lo: int, hi: int, most: int) -> list[int]:
    """Whole-decade ticks from lo to hi at multiples of 1, 2, 5, 10, ... decades, at most `most`."""
    return int_ticks(lo, hi, most)


def spectrum_floor(sigma1: float, tolerance: float, near_factor: float = 2.0) -> float | None:
    """The floor of a singular-value axis: one decade below ε·σ₁ (below that is rounding noise) or
    below the near-threshold band's lower edge tolerance / near_factor if that is lower, so the
    tolerance and the band are always on the axis. None when σ₁ is not positive (G = 0: nothing to
    put on a log axis)."""
    if not (math.isfinite(sigma1) and sigma1 > 0):
        return None
    low = EPS * sigma1
    if math.isfinite(tolerance) and tolerance > 0:
        low = min(low, tolerance / max(near_factor, 1.0))
    return low / 10


def spectrum_axis(values: Sequence[float], tolerance: float, near_factor: float = 2.0, most_ticks: int = 5,
                  extra: Sequence[float] = ()) -> LogAxis:
    """The log axis of a spectrum (and of an `extra` overlay spectrum drawn on the same axis: the
    floor is the lower of the two, the top the higher). A zero spectrum (rank-0 G) gets the axis
    0.1 to 10 with every value at the floor and counted."""
    sigma1 = max(_finite_positive([*values, *extra]), default=0.0)
    floor = spectrum_floor(sigma1, tolerance, near_factor)
    if floor is None:
        return log_axis(values, 0.1, most_ticks, top=10.0)
    top = sigma1 if not (math.isfinite(tolerance) and tolerance > sigma1) else tolerance * near_factor
    return log_axis(values, floor, most_ticks, top=top)


def use_markers(n_points: int, limit: int = MARKER_MAX_POINTS) -> bool:
    """Markers (each point visible) for few points, a line for many."""
    return n_points <= limit


def step_range(total_steps: int, seen: Sequence[int] = ()) -> tuple[int, int]:
    """The x range the training plots share: 0 to the run's total steps (or the last step seen, if the
    run went past it; at least 1 so the range is never empty)."""
    return 0, max(1, int(total_steps), *(int(s) for s in seen))


def index_range(n: int) -> tuple[float, float]:
    """The x range of an index axis 1..n with half a cell of room at each end (a single point sits
    mid-plot)."""
    return 0.5, max(1, n) + 0.5


LOSS_DECADES = 30  # a loss axis spans at most this many decades below the largest loss


def loss_axis(losses: Sequence[float], most_ticks: int = 5) -> LogAxis:
    """The log axis of a loss curve: down to the decade of the smallest positive loss, but never more
    than LOSS_DECADES below the largest (a loss of exactly 0, or 1e-200, is drawn at the floor and
    counted). No positive loss: the axis 0.1 to 10."""
    pos = _finite_positive(losses)
    if not pos:
        return log_axis(losses, 0.1, most_ticks, top=10.0)
    return log_axis(losses, max(min(pos), max(pos) * 10.0 ** -LOSS_DECADES), most_ticks)
