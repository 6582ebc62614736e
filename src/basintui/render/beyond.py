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
    from ..schema import LlcSection, Report, SoftSection, SymmetrySection


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
        t.add_row("N_eff of H", f"rank {h.rank} at {h.threshold:.3g}; {h.window[1]:.1f} → {h.window[0]:.1f} "
                                f"({'cliff' if h.cliff else 'slope'}; {h.left_out} negative eigenvalues left out)")
    at = min(s.logdet, key=lambda p: abs(math.log(p.eps) - math.log(s.eps_threshold))) if s.logdet else None
    if at is not None:
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
    return Group(t, Text("\n".join(s.meaning), style="italic"))


def views() -> list:
    """The views of the sections beyond the rank, in the order they are printed."""
    return [symmetry_view, soft_view, probe_view, llc_view, slice_view]
