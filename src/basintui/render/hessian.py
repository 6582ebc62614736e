"""Headless views of the Hessian section of the typed report (schema.Report.hessian; the level-set view
is in render/levelset.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .fmt import fmt

if TYPE_CHECKING:
    from ..schema import HessianSection, Report

VERDICT_STYLE = {"holds": "bold green", "holds_up_to_residual": "bold green", "fails": "bold red",
                 "not_applicable": "bold yellow"}


def _g(v: float | int | str | None, digits: int = 3) -> str:
    return fmt(v, digits)


def _yes(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def rule_rows(h: HessianSection) -> list[tuple[str, str]]:
    """The one rank rule, one row each for G, GGN and H: rule, rtol, threshold, and whether H's floor applied."""
    rr = h.rank_rule
    if rr is None:
        return [("tolerance", f"{_g(h.tolerance)} = {h.tolerance_rule or ''}")]
    g, ggn, hh = rr.G, rr.GGN, rr.H
    rows = [
        ("rule for G", f"σ(G) > τ_G = {_g(g.threshold)}   ({g.rule or ''}; rtol = {_g(g.rtol)})"),
        ("rule for GGN", f"σ(G·Q^½) > τ_GGN = {_g(ggn.threshold)}   "
                         f"({ggn.from_ if ggn.from_ is not None else (ggn.rule or '')})"),
        ("rule for H", f"|λ| > τ_H = {_g(hh.threshold)} = max(q_max·τ_G² = {_g(hh.from_G)}, floor "
                       f"σ₁²·q_max·N·ε = {_g(hh.floor)}): "
                       + ("floor applied" if hh.floor_applied else "G's threshold governs, floor not applied")),
    ]
    near = [f"{name} {part.near}" for name, part in (("G", g), ("GGN", ggn), ("H", hh)) if part.near]
    if near:
        rows.append(("near threshold", "within 2× of the threshold (rounding decides them): " + ", ".join(near)))
    return rows


def weyl_rows(h: HessianSection) -> list[tuple[str, str]]:
    """Claim 3 up to the residual: ‖R‖₂, the band, and the two Weyl counts with what they are counted from."""
    w = h.weyl
    if w is None:
        return []
    band = f"±{_g(w.band)}" + (f" (‖R‖₂ = {_g(w.residual_norm)} widened to the resolution)"
                               if w.band_widened else f" = ±‖R‖₂ ({w.residual_norm_from or ''})")
    exact = w.outside_band_exact is not False
    return [
        ("Weyl band", band),
        ("outside the band", f"{'' if exact else '≥ '}{w.outside_band} of H's {w.n_eigenvalues_H} eigenvalues "
                             f"({w.above_band} above, {w.below_band} below; Weyl: ≤ rank(GGN) = {w.rank_ggn})"
                             + ("" if exact else " — a lower bound: Lanczos found only the extremes")),
        ("GGN above 2‖R‖", f"{w.ggn_above_2r} of GGN's {w.n_eigenvalues_GGN} eigenvalues (so at least that many "
                           f"of H's lie above the band); hidden by the residual's scale: {w.hidden_by_residual}"),
    ]


class Series(NamedTuple):
    """x (j) and y (log10 |λ|) of one plotted series."""

    xs: list[int]
    ys: list[float]


class EigenSeries(NamedTuple):
    """What the eigenvalue plot draws: H's positive and non-positive eigenvalues, GGN's, the band edge."""

    pos: Series
    neg: Series
    n: int
    ggn: Series | None
    band: float | None


def _finite(values: list[float] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and math.isfinite(v)]


def eigen_series(h: HessianSection) -> EigenSeries | None:
    """H's eigenvalues for a plot: log10 |λ| by |λ| descending, split by sign, GGN's beside them, and the band
    edge log10 b. Points below 1e-18·max|λ| are drawn at that floor."""
    eig = _finite(h.eigenvalues)
    if not eig:
        return None
    vals = sorted(eig, key=abs, reverse=True)
    top = max(abs(v) for v in vals) or 1.0
    floor = top * 1e-18

    def lg(v: float) -> float:
        return math.log10(max(abs(v), floor))

    js = list(range(1, len(vals) + 1))
    ggn = sorted((v for v in _finite(h.ggn_eigenvalues) if v > floor), reverse=True)
    w = h.weyl
    return EigenSeries(
        pos=Series([j for j, v in zip(js, vals) if v > 0], [lg(v) for v in vals if v > 0]),
        neg=Series([j for j, v in zip(js, vals) if v <= 0], [lg(v) for v in vals if v <= 0]),
        n=len(vals),
        ggn=Series(list(range(1, len(ggn) + 1)), [lg(v) for v in ggn]) if ggn else None,
        band=math.log10(w.band) if w is not None and w.band and w.band > 0 else None,
    )


def decimate(xs: list, ys: list, cap: int) -> tuple[list, list]:
    """At most about `cap` evenly spaced points, keeping both ends (plotext freezes on huge inputs)."""
    n = len(xs)
    if n <= cap or cap < 2:
        return list(xs), list(ys)
    idx = sorted({round(i * (n - 1) / (cap - 1)) for i in range(cap)})
    return [xs[i] for i in idx], [ys[i] for i in idx]


class Markers(NamedTuple):
    """One character per series, for a colourless terminal."""

    pos: str = "+"
    neg: str = "x"
    ggn: str = "·"
    band: str = "-"


MARKERS = Markers()


def draw_eigenvalues(plt: Any, h: HessianSection, cap: int, marker: str | None = "braille",
                     labels: bool = True) -> bool:
    """H's eigenvalues (log10 |λ| against j on a log axis, by |λ|) with GGN's and the band edge |λ| = ‖R‖₂ drawn as
    lines, on a plotext figure. marker None: a distinct character per series (MARKERS), for no colour."""
    ser = eigen_series(h)
    if ser is None:
        return False

    def mk(char: str) -> str:
        return char if marker is None else marker

    def lab(text: str) -> str | None:
        return text if labels else None

    if marker is None and not labels:
        plt.title(f"log10|λ| by |λ|: {MARKERS.pos} H λ>0  {MARKERS.neg} H λ≤0  {MARKERS.ggn} GGN  "
                  f"{MARKERS.band} band ±‖R‖₂")
    else:
        plt.title("log10 |λ| of H by |λ|; line: the band ±‖R‖₂ (|λ| = ‖R‖₂)")
    plt.xlabel("j (log scale)")
    plt.xscale("log")
    if ser.band is not None:
        plt.plot([1, ser.n], [ser.band] * 2, marker=mk(MARKERS.band), label=lab("band ±‖R‖₂"))
    if ser.ggn is not None:
        plt.scatter(*decimate(*ser.ggn, cap), marker=mk(MARKERS.ggn), label=lab("GGN"))
    if ser.pos.xs:
        plt.scatter(*decimate(*ser.pos, cap), marker=mk(MARKERS.pos), label=lab("H, λ > 0"))
    if ser.neg.xs:
        plt.scatter(*decimate(*ser.neg, cap), marker=mk(MARKERS.neg), label=lab("H, λ ≤ 0"))
    return True


def eigen_plot_text(h: HessianSection, width: int = 78, height: int = 16) -> Text | None:
    """The plot for a terminal, as text (the CLI summary), its legend below it."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    if not draw_eigenvalues(plt, h, cap=2 * width, marker=None, labels=False):
        return None
    out = plt.uncolorize(plt.build())
    plt.clear_figure()
    legend = "H's points above the line |λ| = ‖R‖₂ lie outside the band [−‖R‖₂, ‖R‖₂]"
    return Text(out.rstrip("\n") + "\n" + legend)


def _facts_table(title: str) -> Table:
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    return t


def ranks_table(h: HessianSection) -> Table:
    """rank(H), rank(GGN), rank(H − GGN), the rank rule, the ranks at other rtols, λ range, method."""
    t = _facts_table("Hessian of the total loss vs Gauss-Newton GQGᵀ")
    t.add_row("rank(H)", Text(f"rank(H) = {_g(h.rank)}", style="bold") if h.rank is not None
              else Text(f"rank(H) not measured ({h.rank_method})"))
    ggn_ge = "" if h.rank_ggn_exact is not False else "≥ "
    t.add_row("rank(GGN)", f"rank(GGN) = {ggn_ge}{h.rank_ggn}   (rank(G) = {ggn_ge}{h.rank_G}; resolvable at "
                           f"τ_H: {_g(h.rank_G_resolvable)})")
    t.add_row("rank(H − GGN)", _g(h.rank_residual))
    for key, value in rule_rows(h):
        t.add_row(key, value)
    if h.rank_at_rtol:
        t.add_row("rank at rtol", "; ".join(
            f"{rtol}: G {_g(v.G)}, GGN {_g(v.GGN)}, H {_g(v.H)}, H − GGN {_g(v.residual)}"
            + (" (floor)" if v.floor_applied else "") for rtol, v in h.rank_at_rtol.items()))
        t.add_row("", Text("at rtol r: G and GGN count σ > r·σ₁; H counts |λ| > max(q_max·(r·σ₁(G))², floor)",
                           style="dim"))
    t.add_row("eigenvalues", f"λ_max = {_g(h.lambda_max, 4)}, λ_min = {_g(h.lambda_min, 4)}"
              + (f", {h.n_negative} negative" if h.n_negative is not None else ""))
    t.add_row("method", f"{h.method}; loss = {h.reduction}")
    t.add_row("loss in output space", f"{h.loss_formula} ({h.loss_hessian})")
    return t


def hypotheses_table(h: HessianSection) -> Table:
    """Claim 3's hypotheses: measured value, threshold, holds."""
    hyp = Table(title="Claim 3's hypotheses", title_justify="left", box=None, pad_edge=False)
    hyp.add_column("hypothesis", style="bold")
    hyp.add_column("measured")
    hyp.add_column("threshold")
    hyp.add_column("holds")
    cp, zr, q = h.hypotheses.critical_point, h.hypotheses.zero_residual, h.hypotheses.loss_hessian_positive
    hyp.add_row("critical point ‖∇θL‖", _g(cp.value), _g(cp.threshold), _yes(cp.holds))
    hyp.add_row("zero residual ‖∇_Fℓ‖", _g(zr.value), _g(zr.threshold), _yes(zr.holds))
    hyp.add_row(f"Q diagonal, positive ({h.loss_hessian})", f"min eig {_g(q.value)}", _g(q.threshold),
                _yes(q.holds and h.loss_hessian != "full"))
    hyp.add_row("‖H − GGN‖ / ‖H‖", _g(h.residual_rel), "—", "")
    return hyp


def hessian_section(h: HessianSection) -> Group:
    """The Hessian section: ranks and rule, hypotheses, the Weyl counts, Claim 3's verdict, the plot, notes."""
    parts: list[RenderableType] = [ranks_table(h), Text(""), hypotheses_table(h), Text("")]
    wr = weyl_rows(h)
    if wr:
        wt = _facts_table("Claim 3 up to the residual (Weyl)")
        for key, value in wr:
            wt.add_row(key, value)
        parts += [wt, Text("")]
    c3 = h.claim3
    verdict = Text.assemble(("Claim 3 (rank H = rank G): ", "bold"), (c3.verdict, VERDICT_STYLE.get(c3.verdict, "")))
    parts += [verdict, Text(c3.why, style="italic")]
    plot = eigen_plot_text(h)
    if plot is not None:
        parts += [Text(""), plot]
    notes = [Text(n, style="dim") for n in h.notes or []]
    return Group(*parts, *notes)


def hessian_view(r: Report) -> RenderableType | None:
    return None if r.hessian is None else hessian_section(r.hessian)
