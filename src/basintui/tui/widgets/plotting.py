"""Small pure helpers the plot panes share: point caps and log floors (plotext freezes on huge inputs
and raises on log of zero, so panes plot log10 of max(v, floor) on a linear axis)."""

from __future__ import annotations

import math
from collections.abc import Sequence

LOG_FLOOR = 1e-300


def log10_floor(values: Sequence[float], floor: float = LOG_FLOOR) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        out.append(math.log10(max(f, floor)) if math.isfinite(f) else math.log10(floor))
    return out


def decimate(xs: Sequence[float], ys: Sequence[float], max_points: int,
             keep: Sequence[int] = ()) -> tuple[list[float], list[float]]:
    """At most about `max_points` evenly spaced points, always keeping the ends and the indices in `keep`."""
    n = len(xs)
    if n <= max_points or max_points < 2:
        return list(xs), list(ys)
    step = (n - 1) / (max_points - 1)
    idx = {round(i * step) for i in range(max_points)} | {0, n - 1}
    idx |= {i for i in keep if 0 <= i < n}
    order = sorted(idx)
    return [xs[i] for i in order], [ys[i] for i in order]


def num(v: object, digits: int = 4) -> str:
    """A report number for display: floats to `digits` significant figures, None as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)
