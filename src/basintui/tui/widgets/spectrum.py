"""The "Spectrum of G" pane: `rank(G) = r` with N, kd and the tolerance; σ_j against j on a clipped
log axis with the tolerance, the near-threshold band, the rank and the largest gap marked (SpectrumPlot);
the rank at other tolerances; what it means."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from ...render.summary import near_text, rank_text, rtol_text
from .plots import SpectrumPlot
from .plotting import num

if TYPE_CHECKING:
    from ...schema import Report, SpectrumSection, SymmetrySection

REGIME_WORDS = {
    "over": "over-parameterised (N > kd)",
    "under": "under-parameterised (N < kd): F is never a submersion",
    "square": "square (N = kd)",
}


def headline(g: SpectrumSection) -> Text:
    t = Text()
    t.append(rank_text(g), style="bold green")
    t.append(f"   N = {g.n_params:,}   kd = {g.n_outputs:,}   tolerance {num(g.tolerance, 3)}")
    t.append(f" ({g.tolerance_rule})", style="dim")
    return t


def _submersion(g: SpectrumSection) -> Text:
    if g.submersion is None:
        return Text("unknown: only the top of the spectrum was computed and the rank is only bounded below",
                    style="yellow")
    if g.submersion:
        return Text("yes: rank(G) = kd, F is a submersion at θ", style="green")
    return Text(f"no: rank(G) = {g.rank} < kd = {g.n_outputs}"
                + (f" (deficient by {g.rank_deficiency})" if g.rank_deficiency else ""), style="yellow")


def facts(g: SpectrumSection, split: SymmetrySection | None = None) -> Group:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("rank at rtol", rtol_text(g))
    t.add_row("near threshold", near_text(g))
    gap = g.largest_gap
    if gap is not None:
        t.add_row("largest gap", f"{num(gap.decades, 3)} decades after σ_{gap.after} "
                                 f"({num(gap.above, 3)} → {num(gap.below, 3)})")
    else:
        t.add_row("largest gap", "— (fewer than two singular values)")
    t.add_row("effective rank", num(g.effective_rank, 4))
    t.add_row("regime", REGIME_WORDS.get(g.regime, str(g.regime)))
    if g.regime == "under":
        t.add_row("image dim", f"{g.rank}: the local dimension of the image of parameter space in "
                               f"R^{g.n_outputs} where the rank is locally constant")
    t.add_row("kernel dim", f"N − r {'=' if g.rank_exact is not False else '≤'} {g.kernel_dim:,}: an upper "
                            "bound on the dimension of the behaviour level set through θ (Claim 2); equal to it "
                            "only where the rank is locally constant")
    if split is not None:
        t.add_row("kernel split", f"{split.dim:,} symmetry + {split.dead_dim:,} dead-unit + "
                                  f"{split.data_dependent_dim:,} data-dependent (key 7)")
    t.add_row("generic dim", "— (N < kd)" if g.generic_dim is None else f"N − kd = {g.generic_dim:,}")
    t.add_row("submersion", _submersion(g))
    t.add_row("method", f"{g.method}; G on the {g.on}")
    meaning = Text("\n".join(g.meaning), style="italic")
    return Group(t, Text(""), meaning)


class SpectrumPane(Vertical):
    """Border title "Spectrum of G"."""

    DEFAULT_CSS = """
    SpectrumPane #spec-head { height: auto; padding: 0 1; }
    SpectrumPane #spec-body { height: 1fr; layout: vertical; }
    SpectrumPane #spec-plot { height: 1fr; min-height: 8; }
    SpectrumPane #spec-facts { height: 1fr; padding: 0 1; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Spectrum of G"
        self.g: SpectrumSection | None = None

    def compose(self) -> ComposeResult:
        yield Static("No spectrum yet: run a preset (r).", id="spec-head")
        with Horizontal(id="spec-body"):
            yield SpectrumPlot(id="spec-plot")
            with VerticalScroll(id="spec-facts"):
                yield Static("", id="spec-facts-text")

    def clear(self, why: str) -> None:
        self.g = None
        self.query_one("#spec-head", Static).update(why)
        self.query_one("#spec-facts-text", Static).update("")
        self.query_one(SpectrumPlot).clear(why)

    def show(self, report: Report, overlay: SpectrumSection | None = None, overlay_label: str = "") -> None:
        """The report's spectrum (and, to compare, another report's `overlay` spectrum on the plot)."""
        g = self.g = report.G
        plot = self.query_one(SpectrumPlot)
        if g is None:
            err = report.error
            why = ("G was not computed: " + err.message) if err is not None else (
                "G was not computed: the run was cancelled before the analysis"
                if report.training.status == "cancelled" else "G was not computed for this run")
            self.query_one("#spec-head", Static).update(why)
            self.query_one("#spec-facts-text", Static).update("")
            plot.clear(why)
        else:
            self.query_one("#spec-head", Static).update(headline(g))
            self.query_one("#spec-facts-text", Static).update(facts(g, report.symmetry))
            plot.show(g, overlay, overlay_label)
