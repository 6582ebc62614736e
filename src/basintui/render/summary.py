"""The summary a headless run prints at the end, built from the typed report (schema.Report)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .fmt import fmt

if TYPE_CHECKING:
    from ..schema import Report, SpectrumSection, SymmetrySection

_fmt = fmt
REGIME_WORDS = {"over": "over-parameterised (N > kd)", "under": "under-parameterised (N < kd)",
                "square": "square (N = kd)"}


def run_table(r: Report) -> Table:
    t = Table(title="Run", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    cfg, tr = r.config, r.training
    t.add_row("preset", f"{cfg.name} on {r.device if r.device is not None else 'no device yet'}")
    if r.data is not None and r.model is not None:
        t.add_row("data", r.data.description)
        t.add_row("sizes", f"N = {r.model.n_params} parameters, k = {r.data.n_train} inputs, "
                           f"d = {r.data.out_dim} outputs")
        if r.model.checkpoint:
            t.add_row("checkpoint", f"{r.model.checkpoint} (sha256 {(r.model.checkpoint_sha256 or '?')[:12]}…)")
    else:
        t.add_row("data", "not prepared: the run stopped before the data and the model were built")
    t.add_row("training", f"{tr.status}: {tr.steps} steps, final loss {_fmt(tr.final_loss)} "
                          f"({cfg.train.loss}, {tr.reduction})")
    if tr.message:
        t.add_row("", tr.message)
    return t


def rank_text(g: SpectrumSection) -> str:
    """rank(G) as the report states it: 'rank(G) = 12', or 'rank(G) ≥ 32' when only a lower bound is known."""
    return f"rank(G) {'=' if g.rank_exact is not False else '≥'} {g.rank}"


def rtol_text(g: SpectrumSection) -> str:
    exact = g.rank_at_rtol_exact or {}
    return ", ".join(f"{k}: {'' if exact.get(k, True) else '≥ '}{v}" for k, v in g.rank_at_rtol.items())


def near_text(g: SpectrumSection) -> Text:
    """How many singular values sit within a factor 2 of the tolerance, and the ranks rounding could give."""
    near = g.near_threshold or 0
    tol = g.tolerance
    factor = g.rank_rule.near_factor if g.rank_rule is not None else 2.0
    if not near:
        return Text(f"none within {factor:g}× of the tolerance: the rank does not hang on rounding")
    sv = g.singular_values or []
    lo = sum(1 for s in sv if s > tol * factor)
    hi = sum(1 for s in sv if s > tol / factor)
    return Text(f"{near} within {factor:g}× of the tolerance: the rank there is decided by rounding "
                f"(anywhere from {lo} to {hi})", style="yellow")


def _submersion_text(g: SpectrumSection) -> str:
    sub = g.submersion
    return "unknown (rank only bounded below)" if sub is None else ("yes" if sub else "no")


def why_missing(report: Report, stage: str, what: str, off: str | None, stage_word: str) -> str:
    """Why a report has no `stage` section, in one sentence: `off` when the preset turned it off,
    else cancelled, skipped (G did not fit), failed, or an engine without that stage."""
    if off:
        return off
    if report.training.status == "cancelled":
        return f"{what} was not computed: the run was cancelled."
    skipped = (report.skipped or {}).get(stage)
    if skipped:
        return f"{what} was not computed: {skipped}."
    if report.error is not None:
        return f"{what} was not computed: " + report.error.message
    return f"{what} was not computed for this run (this engine has no {stage_word} stage)."


def _sigma_row(g: SpectrumSection) -> str | None:
    sv = g.singular_values
    if sv and g.complete is not False:
        return f"σ₁ = {sv[0]:.4g}, σ_min = {sv[-1]:.3g}"
    if sv:
        return f"σ₁ = {sv[0]:.4g} … σ_{len(sv)} = {sv[-1]:.3g} (the top {len(sv)} only)"
    return None


def g_table(r: Report) -> RenderableType | None:
    return None if r.G is None else spectrum_section(r.G, r.symmetry)


def spectrum_section(g: SpectrumSection, split: SymmetrySection | None = None) -> Group:
    """The G section: rank, shape, tolerance and rule, rank at other rtols, near-threshold values, gap, σ
    range, effective rank, regime, kernel and generic dimensions, submersion, method, what it means."""
    t = Table(title="Spectrum of G", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("rank(G)", Text(rank_text(g), style="bold green"))
    t.add_row("shape", f"N = {g.n_params} × kd = {g.n_outputs} (G on the {g.on})")
    t.add_row("tolerance", f"{g.tolerance:.3g} = {g.tolerance_rule}")
    t.add_row("rank at rtol", rtol_text(g))
    t.add_row("near threshold", near_text(g))
    gap = g.largest_gap
    if gap is not None:
        t.add_row("largest gap", f"{gap.decades:.2f} decades after σ_{gap.after} "
                                 f"({gap.above:.3g} → {gap.below:.3g})")
    sigma = _sigma_row(g)
    if sigma is not None:
        t.add_row("σ range", sigma)
    t.add_row("effective rank", f"{g.effective_rank:.2f}")
    t.add_row("regime", REGIME_WORDS[g.regime])
    t.add_row("kernel dim", f"N − r {'=' if g.rank_exact is not False else '≤'} {g.kernel_dim} "
                            "(upper bound on the behaviour level set's dimension)")
    if split is not None:
        t.add_row("kernel split", f"{split.dim} symmetry + {split.dead_dim} dead-unit + {split.data_dependent_dim} "
                                  "data-dependent (below)")
    t.add_row("generic dim", "—" if g.generic_dim is None else f"N − kd = {g.generic_dim}")
    t.add_row("submersion", _submersion_text(g))
    t.add_row("method", g.method)
    meaning = Text("\n".join(g.meaning), style="italic")
    return Group(t, meaning)


def timings_line(r: Report) -> Text:
    parts = [f"{k} {v:.2f} s" for k, v in r.timings.items()]
    return Text("timings: " + ", ".join(parts), style="dim")


def section_views() -> list:
    """Views of the report sections after G, in the order they are printed."""
    from .beyond import views
    from .hessian import hessian_view
    from .layers import layers_view
    from .levelset import levelset_view

    return [hessian_view, layers_view, levelset_view, *views()]


def summary(r: Report) -> Group:
    parts: list[RenderableType] = [run_table(r), Text("")]
    g = g_table(r)
    if g is not None:
        parts += [g, Text("")]
    for view in section_views():
        out = view(r)
        if out is not None:
            parts += [out, Text("")]
    for n in r.notes:
        parts.append(Text(f"note: {n}", style="dim"))
    if r.error is not None:
        parts.append(Text(f"error: {r.error.message}", style="bold red"))
    parts.append(timings_line(r))
    return Group(*parts)
