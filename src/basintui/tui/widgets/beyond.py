"""The "Beyond the rank" pane (issue 18): the kernel split into symmetry, dead-unit and data-dependent
directions; N_eff(z) and log det(GGᵀ + εI) with the rank's threshold marked; the probe set's ranks; λ̂ with
its chains' traces beside rank(H)/2 and N/2 and the sentence on their relation; the loss slice as a heat
map. `beyond_summary` is the dashboard's tile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ...render import beyond as view

if TYPE_CHECKING:
    from ...schema import Report

SECTIONS = ("symmetry", "soft", "probe", "llc", "slice")


def has_any(report: Report) -> bool:
    return any(getattr(report, name, None) is not None for name in SECTIONS)


def beyond_summary(report: Report) -> RenderableType:
    """The dashboard tile: the split, cliff or slope, λ̂ beside rank(H)/2 and N/2, how flat the slice stays."""
    lines: list[RenderableType] = []
    s, soft, llc, sl, pr = report.symmetry, report.soft, report.llc, report.slice, report.probe
    if s is not None:
        lines.append(Text(view.split_text(s), style="bold"))
    if soft is not None:
        lo, hi = soft.window
        lines.append(Text(f"N_eff({soft.of}) {hi:.1f} → {lo:.1f} across the threshold: "
                          + ("a cliff" if soft.cliff else "a slope")))
    if pr is not None:
        lines.append(Text(f"probe: rank {pr.rank_train} / {pr.rank_probe} / {pr.rank_both} (train / probe / both); "
                          f"{pr.flat_on_both} of {pr.flat_on_train} flat directions stay flat"))
    if llc is not None:
        lines.append(Text(view.llc_headline(llc), style="bold"))
        if llc.diagnostics.warnings:
            lines.append(Text(f"{len(llc.diagnostics.warnings)} warning(s): key 7", style="yellow"))
    if sl is not None:
        lines.append(Text(f"slice: rise {sl.rise_u:.2g} along the flat direction, {sl.rise_v:.2g} along the top one"))
    if not lines:
        return Text("Nothing beyond the rank for this run (analysis.symmetry, soft, probe, llc, slices).",
                    style="dim")
    return Group(*lines)


class BeyondPane(Vertical):
    """Border title "Beyond the rank"."""

    DEFAULT_CSS = """
    BeyondPane #beyond-body { height: 1fr; padding: 0 1; }
    BeyondPane .beyond-part { height: auto; margin-bottom: 1; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Beyond the rank"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="beyond-body"):
            yield Static(Text("Nothing beyond the rank yet: run a preset (r).", style="dim"), id="beyond-split",
                         classes="beyond-part")
            for part in ("soft", "probe", "llc", "slice"):
                yield Static("", id=f"beyond-{part}", classes="beyond-part")

    def clear(self, why: str) -> None:
        self.query_one("#beyond-split", Static).update(Text(why, style="dim"))
        for part in ("soft", "probe", "llc", "slice"):
            self.query_one(f"#beyond-{part}", Static).update("")

    def _width(self) -> int:
        return max(40, min(100, (self.size.width or 80) - 12))

    def show(self, report: Report) -> None:
        w = self._width()
        parts: dict[str, RenderableType | None] = {
            "split": view.symmetry_view(report), "probe": view.probe_view(report), "llc": None, "soft": None,
            "slice": None}
        if report.soft is not None:
            parts["soft"] = Group(view.soft_view(report), view.n_eff_plot(report.soft, w),
                                  view.logdet_plot(report.soft, w))
        else:
            parts["soft"] = view.soft_view(report)
        if report.llc is not None:
            parts["llc"] = Group(view.llc_view(report), view.trace_plot(report.llc, w))
        else:
            parts["llc"] = view.llc_view(report)
        parts["slice"] = view.slice_view(report)  # its table, the heat map and what it means
        if not has_any(report) and all(v is None for v in parts.values()):
            self.clear("Nothing beyond the rank for this run: analysis.symmetry, analysis.soft, analysis.probe, "
                       "analysis.llc and analysis.slices are off (or the run stopped before them).")
            return
        for name, value in parts.items():
            self.query_one(f"#beyond-{name}", Static).update(value if value is not None else "")
