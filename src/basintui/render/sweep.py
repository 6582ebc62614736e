"""A sweep in text: the fraction of runs rank-deficient (G and, where measured, the Hessian by its Weyl
count) against N/(k·d) with 95% Wilson intervals, a table per point, and the progress line on stderr."""

from __future__ import annotations

import math
import time
from typing import TextIO

from ..schema.sweep import PointSummary, SweepSummary

ROWS = 11  # 0.0, 0.1, …, 1.0


def _x_positions(ratios: list[float], width: int) -> list[int]:
    lo, hi = min(ratios), max(ratios)
    use_log = lo > 0 and hi / lo > 8
    f = (lambda r: math.log10(r)) if use_log else (lambda r: r)
    a, b = f(lo), f(hi)
    if b - a <= 0:
        return [width // 2 for _ in ratios]
    return [round((f(r) - a) / (b - a) * (width - 2)) for r in ratios]  # the H column sits one to the right


def _row(v: float) -> int:
    return ROWS - 1 - round(v * (ROWS - 1))


def plot(summary: SweepSummary, width: int = 60) -> str:
    """G (`G`) and Hessian (`H`) fractions rank-deficient per point at x = N/(k·d), intervals as `│`."""
    pts = [p for p in summary.points if p.overparam_ratio is not None and p.g_deficient.fraction is not None]
    if not pts:
        return "(nothing to draw: no point has a finished run)"
    xs = _x_positions([p.overparam_ratio for p in pts], width)
    grid = [[" "] * width for _ in range(ROWS)]
    for p, x in zip(pts, xs):
        for iv, mark, dx in ((p.g_deficient, "G", 0), (p.hessian_deficient, "H", 1)):
            if iv.fraction is None:
                continue
            col = x + dx
            for r in range(_row(iv.high), _row(iv.low) + 1):
                if grid[r][col] == " ":
                    grid[r][col] = "│"
            grid[_row(iv.fraction)][col] = mark
    lines = ["fraction of runs rank-deficient (G: rank(G) < min(N, kd); H: Weyl count < its cap; │ 95% Wilson)"]
    for r, cells in enumerate(grid):
        label = f"{(ROWS - 1 - r) / (ROWS - 1):.1f}" if r % 5 == 0 else ""
        lines.append(f"{label:>4} ┤{''.join(cells)}")
    lines.append("     └" + "─" * width)
    ratios = [p.overparam_ratio for p in pts]
    lo, hi = min(ratios), max(ratios)
    scale = "log" if lo > 0 and hi / lo > 8 else "linear"
    left, right = f"{lo:.3g}", f"{hi:.3g}"
    lines.append("      " + left + " " * max(width - len(left) - len(right), 1) + right)
    lines.append(f"      N/(k·d), {scale} scale")
    return "\n".join(lines)


def _pct(iv) -> str:
    if iv.fraction is None:
        return "—"
    return f"{iv.count}/{iv.of} = {iv.fraction:.2f} [{iv.low:.2f}, {iv.high:.2f}]"


def table(summary: SweepSummary) -> str:
    from ..sweep.grid import point_label

    rows = [("point", "N/(kd)", "runs", "G deficient [95%]", "H deficient [95%]", "excess ker", "near")]
    for p in summary.points:
        rows.append((point_label(p.point), f"{p.overparam_ratio:.3g}" if p.overparam_ratio else "—",
                     _runs(p), _pct(p.g_deficient), _pct(p.hessian_deficient),
                     f"{p.mean_excess_kernel:.3g}" if p.mean_excess_kernel is not None else "—",
                     str(p.near_threshold_runs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _runs(p: PointSummary) -> str:
    extra = [f"{n} {w}" for n, w in ((p.failed, "failed"), (p.cancelled, "cancelled"), (p.missing, "missing")) if n]
    return str(p.runs) + (f" ({', '.join(extra)})" if extra else "")


class ProgressLine:
    """`sweep DONE/TOTAL runs [bar] elapsed, about S s left` on stderr: redrawn in place on a terminal,
    otherwise one line every `every_s` seconds and at the end."""

    def __init__(self, total: int, stream: TextIO, *, tty: bool | None = None, every_s: float = 10.0,
                 width: int = 24) -> None:
        self.total, self.stream, self.width, self.every_s = total, stream, width, every_s
        self.tty = stream.isatty() if tty is None else tty
        self.done = self.failed = 0
        self.t0 = time.monotonic()
        self.last = 0.0

    def text(self) -> str:
        elapsed = time.monotonic() - self.t0
        filled = round(self.width * self.done / self.total) if self.total else self.width
        bar = "█" * filled + "░" * (self.width - filled)
        left = (f", about {elapsed / self.done * (self.total - self.done):.0f} s left"
                if 0 < self.done < self.total else "")
        failed = f", {self.failed} failed" if self.failed else ""
        return f"sweep {self.done}/{self.total} runs{failed} {bar} {elapsed:.0f} s{left}"

    def update(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.text() + "\x1b[K")
            self.stream.flush()
        elif now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            self.stream.write("basintui: " + self.text() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
