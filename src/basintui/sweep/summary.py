"""The sweep's answer per point, from the journal: the runs, the fraction whose G is rank-deficient and the
fraction whose Hessian is (by the Weyl count), each with a 95% Wilson interval, the mean excess kernel
dimension (kernel − generic) and N/(k·d). Written as `DIR/summary.csv` and `DIR/sweep.json`
(`basintui.sweep/1`), each atomically. Torch-free."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..schema.sweep import Interval, PointSummary, RunRow, SweepSummary, encode_summary
from .grid import Grid, toml_value
from .journal import latest, pair

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile

DEFINITIONS = {
    "g_deficient": "rank(G) < min(N, kd), the rank decided in float64 by the report's one rule (G.tolerance_rule); "
                   "undecided (left out) when the rank is only a lower bound below min(N, kd)",
    "hessian_deficient": "fewer of H's eigenvalues outside the Weyl band [−b, b] (b = ‖H − GGN‖₂, or the "
                         "resolution floor) than min(N, kd) (min(N, k(d − 1)) for cross-entropy on logits); "
                         "undecided (left out) when the Hessian is off or the count is a lower bound below that",
    "interval": "95% Wilson score interval of the fraction",
    "mean_excess_kernel": "mean over ok runs of kernel_dim − generic_dim = (N − rank) − (N − kd), where N ≥ kd",
    "near_threshold": "G's singular values within a factor 2 of the rank threshold: the rank there is decided "
                      "by rounding; near_threshold_runs counts ok runs with at least one",
    "overparam_ratio": "N / (k·d)",
}


def wilson(count: int, of: int, z: float = Z95) -> Interval:
    """The Wilson score interval for count successes in `of` trials (None values when of = 0)."""
    if of <= 0:
        return Interval(count=0, of=0, fraction=None, low=None, high=None)
    p = count / of
    z2 = z * z
    denom = 1.0 + z2 / of
    center = (p + z2 / (2 * of)) / denom
    half = z * math.sqrt(p * (1 - p) / of + z2 / (4 * of * of)) / denom
    low = 0.0 if count == 0 else max(center - half, 0.0)
    high = 1.0 if count == of else min(center + half, 1.0)
    return Interval(count=count, of=of, fraction=p, low=low, high=high)


def _fraction(rows: list[RunRow], attr: str) -> Interval:
    decided = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
    return wilson(sum(bool(v) for v in decided), len(decided))


def _same(values: list[Any]) -> Any:
    return values[0] if values and all(v == values[0] for v in values) else None


def summarise_point(point: dict[str, Any], rows: list[RunRow], seeds: list[int]) -> PointSummary:
    ok = [r for r in rows if r.status == "ok"]
    excess = [r.kernel_dim - r.generic_dim for r in ok if r.kernel_dim is not None and r.generic_dim is not None]
    n = _same([r.n_params for r in ok])
    kd = _same([r.n_outputs for r in ok])
    secs = [r.seconds for r in ok if r.seconds is not None]
    return PointSummary(
        point=point, runs=len(ok), failed=sum(r.status == "failed" for r in rows),
        cancelled=sum(r.status == "cancelled" for r in rows), missing=len(seeds) - len(rows),
        n_params=n, n_outputs=kd, overparam_ratio=(n / kd) if n and kd else None,
        g_deficient=_fraction(ok, "g_deficient"), hessian_deficient=_fraction(ok, "hessian_deficient"),
        mean_excess_kernel=(sum(excess) / len(excess)) if excess else None,
        near_threshold_runs=sum(bool(r.near_threshold) for r in ok),
        mean_seconds=(sum(secs) / len(secs)) if secs else None)


def summarise(rows: list[RunRow], points: list[dict[str, Any]], seeds: list[int], *, preset: str,
              sets: list[str], grid: Grid, backend: str) -> SweepSummary:
    """Per point of the grid, from each (point, seed)'s final row (rows of other points are ignored)."""
    final = latest(rows)
    wanted = set(seeds)
    out = []
    complete = True
    for point in points:
        mine = [final[pair(point, s)] for s in seeds if pair(point, s) in final]
        mine = [r for r in mine if r.seed in wanted]
        complete &= all(r.status in ("ok", "failed") for r in mine) and len(mine) == len(seeds)
        out.append(summarise_point(point, mine, seeds))
    return SweepSummary(preset=preset, sets=list(sets), grid=grid.as_dict(), seeds=list(seeds), backend=backend,
                        complete=complete, definitions=DEFINITIONS, points=out)


CSV_COLUMNS = ["runs", "failed", "cancelled", "missing", "n_params", "n_outputs", "overparam_ratio",
               "g_deficient", "g_deficient_of", "g_fraction", "g_low", "g_high",
               "h_deficient", "h_deficient_of", "h_fraction", "h_low", "h_high",
               "mean_excess_kernel", "near_threshold_runs", "mean_seconds"]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def csv_text(summary: SweepSummary) -> str:
    keys = list(summary.grid)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys + CSV_COLUMNS)
    for p in summary.points:
        g, h = p.g_deficient, p.hessian_deficient
        values = [p.runs, p.failed, p.cancelled, p.missing, p.n_params, p.n_outputs, p.overparam_ratio,
                  g.count, g.of, g.fraction, g.low, g.high, h.count, h.of, h.fraction, h.low, h.high,
                  p.mean_excess_kernel, p.near_threshold_runs, p.mean_seconds]
        w.writerow([toml_value(p.point[k]) for k in keys] + [_cell(v) for v in values])
    return buf.getvalue()


def write(summary: SweepSummary, directory: str | Path) -> list[Path]:
    d = Path(directory)
    text = csv_text(summary).encode()
    data = encode_summary(summary)
    return [write_atomic(d / "summary.csv", lambda fh: fh.write(text)),
            write_atomic(d / "sweep.json", lambda fh: fh.write(data))]


__all__ = ["DEFINITIONS", "csv_text", "summarise", "summarise_point", "wilson", "write"]
