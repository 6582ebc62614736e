"""The "Spectrum of G" pane: `rank(G) = r` with N, kd and the tolerance; log10 σ_j against j with the
tolerance line, the rank and the largest gap marked; the rank at other tolerances; what it means."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from ...render.summary import near_text, rank_text, rtol_text
from .plotting import decimate, num

REGIME_WORDS = {
    "over": "over-parameterised (N > kd)",
    "under": "under-parameterised (N < kd): F is never a submersion",
    "square": "square (N = kd)",
}


def headline(g: dict[str, Any]) -> Text:
    t = Text()
    t.append(rank_text(g), style="bold green")
    t.append(f"   N = {g['n_params']:,}   kd = {g['n_outputs']:,}   tolerance {num(g['tolerance'], 3)}")
    t.append(f" ({g.get('tolerance_rule', '')})", style="dim")
    return t


def facts(g: dict[str, Any]) -> Group:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("rank at rtol", rtol_text(g) if "rank_at_rtol" in g else "")
    if "near_threshold" in g:
        t.add_row("near threshold", near_text(g))
    gap = g.get("largest_gap")
    if gap:
        t.add_row("largest gap", f"{num(gap['decades'], 3)} decades after σ_{gap['after']} "
                                 f"({num(gap['above'], 3)} → {num(gap['below'], 3)})")
    else:
        t.add_row("largest gap", "— (fewer than two singular values)")
    t.add_row("effective rank", num(g.get("effective_rank"), 4))
    t.add_row("regime", REGIME_WORDS.get(g.get("regime", ""), str(g.get("regime"))))
    if g.get("regime") == "under":
        t.add_row("image dim", f"{g['rank']}: the local dimension of the image of parameter space in "
                               f"R^{g['n_outputs']} where the rank is locally constant")
    t.add_row("kernel dim", f"N − r {'=' if g.get('rank_exact', True) else '≤'} {g['kernel_dim']:,}: an upper "
                            "bound on the dimension of the behaviour level set through θ (Claim 2); equal to it "
                            "only where the rank is locally constant")
    t.add_row("generic dim", "— (N < kd)" if g.get("generic_dim") is None else f"N − kd = {g['generic_dim']:,}")
    sub = g.get("submersion")
    if sub is None and "submersion" in g:
        t.add_row("submersion", Text("unknown: only the top of the spectrum was computed and the rank is only "
                                     "bounded below", style="yellow"))
    else:
        t.add_row("submersion", Text("yes: rank(G) = kd, F is a submersion at θ", style="green") if sub else
                  Text(f"no: rank(G) = {g['rank']} < kd = {g['n_outputs']}"
                       + (f" (deficient by {g['rank_deficiency']})" if g.get("rank_deficiency") else ""),
                       style="yellow"))
    t.add_row("method", f"{g.get('method', '')}; G on the {g.get('on', 'outputs')}")
    meaning = Text("\n".join(g.get("meaning", [])), style="italic")
    return Group(t, Text(""), meaning)


class SpectrumPane(Vertical):
    """Border title "Spectrum of G"."""

    DEFAULT_CSS = """
    SpectrumPane #spec-head { height: auto; padding: 0 1; }
    SpectrumPane #spec-body { height: 1fr; }
    SpectrumPane #spec-plot { height: 1fr; min-height: 8; }
    SpectrumPane #spec-facts { height: 1fr; padding: 0 1; }
    SpectrumPane #spec-body { layout: vertical; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Spectrum of G"
        self.g: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("No spectrum yet: run a preset (r).", id="spec-head")
        with Horizontal(id="spec-body"):
            yield PlotextPlot(id="spec-plot")
            with VerticalScroll(id="spec-facts"):
                yield Static("", id="spec-facts-text")

    def on_mount(self) -> None:
        self._draw()

    def clear(self, why: str) -> None:
        self.g = None
        self.query_one("#spec-head", Static).update(why)
        self.query_one("#spec-facts-text", Static).update("")
        self._draw()

    def show(self, report: dict[str, Any]) -> None:
        g = report.get("G")
        self.g = g
        if g is None:
            err = report.get("error")
            status = report.get("training", {}).get("status")
            why = ("G was not computed: " + err["message"]) if err else (
                "G was not computed: the run was cancelled before the analysis" if status == "cancelled"
                else "G was not computed for this run")
            self.query_one("#spec-head", Static).update(why)
            self.query_one("#spec-facts-text", Static).update("")
        else:
            self.query_one("#spec-head", Static).update(headline(g))
            self.query_one("#spec-facts-text", Static).update(facts(g))
        self._draw()

    def _draw(self) -> None:
        plot = self.query_one("#spec-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("log10 σ_j of G")
        plt.xlabel("j")
        g = self.g
        sv = [] if g is None else [float(v) if isinstance(v, (int, float)) else float("nan")
                                   for v in g.get("singular_values", [])]
        if not sv:
            plt.text("no singular values", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            plot.refresh()
            return
        tol = float(g["tolerance"]) if isinstance(g.get("tolerance"), (int, float)) else 0.0
        positive = [v for v in sv if math.isfinite(v) and v > 0]
        floor = min([*positive, tol if tol > 0 else math.inf, 1.0]) * 1e-3
        ys = [math.log10(max(v, floor)) if math.isfinite(v) else math.log10(floor) for v in sv]
        js = list(range(1, len(sv) + 1))
        r = int(g["rank"])
        gap = g.get("largest_gap") or {}
        keep = [r - 1, r]
        if gap:
            keep += [gap["after"] - 1, gap["after"]]
        cap = max(32, 2 * max(plot.size.width, 40))
        xs, ys_plot = decimate(js, ys, cap, keep=keep)
        plt.plot(xs, ys_plot, marker="braille", label="log10 σ_j")
        if tol > 0:
            plt.hline(math.log10(tol), "red")
            plt.text("tolerance", (xs[0] + xs[-1]) / 2, math.log10(tol), color="red")
        if 0 < r < len(sv):
            plt.vline(r + 0.5, "green")
        plt.text(f"rank {'' if g.get('rank_exact', True) else '≥ '}{r}", max(1, min(r, len(sv))), max(ys) if r < len(sv) / 2 else min(ys), color="green")
        if gap and gap.get("after") not in (None, r) and 0 < gap["after"] < len(sv):
            plt.vline(gap["after"] + 0.5, "orange")
            plt.text(f" gap {num(gap['decades'], 2)} decades", gap["after"] + 0.5 + len(sv) / 40,
                     (max(ys) + min(ys)) / 2, color="orange", alignment="left")
        elif gap and gap.get("after") == r:
            plt.text(f"gap {num(gap['decades'], 2)} dec at the rank", max(1, r), (max(ys) + min(ys)) / 2,
                     color="orange")
        plot.refresh()
