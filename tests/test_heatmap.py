"""The text heat map (render/heatmap.py): a known grid gives known shades, order and labelled range."""

from __future__ import annotations

import numpy as np
import pytest
from rich.text import Text

from basintui.render.heatmap import (
    MISSING,
    SHADES,
    heatmap_lines,
    heatmap_text,
    shade_levels,
)


def test_shades_follow_the_values_linearly():
    grid = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
    lv = shade_levels(grid)
    assert lv.tolist() == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]  # ⌊x/4 · 5⌋ capped at 4
    assert shade_levels(np.array([[0.0, 0.79, 0.8, 1.0]])).tolist() == [[0, 3, 4, 4]]


def test_log_shades_separate_small_values():
    grid = np.array([[0.0, 1e-4, 1e-2, 1.0]])
    assert shade_levels(grid).tolist() == [[0, 0, 0, 4]]
    # log10(x − min + 1e-6): −6, −4.0, −2.0, 0 → t = 0, 0.33, 0.67, 1
    assert shade_levels(grid, log=True).tolist() == [[0, 1, 3, 4]]
    assert "log shades" in heatmap_lines(grid, [0.0], [0.0, 1.0, 2.0, 3.0], log=True)[0]


def test_lines_put_the_largest_a_on_top_and_label_the_range():
    a = np.array([-1.0, 0.0, 1.0])
    b = np.array([-2.0, 0.0, 2.0])
    grid = np.array([[0.0, 0.0, 0.0],  # a = −1: the bottom row
                     [0.0, 1.0, 2.0],
                     [4.0, 4.0, 4.0]])  # a = +1: the top row
    lines = heatmap_lines(grid, a, b, a_label="a (u: flat)", b_label="b (v: top)")
    assert lines[0].startswith("loss min 0  max 4  (linear shades")
    assert lines[1].strip() == "b (v: top) →"
    rows = lines[2:5]
    full, empty = SHADES[-1] * 2, SHADES[0] * 2
    assert rows[0] == f"+1 │{full * 3}│"
    assert rows[1] == f" 0 │{empty}{SHADES[1] * 2}{SHADES[2] * 2}│"
    assert rows[2] == f"-1 │{empty * 3}│"
    assert lines[5].strip().startswith("-2") and lines[5].strip().endswith("+2")
    assert lines[5].index("-2") == len("+1 │")  # the b ticks line up with the cells
    assert lines[-1].endswith("a (u: flat)")
    t = heatmap_text(grid, a, b)
    assert isinstance(t, Text) and t.plain.split("\n")[2:5] == [r.replace("(u: flat)", "") for r in rows]


def test_constant_and_missing_cells_are_said():
    a = b = np.array([-1.0, 0.0, 1.0])
    grid = np.full((3, 3), 2.5)
    lines = heatmap_lines(grid, a, b)
    assert lines[0].startswith("loss constant 2.5")
    grid[0, 0] = np.nan
    lines = heatmap_lines(grid, a, b)
    assert "not evaluated" in lines[0] and MISSING in lines[4]
    assert heatmap_lines(np.full((3, 3), np.nan), a, b)[0] == "loss: no values"
    with pytest.raises(ValueError, match="shape"):
        heatmap_lines(np.zeros((2, 3)), a, b)
