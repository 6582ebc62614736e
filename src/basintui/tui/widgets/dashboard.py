"""The dashboard: everything a researcher opens the app for, on one screen (from 120 columns).

The summary strip (render/strip.py), the loss and rank-during-training plots on one x axis, the
spectrum of G with its threshold, the top of the layer ranking, the Hessian summary and the stage
log with the running stage's progress. Each cell opens full size on its key (the tabs). Narrower
than 120 columns the plots stay in their tabs and the dashboard is the strip, the two summaries and
the log, one under the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from ...render.strip import StripState, strip_text
from ...render.summary import why_missing
from .beyond import beyond_summary, has_any
from .hessian import headline, hypothesis_rows
from .plots import SpectrumPlot, TrainingPlots

if TYPE_CHECKING:
    from ...schema import Report
    from ...schema.events import RankProbe, TrainProgress

TOP_LAYERS = 5


def layers_top(report: Report, rows: int = TOP_LAYERS) -> Group | Text:
    """The first `rows` blocks of the ranking, each with the engine's finding in words."""
    layers = report.layers
    if not layers:
        enabled = report.config.analysis.layers
        off = None if enabled else "The layer report is off for this run (analysis.layers = false)."
        return Text(why_missing(report, "layers", "The layer report", off, "layers"), style="dim")
    t = Table.grid(padding=(0, 1))
    t.add_column(justify="right", style="bold", no_wrap=True)
    t.add_column(no_wrap=True, style="bold")
    t.add_column()
    for b in sorted(layers, key=lambda b: (b.position, b.index))[:rows]:
        t.add_row(f"#{b.position}", Text(b.name), Text(b.finding))
    more = len(layers) - rows
    tail = Text(f"… {more} more blocks: key 4 for the whole report", style="dim") if more > 0 else Text("")
    groups = report.dependent_inputs.groups if report.dependent_inputs is not None else []
    dep = Text(f"{len(groups)} group{'s' if len(groups) != 1 else ''} of dependent inputs", style="dim")
    return Group(t, tail, dep)


def hessian_summary(report: Report) -> Group | Text:
    """rank(H) beside rank(GGN) and rank(G), Claim 3's verdict with its reason, the three hypotheses."""
    h = report.hessian
    if h is None:
        off = "The Hessian analysis is off for this run (analysis.hessian = off)."
        mode_off = report.config.analysis.hessian == "off"
        return Text(why_missing(report, "hessian", "The Hessian", off if mode_off else None, "Hessian"), style="dim")
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for key, value in hypothesis_rows(h):
        t.add_row(key, value)
    why = Text(h.claim3.why, style="italic") if h.claim3.why else Text("")
    return Group(headline(h, report.G), t, why)


class Dashboard(Vertical):
    """Border-less; its cells carry the border titles of the panes they summarise."""

    DEFAULT_CSS = """
    Dashboard #dash-strip { height: auto; padding: 0 1; border: round $accent; }
    Dashboard .cell { border: round $primary; border-title-color: $accent; border-title-style: bold; }
    Dashboard #dash-top { height: 3fr; }
    Dashboard #dash-mid { height: 2fr; }
    Dashboard #dash-top > .cell, Dashboard #dash-mid > .cell { width: 1fr; }
    Dashboard #dash-log-box { height: 1fr; min-height: 5; }
    Dashboard #dash-progress { height: 1; padding: 0 1; }
    Dashboard #dash-log { height: 1fr; padding: 0 1; }
    Dashboard .text-cell { padding: 0 1; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.report: Report | None = None
        self.follow = True  # the stage log shows its newest line

    def compose(self) -> ComposeResult:
        yield Static("No run yet: choose a preset in Setup (key 1) and press r.", id="dash-strip")
        with Horizontal(id="dash-top"):
            yield TrainingPlots(id="dash-train", classes="cell")
            yield SpectrumPlot(id="dash-spectrum", classes="cell")
        with Horizontal(id="dash-mid"):
            with VerticalScroll(id="dash-layers", classes="cell text-cell"):
                yield Static("The layer ranking appears when the analysis has finished.", id="dash-layers-text")
            with VerticalScroll(id="dash-hessian", classes="cell text-cell"):
                yield Static("The Hessian summary appears when the analysis has finished.", id="dash-hessian-text")
            with VerticalScroll(id="dash-beyond", classes="cell text-cell"):
                yield Static("The kernel split, N_eff and λ̂ appear when the analysis has finished.",
                             id="dash-beyond-text")
        with Vertical(id="dash-log-box", classes="cell"):
            yield Static("", id="dash-progress")
            yield VerticalScroll(Static("", id="dash-log-text"), id="dash-log")

    def on_mount(self) -> None:
        titles = {"#dash-train": "Training (2)", "#dash-spectrum": "Spectrum of G (3)",
                  "#dash-layers": "Information loss, top of the ranking (4)", "#dash-hessian": "Hessian (5)",
                  "#dash-beyond": "Beyond the rank (7)",
                  "#dash-log-box": "Stages"}
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.log_lines: list[Text] = []

    # ---- the strip and the stage log
    def strip(self, state: StripState) -> None:
        self.query_one("#dash-strip", Static).update(strip_text(state))

    def progress_line(self, text: Text | str) -> None:
        self.query_one("#dash-progress", Static).update(text)

    def log(self, line: Text | str) -> None:
        self.log_lines.append(line if isinstance(line, Text) else Text(line))
        del self.log_lines[:-500]
        box = self.query_one("#dash-log", VerticalScroll)
        if box.size.height:  # on screen: follow the end unless the user scrolled up
            self.follow = box.scroll_y >= box.max_scroll_y - 1
        self.query_one("#dash-log-text", Static).update(Text("\n").join(self.log_lines))
        if self.follow:
            box.call_after_refresh(box.scroll_end, animate=False)

    def on_show(self) -> None:
        """Written to while hidden (another tab): the newest lines are in view when it shows."""
        if self.follow:
            box = self.query_one("#dash-log", VerticalScroll)
            box.call_after_refresh(box.scroll_end, animate=False)

    # ---- run state
    def reset(self, total_steps: int) -> None:
        self.report = None
        self.log_lines = []
        self.query_one("#dash-log-text", Static).update("")
        self.query_one("#dash-progress", Static).update("")
        self.query_one(TrainingPlots).reset(total_steps)
        self.query_one(SpectrumPlot).clear("Running: the spectrum appears when G has been computed.")
        self.query_one("#dash-layers-text", Static).update(Text("Running: the layer ranking appears when the "
                                                                "analysis has finished.", style="dim"))
        self.query_one("#dash-hessian-text", Static).update(Text("Running: the Hessian summary appears when the "
                                                                 "analysis has finished.", style="dim"))
        self.query_one("#dash-beyond-text", Static).update(Text("Running: the kernel split, N_eff and λ̂ appear as "
                                                                "their stages finish.", style="dim"))

    def train_progress(self, e: TrainProgress) -> None:
        self.query_one(TrainingPlots).progress(e)

    def rank_probe(self, e: RankProbe) -> None:
        self.query_one(TrainingPlots).rank_probe(e)

    def show(self, report: Report, final: bool = False) -> None:
        """A partial or final report: each cell whose section exists (a final report also says why a
        section is missing)."""
        self.report = report
        if report.G is not None:
            self.query_one(SpectrumPlot).show(report.G)
        elif final:
            self.query_one(SpectrumPlot).clear(why_missing(report, "spectrum", "The spectrum of G", None, "spectrum"))
        if report.layers is not None or final:
            self.query_one("#dash-layers-text", Static).update(layers_top(report))
        if report.hessian is not None or final:
            self.query_one("#dash-hessian-text", Static).update(hessian_summary(report))
        if has_any(report) or final:
            self.query_one("#dash-beyond-text", Static).update(beyond_summary(report))
        if final:
            self.query_one(TrainingPlots).finished(report)
