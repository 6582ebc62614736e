"""Plot widgets for the panes and the dashboard: `SpectrumPlot` (σ_j of G on a clipped log axis, with
an optional second spectrum to compare) and `TrainingPlots` (the loss and rank(G) during training,
stacked on one step axis from 0 to the run's total steps).

Each plot is a one-line legend (rich Text, never a plotext legend box on the data) over a PlotextPlot.
Redraws are throttled: data may arrive at any rate, the figure is rebuilt at most every
MIN_INTERVAL seconds, and only while the widget has a size (a hidden tab's plot waits for its
Resize/Show). Both work from a dashboard cell of about 60 × 12 up to a full pane."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Static
from textual_plotext import PlotextPlot

from .plotting import blank_figure, draw_loss, draw_ranks, draw_spectrum, legend

if TYPE_CHECKING:
    from ...render.axes import LogAxis
    from ...schema import Report, SpectrumSection
    from ...schema.events import RankProbe, TrainProgress

MIN_INTERVAL = 0.2  # seconds between two redraws of one widget: at most 5 a second
LABEL_CELLS = 6  # y labels of the stacked training plots ("1e-12", "12345"): both frames in one column


class Throttled(Vertical):
    """Coalesces draw requests: the first after a quiet spell draws at once, later ones within
    MIN_INTERVAL are merged into one timer (streams of events: training progress, rank probes);
    `draw_now` draws at once (rare events: a report, a reset). `_draw()` is the subclass's; it runs
    only with a size."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._dirty = False
        self._last = -MIN_INTERVAL
        self._timer: Timer | None = None
        self.draws = 0  # how many times the figure was rebuilt (tests check the throttle by it)

    def request_draw(self) -> None:
        self._dirty = True
        if self._timer is not None or not self.is_mounted:
            return
        wait = self._last + MIN_INTERVAL - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self._timer = self.set_timer(wait, self._flush)

    def draw_now(self) -> None:
        """Draw at once if anything changed (ignores the throttle; for a final state)."""
        if self._dirty:
            self._flush()

    def _flush(self) -> None:
        self._timer = None
        if not self._dirty or self.size.width <= 0 or self.size.height <= 0:
            return  # no size (a hidden tab): on_resize / on_show draws it later
        self._dirty = False
        self._last = time.monotonic()
        self.draws += 1
        self._draw()

    def on_mount(self) -> None:
        self.request_draw()

    def on_resize(self) -> None:
        self.request_draw()  # ticks depend on the size

    def on_show(self) -> None:
        if self._dirty:
            self.request_draw()

    def _draw(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _cells(plot: PlotextPlot) -> tuple[int, int]:
        return max(plot.size.width, 20), max(plot.size.height, 6)


class LegendLine(Static):
    """The legend over a plot: one row, never wrapped, updated without a relayout."""

    DEFAULT_CSS = "LegendLine { height: 1; width: 1fr; }"

    def show(self, text: Text) -> None:
        text.no_wrap, text.overflow = True, "ellipsis"
        self.update(text, layout=False)


class SpectrumPlot(Throttled):
    """σ_j of G against j on a log axis clipped one decade below ε·σ₁ (values under it drawn at the
    floor and counted in the legend), the tolerance, the near-threshold band and the rank; an optional
    overlay spectrum in another colour."""

    DEFAULT_CSS = """
    SpectrumPlot { height: 1fr; min-height: 5; }
    SpectrumPlot > PlotextPlot { height: 1fr; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.g: SpectrumSection | None = None
        self.overlay: SpectrumSection | None = None
        self.overlay_label = ""
        self.why = "No spectrum yet."
        self.axis: LogAxis | None = None  # the axis of the last drawing (None when nothing was drawn)
        self.legend_text = Text()

    def compose(self) -> ComposeResult:
        yield LegendLine(classes="plot-legend")
        yield PlotextPlot(classes="plot-canvas")

    def show(self, g: SpectrumSection, overlay: SpectrumSection | None = None, overlay_label: str = "") -> None:
        """Draw `g`'s spectrum (at once: a report arrives rarely), and `overlay`'s in another colour."""
        self.g, self.overlay, self.overlay_label = g, overlay, overlay_label
        self.request_draw()
        self.draw_now()

    def clear(self, why: str) -> None:
        """No spectrum: an empty frame and `why` in the legend line."""
        self.g, self.overlay, self.overlay_label, self.why = None, None, "", why
        self.request_draw()
        self.draw_now()

    def _draw(self) -> None:
        plot = self.query_one(PlotextPlot)
        if self.g is None or not self.g.singular_values:
            blank_figure(plot.plt)
            self.axis = None
            self.legend_text = legend(("○", self.why if self.g is None else "no singular values", "gray"))
        else:
            width, height = self._cells(plot)
            self.axis, self.legend_text = draw_spectrum(plot.plt, self.g, width, height, self.overlay,
                                                        self.overlay_label)
        self.query_one(LegendLine).show(self.legend_text)
        plot.refresh()


class TrainingPlots(Throttled):
    """The loss (log scale) over rank(G) at the probe steps, both on the step axis 0 .. total steps
    (its labels under the rank plot; the y labels of both padded to one width so the frames align)."""

    DEFAULT_CSS = """
    TrainingPlots { height: 1fr; min-height: 8; }
    TrainingPlots > PlotextPlot { height: 1fr; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.total = 0
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.probe_steps: list[int] = []
        self.ranks: list[int] = []
        self.loss_axis: LogAxis | None = None
        self.loss_legend = Text()
        self.rank_legend = Text()

    def compose(self) -> ComposeResult:
        yield LegendLine(classes="plot-legend", id="loss-legend")
        yield PlotextPlot(classes="plot-canvas", id="loss-plot")
        yield LegendLine(classes="plot-legend", id="rank-legend")
        yield PlotextPlot(classes="plot-canvas", id="rank-plot")

    def reset(self, total_steps: int) -> None:
        """A new run of `total_steps` steps: empty plots on the step axis 0 .. total_steps."""
        self.total = int(total_steps)
        self.steps, self.losses, self.probe_steps, self.ranks = [], [], [], []
        self.request_draw()
        self.draw_now()

    def progress(self, e: TrainProgress) -> None:
        """A training snapshot: its (decimated) loss history replaces the one drawn."""
        self.total = max(self.total, e.total)
        if e.losses:
            self.steps, self.losses = list(e.steps), [float(v) for v in e.losses]
        else:
            self.steps.append(e.step)
            self.losses.append(float(e.loss))
        self.request_draw()

    def rank_probe(self, e: RankProbe) -> None:
        self.probe_steps.append(e.step)
        self.ranks.append(e.rank)
        self.request_draw()

    def finished(self, report: Report) -> None:
        """The report's whole loss history and rank probes (drawn at once: the run is over)."""
        tr = report.training
        self.total = max(self.total, tr.steps, report.config.train.steps)
        self.losses = [float(v) for v in tr.losses]
        self.steps = list(range(len(self.losses)))
        self.probe_steps = [p.step for p in tr.rank_history]
        self.ranks = [p.rank for p in tr.rank_history]
        self.request_draw()
        self.draw_now()

    def _draw(self) -> None:
        loss = self.query_one("#loss-plot", PlotextPlot)
        w, h = self._cells(loss)
        self.loss_axis, self.loss_legend = draw_loss(loss.plt, self.steps, self.losses, self.total, w, h,
                                                    LABEL_CELLS, x_labels=False)
        rank = self.query_one("#rank-plot", PlotextPlot)
        w, h = self._cells(rank)
        self.rank_legend = draw_ranks(rank.plt, self.probe_steps, self.ranks, self.total, w, h,
                                     LABEL_CELLS)
        self.query_one("#loss-legend", LegendLine).show(self.loss_legend)
        self.query_one("#rank-legend", LegendLine).show(self.rank_legend)
        loss.refresh()
        rank.refresh()
