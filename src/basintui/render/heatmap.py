"""A 2-D grid (a loss slice) as a text heat map for the terminal: shaded cells, the value range, axis labels.

Rows are the first axis `a` with its largest value at the top (the way a y axis reads), columns the second
axis `b` from left to right; each cell is two characters wide (a terminal cell is about twice as tall as it
is wide), shaded by SHADES from the lowest value (' ') to the highest ('█'), linearly between the grid's
finite min and max (or log10 of the values above the min when `log`). A cell that was not evaluated (nan,
after a cancel) is '··'; a constant grid is drawn all at the lowest shade and says so. Torch-free.

API: shade_levels(grid, log=False) -> int array (-1 = no value); heatmap_lines(grid, a, b, ...) -> list[str]
(plain text); heatmap_text(...) -> rich Text (the same lines, each shade in its colour).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.text import Text

from .fmt import fmt

SHADES = (" ", "░", "▒", "▓", "█")
STYLES = ("", "blue", "cyan", "yellow", "bold red")
MISSING = "··"


def _range(grid: np.ndarray) -> tuple[float, float] | None:
    fin = grid[np.isfinite(grid)]
    return (float(fin.min()), float(fin.max())) if fin.size else None


def shade_levels(grid: np.ndarray, log: bool = False) -> np.ndarray:
    """Each cell's shade index 0 … len(SHADES) − 1 (−1 where the value is not finite). Linear: level =
    ⌊(x − min)/(max − min) · L⌋ capped at L − 1; log: the same on log10(x − min + s), s = (max − min)·1e-6."""
    g = np.asarray(grid, dtype=np.float64)
    out = np.full(g.shape, -1, dtype=int)
    rng = _range(g)
    if rng is None:
        return out
    lo, hi = rng
    fin = np.isfinite(g)
    if hi <= lo:
        out[fin] = 0
        return out
    x = g[fin]
    if log:
        s = (hi - lo) * 1e-6
        x, lo, hi = np.log10(x - lo + s), math.log10(s), math.log10(hi - lo + s)
    t = (x - lo) / (hi - lo)
    out[fin] = np.minimum(len(SHADES) - 1, np.floor(t * len(SHADES)).astype(int))
    return out


def _tick(x: float) -> str:
    return "0" if x == 0 else f"{x:+.3g}"


def heatmap_lines(grid: np.ndarray, a: Sequence[float], b: Sequence[float], *, a_label: str = "a",
                  b_label: str = "b", value: str = "loss", log: bool = False) -> list[str]:
    """The heat map as plain lines: the range line, the b-axis title, the rows (a ticks at the top, middle
    and bottom row), the b ticks, the a-axis title."""
    return [line.plain for line in _lines(grid, a, b, a_label, b_label, value, log)]


def heatmap_text(grid: np.ndarray, a: Sequence[float], b: Sequence[float], *, a_label: str = "a",
                 b_label: str = "b", value: str = "loss", log: bool = False) -> Text:
    """The heat map as one rich Text (newline-joined), shades coloured by STYLES."""
    return Text("\n").join(_lines(grid, a, b, a_label, b_label, value, log))


def _lines(grid, a, b, a_label, b_label, value, log) -> list[Text]:
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2 or g.shape != (len(a), len(b)):
        raise ValueError(f"grid: shape (len(a), len(b)) = ({len(a)}, {len(b)}) is needed (got {g.shape})")
    levels = shade_levels(g, log)
    rng = _range(g)
    lines = [Text(_range_line(rng, value, log, bool((levels < 0).any())))]
    labels = {0: _tick(a[-1]), len(a) // 2: _tick(a[len(a) // 2]), len(a) - 1: _tick(a[0])}
    width = max(len(s) for s in labels.values())
    lines.append(Text(" " * (width + 2) + f"{b_label} →"))
    for r in range(len(a)):  # top row: the largest a
        i = len(a) - 1 - r
        row = Text(f"{labels.get(r, ''):>{width}} │")
        for j in range(len(b)):
            lv = int(levels[i, j])
            row.append(MISSING if lv < 0 else SHADES[lv] * 2, style=STYLES[lv] if lv >= 0 else "dim")
        row.append("│")
        lines.append(row)
    left, right = _tick(b[0]), _tick(b[-1])
    inner = 2 * len(b)
    mid = _tick(b[len(b) // 2])
    ticks = left + mid.center(inner - len(left) - len(right)) + right if inner >= len(left + mid + right) + 2 \
        else left + " " * max(1, inner - len(left) - len(right)) + right
    lines.append(Text(" " * (width + 2) + ticks))
    lines.append(Text(f"{'↑':>{width}}  {a_label}"))
    return lines


def _range_line(rng: tuple[float, float] | None, value: str, log: bool, missing: bool) -> str:
    if rng is None:
        return f"{value}: no values"
    lo, hi = rng
    scale = "log shades of value − min" if log else "linear shades"
    text = f"{value} min {fmt(lo)}  max {fmt(hi)}  ({scale}: '{SHADES[0]}' lowest … '{SHADES[-1]}' highest)"
    if hi <= lo:
        text = f"{value} constant {fmt(lo)} over the whole grid"
    if missing:
        text += f"; '{MISSING}' not evaluated"
    return text
