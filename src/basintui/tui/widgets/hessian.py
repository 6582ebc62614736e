"""The Hessian view: eigenvalues of H beside the Gauss-Newton part, the ranks, and the hypotheses of
rank(H) = rank(G) as coloured verdicts with their reasons (DESIGN §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from ...render.hessian import VERDICT_STYLE, draw_eigenvalues, rule_rows, weyl_rows
from ...render.summary import why_missing
from .plotting import num

if TYPE_CHECKING:
    from ...schema import HessianSection, Report, SpectrumSection
    from ...schema._hessian import Hypothesis

LOSS_HESSIAN_WORDS = {
    "identity": "Q = 2I (mse): positive definite, rank(GGN) = rank(G)",
    "diagonal": "Q diagonal (bce): positive, rank(GGN) = rank(G)",
    "full": "Q = diag(p) − ppᵀ (softmax ce on logits): rank d − 1 per input, so rank(GGN) ≤ k(d − 1)",
}


def _verdict(h: HessianSection) -> Text:
    v = h.claim3.verdict
    return Text(v.replace("_", " "), style=VERDICT_STYLE.get(v, "bold"))


def headline(h: HessianSection, g: SpectrumSection | None) -> Text:
    """rank(H), rank(GGN), rank(residual), rank(G), Claim 3's verdict and the Weyl counts, in one line."""
    head = Text()
    head.append(f"rank(H) = {num(h.rank)}", style="bold")
    head.append(f"   rank(GGN) = {num(h.rank_ggn)}   rank(residual) = {num(h.rank_residual)}")
    if g is not None:
        head.append(f"   rank(G) = {g.rank}", style="green")
    head.append("   Claim 3: ")
    head.append_text(_verdict(h))
    w = h.weyl
    if w is not None:
        bound = "" if w.outside_band_exact else "≥"
        head.append(f"   Weyl: {bound}{w.outside_band} outside ±‖R‖₂ = ±{num(w.band, 3)}, "
                    f"{w.ggn_above_2r} of GGN above 2‖R‖₂")
    return head


def _hypothesis_row(name: str, check: Hypothesis) -> tuple[str, Text]:
    holds = check.holds
    verdict = Text("holds" if holds else "fails", style="bold green" if holds else "bold yellow")
    detail = f"  {num(check.value, 3)} vs threshold {num(check.threshold, 3)}"
    if check.rule:
        detail += f"  ({check.rule})"
    return name + "?", verdict + Text(detail, style="dim")


def hypothesis_rows(h: HessianSection) -> list[tuple[str, Text]]:
    """The hypotheses of Claim 3 as checked flags, each with its measured value, threshold and rule."""
    hs = h.hypotheses
    return [_hypothesis_row("critical point", hs.critical_point), _hypothesis_row("zero residual", hs.zero_residual),
            _hypothesis_row("loss hessian positive", hs.loss_hessian_positive)]


def rtol_rows(h: HessianSection) -> list[tuple[str, str]]:
    rows = []
    for rtol, ranks in (h.rank_at_rtol or {}).items():
        text = (f"G {num(ranks.G)}, GGN {num(ranks.GGN)}, H {num(ranks.H)}, residual {num(ranks.residual)}"
                + (" (H at the floor)" if ranks.floor_applied else ""))
        rows.append((f"ranks at rtol {rtol}", text))
    return rows


def detail_rows(h: HessianSection) -> list[tuple[str, str]]:
    """The section's other scalars (how it was measured, sizes, norms), in the report's order."""
    rows = [("method", h.method), ("reduction", h.reduction), ("loss", h.loss), ("on", h.on),
            ("loss formula", h.loss_formula), ("n params", h.n_params), ("n outputs", h.n_outputs),
            ("rank G", h.rank_G), ("rank G resolvable", h.rank_G_resolvable), ("rank method", h.rank_method),
            ("eigenvalues order", h.eigenvalues_order), ("n negative", h.n_negative),
            ("lambda max", h.lambda_max), ("lambda min", h.lambda_min), ("grad norm via G", h.grad_norm_via_G),
            ("output residual raw norm", h.output_residual_raw_norm), ("residual norm", h.residual_norm),
            ("hessian norm", h.hessian_norm), ("regime", h.regime), ("matvecs", h.matvecs)]
    return [(label, num(v)) for label, v in rows if v is not None]


def facts(h: HessianSection) -> Group:
    """Claim 3's verdict and reason, the Weyl counts, the rank rule, the hypotheses, the ranks at other
    rtols and the rest of the section."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("rank(H) = rank(G)?", _verdict(h))
    if h.claim3.why:
        t.add_row("why", Text(h.claim3.why, style="italic"))
    for key, value in [*weyl_rows(h), *rule_rows(h)]:
        t.add_row(key, value)
    t.add_row("‖∇_θ L‖", f"{num(h.grad_norm, 3)}  (a critical point needs ≈ 0)")
    t.add_row("‖∂ℓ/∂F‖", f"{num(h.output_residual_norm, 3)}  (H = GGN needs a zero residual)")
    t.add_row("‖H − GGN‖/‖H‖", num(h.residual_rel, 3))
    t.add_row("loss Hessian Q", LOSS_HESSIAN_WORDS.get(h.loss_hessian, str(h.loss_hessian)))
    for key, value in hypothesis_rows(h):
        t.add_row(key, value)
    t.add_row("loss hessian positive", Text("yes", style="green") if h.loss_hessian_positive
              else Text("no", style="yellow"))
    for key, value in [*rtol_rows(h), *detail_rows(h)]:
        t.add_row(key, value)
    return Group(t)


class HessianPane(Vertical):
    """Border title "Hessian"."""

    DEFAULT_CSS = """
    HessianPane #hess-head { height: auto; padding: 0 1; }
    HessianPane #hess-body { height: 1fr; }
    HessianPane #hess-plot { height: 1fr; min-height: 8; }
    HessianPane #hess-facts { height: 1fr; padding: 0 1; }
    HessianPane #hess-body { layout: vertical; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Hessian"
        self.h: HessianSection | None = None

    def compose(self) -> ComposeResult:
        yield Static("No run yet: run a preset (r).", id="hess-head")
        with Horizontal(id="hess-body"):
            yield PlotextPlot(id="hess-plot")
            with VerticalScroll(id="hess-facts"):
                yield Static("", id="hess-facts-text")

    def on_mount(self) -> None:
        self._draw()

    def clear(self, why: str) -> None:
        self.h = None
        self.query_one("#hess-head", Static).update(why)
        self.query_one("#hess-facts-text", Static).update("")
        self._draw()

    def show(self, report: Report) -> None:
        h = report.hessian
        if h is None:
            off = "The Hessian analysis is off for this run (analysis.hessian = off)."
            mode_off = report.config.analysis.hessian == "off"
            self.clear(why_missing(report, "hessian", "The Hessian", off if mode_off else None, "Hessian"))
            return
        self.h = h
        self.query_one("#hess-head", Static).update(headline(h, report.G))
        self.query_one("#hess-facts-text", Static).update(facts(h))
        self._draw()

    def _draw(self) -> None:
        plot = self.query_one("#hess-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        cap = max(32, 2 * max(plot.size.width, 40))
        if self.h is None or not draw_eigenvalues(plt, self.h, cap, marker=None, labels=False):
            plt.title("log10 |λ| of H")
            plt.text("no eigenvalues", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        plot.refresh()
