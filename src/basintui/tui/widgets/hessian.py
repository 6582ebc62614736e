"""The Hessian view: eigenvalues of H beside the Gauss-Newton part, the ranks, and the hypotheses of
rank(H) = rank(G) as coloured verdicts with their reasons (DESIGN §1)."""

from __future__ import annotations

from typing import Any

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

GGN_KEYS = ("eigenvalues_ggn", "ggn_eigenvalues")
LOSS_HESSIAN_WORDS = {
    "identity": "Q = 2I (mse): positive definite, rank(GGN) = rank(G)",
    "diagonal": "Q diagonal (bce): positive, rank(GGN) = rank(G)",
    "full": "Q = diag(p) − ppᵀ (softmax ce on logits): rank d − 1 per input, so rank(GGN) ≤ k(d − 1)",
}


def claim3(h: dict[str, Any]) -> tuple[str, str]:
    c = h.get("claim3")
    if isinstance(c, dict):
        verdict = c.get("verdict") or c.get("status") or c.get("result") or c.get("value") or "?"
        return str(verdict), str(c.get("why", ""))
    return str(c), str(h.get("claim3_why") or h.get("why") or "")


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
        self.h: dict[str, Any] | None = None

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

    def show(self, report: dict[str, Any]) -> None:
        h = report.get("hessian")
        if not h:
            mode = report.get("config", {}).get("analysis", {}).get("hessian")
            off = "The Hessian analysis is off for this run (analysis.hessian = off)."
            why = why_missing(report, "hessian", "The Hessian", off if mode == "off" else None, "Hessian")
            self.clear(why)
            return
        self.h = h
        g = report.get("G") or {}
        head = Text()
        head.append(f"rank(H) = {num(h.get('rank'))}", style="bold")
        head.append(f"   rank(GGN) = {num(h.get('rank_ggn'))}   rank(residual) = {num(h.get('rank_residual'))}")
        if g:
            head.append(f"   rank(G) = {g.get('rank')}", style="green")
        verdict, _ = claim3(h)
        head.append("   Claim 3: ")
        head.append(verdict.replace("_", " "), style=VERDICT_STYLE.get(verdict, "bold"))
        w = h.get("weyl")
        if isinstance(w, dict):
            bound = "" if w.get("outside_band_exact", True) else "≥"
            head.append(f"   Weyl: {bound}{w.get('outside_band')} outside ±‖R‖₂ = ±{num(w.get('band'), 3)}, "
                        f"{w.get('ggn_above_2r')} of GGN above 2‖R‖₂")
        self.query_one("#hess-head", Static).update(head)
        self.query_one("#hess-facts-text", Static).update(self._facts(h))
        self._draw()

    def _facts(self, h: dict[str, Any]) -> Group:
        verdict, why = claim3(h)
        shown = {"rank", "rank_ggn", "rank_residual", "eigenvalues", "grad_norm", "output_residual_norm",
                 "residual_rel", "loss_hessian", "claim3", "claim3_why", "tolerance", "tolerance_rule",
                 "rank_ggn_exact", *GGN_KEYS}
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        t.add_row("rank(H) = rank(G)?", Text(verdict.replace("_", " "), style=VERDICT_STYLE.get(verdict, "bold")))
        if why:
            t.add_row("why", Text(why, style="italic"))
        for key, value in weyl_rows(h):
            t.add_row(key, value)
        if h.get("rank_rule") or h.get("tolerance") is not None:
            for key, value in rule_rows(h):
                t.add_row(key, value)
        t.add_row("‖∇_θ L‖", f"{num(h.get('grad_norm'), 3)}  (a critical point needs ≈ 0)")
        t.add_row("‖∂ℓ/∂F‖", f"{num(h.get('output_residual_norm'), 3)}  (H = GGN needs a zero residual)")
        t.add_row("‖H − GGN‖/‖H‖", num(h.get("residual_rel"), 3))
        lh = h.get("loss_hessian")
        t.add_row("loss Hessian Q", LOSS_HESSIAN_WORDS.get(lh, str(lh)))
        hyp = h.get("hypotheses")
        if isinstance(hyp, dict):  # the hypotheses as checked flags, each with its rule
            for name, check in hyp.items():
                if not isinstance(check, dict):
                    continue
                holds = check.get("holds")
                verdict = Text("holds" if holds else "fails", style="bold green" if holds else "bold yellow")
                detail = f"  {num(check.get('value'), 3)} vs threshold {num(check.get('threshold'), 3)}"
                if check.get("rule"):
                    detail += f"  ({check['rule']})"
                t.add_row(name.replace("_", " ") + "?", verdict + Text(detail, style="dim"))
        for k, v in h.items():  # further checked flags the engine reports, as verdicts
            if isinstance(v, bool) and k not in shown:
                t.add_row(k.replace("_", " "), Text("yes" if v else "no", style="green" if v else "yellow"))
        at = h.get("rank_at_rtol")
        if isinstance(at, dict):
            for rtol, ranks in at.items():
                if isinstance(ranks, dict):
                    text = ", ".join(f"{k} {num(v)}" for k, v in ranks.items()
                                     if k not in ("H_threshold", "floor_applied"))
                    if ranks.get("floor_applied"):
                        text += " (H at the floor)"
                else:
                    text = num(ranks)
                t.add_row(f"ranks at rtol {rtol}", text)
        for k, v in h.items():
            if k not in shown and not isinstance(v, (bool, list, dict)) and v is not None:
                t.add_row(k.replace("_", " "), num(v))
        return Group(t)

    def _draw(self) -> None:
        plot = self.query_one("#hess-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        cap = max(32, 2 * max(plot.size.width, 40))
        if not self.h or not draw_eigenvalues(plt, self.h, cap, marker=None, labels=False):
            plt.title("log10 |λ| of H")
            plt.text("no eigenvalues", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        plot.refresh()
