"""What the plot panes share: point caps and log floors (plotext freezes on huge inputs and raises on
log of zero, so panes plot log10 of clipped values on a linear axis, render/axes.py decides the axes),
and the drawing of the spectrum, loss and rank plots on a plotext figure, with their legends."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text

from ...render.axes import (
    LogAxis,
    index_range,
    int_limits,
    int_ticks,
    log_axis,
    loss_axis,
    max_ticks,
    spectrum_axis,
    step_range,
    use_markers,
)

if TYPE_CHECKING:
    from ...schema import SpectrumSection

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


# --------------------------------------------------------------------------- drawing on a plotext figure
# Every draw_* function takes the figure of a PlotextPlot (`plot.plt`) and the plot's size in cells,
# sets its data, limits and ticks (never a plotext `label`: its legend box sits on the data) and
# returns the one-line legend the widget shows beside the plot, as rich Text in the same colours.

MAIN, OVERLAY, TOL, BAND, RANK, GAP, CLIPPED = "cyan", "magenta", "red", "yellow", "green", "orange", "gray"
RICH = {"orange": "dark_orange", "gray": "grey62"}  # plotext colour names rich spells differently
MARKER = "●"


def legend(*entries: tuple[str, str, str]) -> Text:
    """One legend line: each entry is (symbol, words, plotext colour); the symbol in the colour."""
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, (symbol, words, color) in enumerate(entries):
        if i:
            t.append("   ")
        t.append(symbol + " ", style=f"bold {RICH.get(color, color)}")
        t.append(words)
    return t


def reset_figure(plt: Any) -> None:
    plt.clear_data()
    plt.clear_figure()


def draw_series(plt: Any, xs: Sequence[float], ys: Sequence[float], color: str, width: int) -> None:
    """Points as markers when there are few of them, otherwise a braille line of at most ~2·width points."""
    if not xs:
        return
    if use_markers(len(xs)):
        plt.scatter(list(xs), list(ys), marker=MARKER, color=color)
    else:
        xs2, ys2 = decimate(list(xs), list(ys), max(32, 2 * width))
        plt.plot(xs2, ys2, marker="braille", color=color)


def blank_figure(plt: Any) -> None:
    """An empty frame (what is missing is said in the legend line, never written on the plot)."""
    reset_figure(plt)
    plt.xlim(0, 1)
    plt.ylim(0, 1)
    plt.xticks([], [])
    plt.yticks([], [])


def _set_y(plt: Any, lo: float, hi: float, ticks: Sequence[int], labels: Sequence[str], pad: int) -> None:
    """Limits and ticks; labels right-aligned to `pad` cells (plots stacked on one x axis then start
    their frames in the same column)."""
    plt.ylim(lo, hi)
    plt.yticks(list(ticks), [label.rjust(pad) for label in labels])


def _set_int_x(plt: Any, lo: float, hi: float, first: int, last: int, width: int, labels: bool = True) -> None:
    """Integer x ticks; without `labels` no tick row at all (a plot stacked over another on the same x
    axis leaves the labels to the one below and keeps the row for data)."""
    plt.xlim(lo, hi)
    ticks = int_ticks(first, last, max_ticks(width, 10)) if labels else []
    plt.xticks(ticks, [str(t) for t in ticks])


def _spectrum_points(g: SpectrumSection, axis: LogAxis, width: int) -> tuple[list[int], list[float]]:
    js = list(range(1, len(axis.ys) + 1))
    gap = g.largest_gap
    keep = [g.rank - 1, g.rank] + ([gap.after - 1, gap.after] if gap is not None else [])
    if use_markers(len(js)):
        return js, list(axis.ys)
    return decimate(js, list(axis.ys), max(32, 2 * width), keep=keep)


def draw_spectrum(plt: Any, g: SpectrumSection, width: int, height: int,
                  overlay: SpectrumSection | None = None, overlay_label: str = "") -> tuple[LogAxis, Text]:
    """σ_j against j on the clipped log axis, the tolerance line, the near-threshold band (the
    report's rank_rule.near_factor either side of the tolerance), the rank and the largest gap; an
    `overlay` spectrum (another report's) in another colour on the same axis."""
    reset_figure(plt)
    sv, tol = [float(v) for v in g.singular_values], float(g.tolerance)
    factor = g.rank_rule.near_factor if g.rank_rule is not None else 2.0
    extra = [float(v) for v in overlay.singular_values] if overlay is not None else []
    axis = spectrum_axis(sv, tol, factor, max_ticks(height - 2, 3), extra=extra)
    n = max(len(sv), len(extra), 1)
    _set_y(plt, axis.lo, axis.hi, axis.ticks, axis.labels, 0)
    _set_int_x(plt, *index_range(n), 1, n, width)
    if not any(v > 0 for v in sv if math.isfinite(v)):
        words = "σ_j: all 0 (G = 0), drawn at the floor"
    else:
        words = "σ_j" + (f" ({axis.below_text()}, drawn at the floor)" if axis.below else "")
    entries = [(MARKER, words, MAIN)]
    xs, ys = _spectrum_points(g, axis, width)
    draw_series(plt, xs, ys, MAIN, width)
    entries += _draw_thresholds(plt, g, tol, factor, axis, len(sv))
    if overlay is not None:
        entries += _draw_overlay(plt, overlay, axis, width, overlay_label)
    return axis, legend(*entries)


def _draw_overlay(plt: Any, o: SpectrumSection, axis: LogAxis, width: int, label: str) -> list:
    ov = log_axis([float(v) for v in o.singular_values], axis.floor)
    xs = list(range(1, len(ov.ys) + 1))
    if not use_markers(len(xs)):
        xs, ys = decimate(xs, list(ov.ys), max(32, 2 * width))
    else:
        ys = list(ov.ys)
    draw_series(plt, xs, ys, OVERLAY, width)
    words = f"{label or 'other run'}: rank {o.rank}" + (f", {ov.below} below" if ov.below else "")
    return [(MARKER, words, OVERLAY)]


def _on_axis(axis: LogAxis, v: float) -> bool:
    return math.isfinite(v) and v > 0 and axis.lo <= math.log10(v) <= axis.hi


def _draw_thresholds(plt: Any, g: SpectrumSection, tol: float, factor: float, axis: LogAxis, n: int) -> list:
    r = g.rank
    entries = [("│", f"rank {'' if g.rank_exact is not False else '≥ '}{r}", RANK)]
    if 0 < r < n:
        plt.vline(r + 0.5, RANK)
    if _on_axis(axis, tol):
        for edge in (tol * factor, tol / factor):  # the band first: the tolerance is drawn over it
            if _on_axis(axis, edge):
                plt.hline(math.log10(edge), BAND)
        plt.hline(math.log10(tol), TOL)
        entries.append(("─", f"tolerance {num(tol, 3)}", TOL))
        entries.append(("─", f"near band ×÷{factor:g}: {g.near_threshold} inside", BAND))
    gap = g.largest_gap
    if gap is not None and gap.after != r and 0 < gap.after < n:
        plt.vline(gap.after + 0.5, GAP)
        entries.append(("│", f"largest gap {num(gap.decades, 2)} decades", GAP))
    return entries


def draw_loss(plt: Any, steps: Sequence[int], losses: Sequence[float], total: int, width: int,
              height: int, pad: int = 0, x_labels: bool = True) -> tuple[LogAxis | None, Text]:
    """log10 loss against the step, x from 0 to the run's total steps; y labels padded to `pad` cells;
    no x tick row without `x_labels`."""
    reset_figure(plt)
    x0, x1 = step_range(total, steps[-1:])
    _set_int_x(plt, x0, x1, x0, x1, width, x_labels)
    if not losses:
        plt.ylim(0, 1)
        plt.yticks([], [])
        return None, legend(("─", "training loss, log scale: no training steps", MAIN))
    axis = loss_axis(losses, max_ticks(height - 2, 3))
    _set_y(plt, axis.lo, axis.hi, axis.ticks, axis.labels, pad)
    draw_series(plt, list(steps), list(axis.ys), MAIN, width)
    words = "training loss, log scale" + (f" ({axis.below_text()}, drawn at the floor)" if axis.below else "")
    return axis, legend((MARKER if use_markers(len(losses)) else "─", words, MAIN))


def draw_ranks(plt: Any, steps: Sequence[int], ranks: Sequence[int], total: int, width: int,
               height: int, pad: int = 0) -> Text:
    """rank(G) at the probe steps, integer y ticks, x from 0 to the run's total steps; y labels
    padded to `pad` cells."""
    reset_figure(plt)
    x0, x1 = step_range(total, steps[-1:])
    _set_int_x(plt, x0, x1, x0, x1, width)
    lo, hi = int_limits(list(ranks))
    ticks = int_ticks(lo, hi, max_ticks(height - 2, 2))
    _set_y(plt, lo, hi, ticks, [str(t) for t in ticks], pad)
    if not ranks:
        return legend((MARKER, "rank(G) during training: no probes", RANK))
    draw_series(plt, list(steps), list(ranks), RANK, width)
    return legend((MARKER if use_markers(len(ranks)) else "─",
                   f"rank(G) at {len(ranks)} probe step{'s' if len(ranks) != 1 else ''}, last {ranks[-1]}", RANK))
