"""Compare the shown report with a saved one: the side-by-side table (render/compare.py) and the two
spectra of G overlaid on one axis. Esc closes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...render.compare import compare, comparison_table
from ..widgets.plots import SpectrumPlot

if TYPE_CHECKING:
    from ...schema import Report


class CompareScreen(Screen[None]):
    DEFAULT_CSS = """
    CompareScreen #cmp-plot { height: 2fr; min-height: 10; border: round $primary; border-title-color: $accent; }
    CompareScreen #cmp-table { height: 3fr; border: round $primary; border-title-color: $accent; padding: 0 1; }
    CompareScreen #cmp-head { height: auto; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, a: Report, b: Report, label_a: str, label_b: str) -> None:
        super().__init__()
        self.a, self.b, self.label_a, self.label_b = a, b, label_a, label_b

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble(("A ", "bold"), self.label_a, ("   B ", "bold"), self.label_b), id="cmp-head")
            yield SpectrumPlot(id="cmp-plot")
            with VerticalScroll(id="cmp-table"):
                yield Static(comparison_table(compare(self.a, self.b, self.label_a, self.label_b)))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#cmp-plot").border_title = "Spectra of G: A and B (overlay)"
        self.query_one("#cmp-table").border_title = "A beside B (differences marked)"
        plot = self.query_one(SpectrumPlot)
        if self.a.G is not None:
            plot.show(self.a.G, overlay=self.b.G, overlay_label=f"B: {self.b.config.name}")
        elif self.b.G is not None:
            plot.show(self.b.G)
        else:
            plot.clear("Neither report has the spectrum of G.")
        self.query_one("#cmp-table").focus()

    def action_close(self) -> None:
        self.dismiss(None)
