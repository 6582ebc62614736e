"""The CLI's text for the sections beyond the rank (issue 18): the kernel split, the soft dimension, the
probe set, the local learning coefficient and the slice's metadata (its grid is in the NPZ)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .summary import why_missing

if TYPE_CHECKING:
    from ..schema import LlcSection, Report, SliceSection, SoftSection, SymmetrySection


def _table(title: str) -> Table:
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    return t


def _missing(r: Report, stage: str, what: str, enabled: bool, key: str) -> Text | None:
    """Why an enabled stage left no section (None when it is off, `key` false, or G was never computed)."""
    if r.G is None or not enabled:
        return None
    return Text(why_missing(r, stage, what, None, stage), style="dim")


def split_text(s: SymmetrySection) -> str:
    """'kernel 369 = 27 symmetry + 90 dead-unit + 252 data-dependent'."""
    return (f"kernel {s.kernel_dim} = {s.dim} symmetry + {s.dead_dim} dead-unit + {s.data_dependent_dim} "
            "data-dependent")


def symmetry_view(r: Report) -> Group | Text | None:
    s = r.symmetry
    if s is None:
        return _missing(r, "symmetry", "The kernel split", r.config.analysis.symmetry, "analysis.symmetry")
    t = _table("Which flat directions are symmetries")
    t.add_row("split", Text(split_text(s), style="bold green"))
    kinds = ", ".join(f"{k.count} {k.kind} (max residual {k.max_residual:.2g})" for k in s.kinds) or "none found"
    t.add_row("tangents", f"{s.tangents} ({kinds}); rank of their span {s.span_rank}")
    res = "—" if s.max_residual is None else f"{s.max_residual:.3g}"
    t.add_row("residual", f"max ‖Gᵀt‖/(‖G‖‖t‖) = {res}, against G's tolerance {s.tolerance:.3g}")
    t.add_row("dead units", f"{s.dead_units} units off on every training input ({s.dead_params} coordinates)")
    for w in s.why:
        t.add_row("", Text(w, style="yellow"))
    return Group(t, Text("\n".join(s.meaning), style="italic"))


def soft_view(r: Report) -> Group | Text | None:
    s = r.soft
    if s is None:
        return _missing(r, "soft", "The soft dimension", r.config.analysis.soft, "analysis.soft")
    t = _table("Soft dimension")
    lo, hi = s.window
    t.add_row(f"N_eff of {s.of}", f"{hi:.1f} at threshold/100 → {lo:.1f} at threshold·100 (rank {s.rank} at "
                                   f"{s.threshold:.3g}): {'a cliff' if s.cliff else 'a slope'}")
    t.add_row("curve", n_eff_row(s))
    if s.n_eff_H is not None:
        h = s.n_eff_H
        t.add_row("N_eff of H", f"{h.window[1]:.1f} → {h.window[0]:.1f} across the threshold {h.threshold:.3g} "
                                f"({'cliff' if h.cliff else 'slope'}), over H's positive eigenvalues: {h.rank} above "
                                f"the threshold, {h.left_out} negative ones left out (rank(H) counts |λ|)")
    if s.logdet and s.eps_threshold > 0:  # (G = 0 has no threshold to read it at)
        at = min(s.logdet, key=lambda p: abs(math.log(p.eps) - math.log(s.eps_threshold)))
        t.add_row("log det", f"log det(GGᵀ + εI) = {at.value:.4g} at ε = {at.eps:.3g} (the rank's threshold τ²)")
    return Group(t, Text("\n".join(s.meaning), style="italic"))


def n_eff_row(s: SoftSection, every: int = 4) -> str:
    """A few (z, N_eff) pairs across the grid, in one line."""
    pts = s.n_eff[::every]
    return "  ".join(f"{p.z:.0e}:{p.value:.3g}" for p in pts)


def probe_view(r: Report) -> Group | Text | None:
    p = r.probe
    if p is None:
        return _missing(r, "probe", "The probe set", bool(r.config.analysis.probe), "analysis.probe")
    t = _table("Probe set")
    t.add_row("inputs", p.source)
    t.add_row("rank(G)", f"{p.rank_train} on the training set, {p.rank_probe} on the probe set, {p.rank_both} on both")
    t.add_row("flat", f"{p.flat_on_both} of the {p.flat_on_train} training-flat directions stay flat on both")
    return Group(t, Text("\n".join(p.meaning), style="italic"))


def llc_headline(s: LlcSection) -> str:
    half_h = "—" if s.half_rank_H is None else f"{s.half_rank_H:g}"
    return f"λ̂ = {s.estimate:.4g} ± {s.se:.2g} (se)   rank(H)/2 = {half_h}   N/2 = {s.half_n:g}"


def llc_view(r: Report) -> Group | Text | None:
    s = r.llc
    if s is None:
        return _missing(r, "llc", "The learning coefficient", r.config.analysis.llc, "analysis.llc")
    d = s.diagnostics
    t = _table("Local learning coefficient (SGLD)")
    t.add_row("λ̂", Text(llc_headline(s), style="bold green"))
    t.add_row("chains", ", ".join(f"{v:.3g}" for v in d.chain_estimates) + f" (std {s.std:.3g}, R̂ {d.rhat:.3g})")
    t.add_row("settings", f"{s.chains} chains × {s.draws_done} draws after {s.burnin} burn-in; step {s.step:.3g}"
                          f"{' (auto)' if s.step_auto else ''}, γ {s.gamma:g}, β {s.beta:.3g} (nβ = {s.nbeta:.3g})")
    if s.quadratic is not None:
        t.add_row("quadratic", f"{s.quadratic:.4g}: λ̂ of the loss's quadratic model at this nβ and γ")
    for w in d.warnings:
        t.add_row("warning", Text(w, style="yellow"))
    return Group(t, Text(s.relation, style="italic"))


def slice_view(r: Report) -> Group | Text | None:
    s = r.slice
    if s is None:
        return _missing(r, "slices", "The loss slice", r.config.analysis.slices, "analysis.slices")
    t = _table("Loss slice (grid in the NPZ: slice_loss, slice_u, slice_v)")
    t.add_row("axes", f"u: {s.u_kind}; v: {s.v_kind}; both over ±{s.extent:.3g}, {s.shape[0]}×{s.shape[1]} points")
    t.add_row("loss", f"{s.loss_min:.3g} … {s.loss_max:.3g} (at θ {s.loss_at_theta:.3g}); rise along u "
                      f"{s.rise_u:.3g}, along v {s.rise_v:.3g}")
    return Group(t, slice_map(s), Text("\n".join(s.meaning), style="italic"))


def slice_map(s: SliceSection) -> Text:
    """The slice's grid as a heat map with its range (render/heatmap.py), log shades of loss − min so a flat
    valley shows; a report that kept the grid only in its NPZ says so."""
    from .heatmap import heatmap_text

    if not s.loss:
        return Text("(this report keeps the slice's grid only in its NPZ)", style="dim")
    return heatmap_text(s.loss, s.a, s.b, a_label=f"a along u ({s.u_kind})", b_label=f"b along v ({s.v_kind})",
                        log=True)


def views() -> list:
    """The views of the sections beyond the rank, in the order they are printed."""
    return [symmetry_view, soft_view, probe_view, llc_view, slice_view]


# --------------------------------------------------------------------------- text plots for the pane


def line_plot(series: list[tuple[list[float], list[float], str, str]], width: int = 60, height: int = 10,
              vline: float | None = None, x_label: str = "", y_top: float | None = None) -> Text:
    """Curves as characters: each series (xs, ys, mark, style) drawn column by column (interpolated in x),
    y from 0 to `y_top` (the largest y unless given), a dotted vertical line at x = `vline`, the x range
    and `x_label` under it."""
    xs_all = [x for xs, _, _, _ in series for x in xs]
    if not xs_all or width < 8 or height < 2:
        return Text("(nothing to plot)", style="dim")
    x0, x1 = min(xs_all), max(xs_all)
    top = y_top if y_top is not None else max((max(ys) for _, ys, _, _ in series if ys), default=1.0)
    top = top if top > 0 else 1.0
    grid = [[(" ", "")] * width for _ in range(height)]
    col = (lambda x: round((x - x0) / (x1 - x0) * (width - 1))) if x1 > x0 else (lambda x: 0)
    if vline is not None and x0 <= vline <= x1:
        for row in grid:
            row[col(vline)] = ("┆", "yellow")
    for xs, ys, mark, style in series:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        sx, sy = [xs[i] for i in order], [ys[i] for i in order]
        for c in range(width):
            x = x0 + (x1 - x0) * c / max(width - 1, 1)
            if x < sx[0] or x > sx[-1]:
                continue
            y = _interp(x, sx, sy)
            r = height - 1 - min(height - 1, max(0, round(y / top * (height - 1))))
            grid[r][c] = (mark, style)
    out = Text()
    for i, row in enumerate(grid):
        label = f"{top:>7.3g} " if i == 0 else ("      0 " if i == height - 1 else "        ")
        out.append(label, style="dim")
        for ch, style in row:
            out.append(ch, style=style)
        out.append("\n")
    out.append(f"        {x0:<.3g}".ljust(width // 2 + 8) + f"{x1:>.3g}".rjust(width - width // 2), style="dim")
    if x_label:
        out.append("\n        " + x_label, style="dim")
    return out


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    for i in range(1, len(xs)):
        if x <= xs[i]:
            span = xs[i] - xs[i - 1]
            t = 0.0 if span == 0 else (x - xs[i - 1]) / span
            return ys[i - 1] + t * (ys[i] - ys[i - 1])
    return ys[-1]


def n_eff_plot(s: SoftSection, width: int = 60, height: int = 10) -> Text:
    """N_eff(z) of the GGN (or GGᵀ) and of H against log10 z, the rank's threshold marked."""
    series = [([math.log10(p.z) for p in s.n_eff], [p.value for p in s.n_eff], "•", "cyan")]
    if s.n_eff_H is not None:
        h = s.n_eff_H.points
        series.append(([math.log10(p.z) for p in h], [p.value for p in h], "·", "magenta"))
    plot = line_plot(series, width, height, vline=math.log10(s.threshold) if s.threshold > 0 else None,
                     x_label=f"log10 z  (┆ the rank's threshold; • N_eff of {s.of}"
                             + ("; · N_eff of H)" if s.n_eff_H is not None else ")"))
    return plot


def logdet_plot(s: SoftSection, width: int = 60, height: int = 8) -> Text:
    """log det(GGᵀ + εI) against log10 ε (shifted so its minimum is 0), the threshold τ² marked."""
    xs = [math.log10(p.eps) for p in s.logdet]
    ys = [p.value for p in s.logdet]
    lo = min(ys) if ys else 0.0
    return line_plot([(xs, [y - lo for y in ys], "•", "green")], width, height,
                     vline=math.log10(s.eps_threshold) if s.eps_threshold > 0 else None,
                     x_label=f"log10 ε  (log det {'−' if lo >= 0 else '+'} {abs(lo):.4g}; ┆ τ²)")


def trace_plot(s: LlcSection, width: int = 60, height: int = 8) -> Text:
    """Each chain's loss trace (thinned) against the draw, the loss at θ as the floor."""
    d = s.diagnostics
    marks = "•·+x*o"
    styles = ("cyan", "magenta", "green", "yellow", "blue", "red")
    series = [([i * d.trace_stride for i in range(len(tr))], [v - d.init_loss for v in tr], marks[c % 6], styles[c % 6])
              for c, tr in enumerate(d.traces) if tr]
    finite = [v for _, ys, _, _ in series for v in ys if math.isfinite(v)]
    if not finite:
        return Text("(no finite draws)", style="dim")
    return line_plot(series, width, height, y_top=max(finite) if max(finite) > 0 else 1.0,
                     x_label="draw  (loss − Lₙ(θ), one mark per chain)")

