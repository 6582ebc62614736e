"""The plot widgets (SpectrumPlot, TrainingPlots) and the panes that use them, mounted in a small App
with real stored reports: the clipped log axis, the "N below" legend, markers for few points, legends
off the data, the overlay, the shared step axis, the throttle, the scrollable stage log and the
stage-progress line."""

from __future__ import annotations

import asyncio
import math
import time

from conftest import ROOT
from textual.app import App, ComposeResult
from textual.widgets import Static
from textual_plotext import PlotextPlot

from basintui.render.axes import EPS
from basintui.render.eta import RunClock
from basintui.schema.events import Note, RankProbe, Stage, StageProgress, TrainProgress
from basintui.schema.plan import Plan
from basintui.schema.report import load_report
from basintui.tui.widgets.plots import (
    MIN_INTERVAL,
    LegendLine,
    SpectrumPlot,
    TrainingPlots,
)
from basintui.tui.widgets.spectrum import SpectrumPane
from basintui.tui.widgets.training import StageLog, TrainingPane

REPORTS = ROOT / "tests" / "fixtures" / "reports"


def report(name: str):
    return load_report(REPORTS / f"{name}.json")


class Host(App):
    def __init__(self, *widgets) -> None:
        super().__init__()
        self.widgets = widgets

    def compose(self) -> ComposeResult:
        yield from self.widgets


def run(widgets, size, body):
    async def main():
        async with Host(*widgets).run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(main())


def monitor(widget, selector: str = "PlotextPlot"):
    return widget.query_one(selector, PlotextPlot).plt.monitor


def legend_of(widget, selector: str = "LegendLine") -> str:
    return widget.query_one(selector, LegendLine).content.plain


def series_xs(m) -> list[float]:
    return [x for xs in m.x for x in xs]


def series_ys(m) -> list[float]:
    return [y for ys in m.y for y in ys]


def test_the_spectrum_axis_is_clipped_and_the_clipped_values_are_counted():
    g = report("collapse").G
    assert min(g.singular_values) < 1e-90  # the report holds 1e-95-style values

    async def body(pilot):
        plot = pilot.app.query_one(SpectrumPlot)
        plot.show(g)
        await pilot.pause()
        m = monitor(plot)
        lo, hi = m.ylim[0]
        assert (lo, hi) == (plot.axis.lo, plot.axis.hi) == (-16, 1)  # ε·9.25 a decade down, not 1e-95
        assert min(series_ys(m)) == lo
        assert "11 below 1e-16, drawn at the floor" in legend_of(plot)
        assert m.marker[0][0] == "braille"  # 56 values: a line

    run([SpectrumPlot()], (100, 24), body)


def test_few_singular_values_are_markers_with_a_legend_and_no_plotext_legend():
    g = report("deep-linear").G

    async def body(pilot):
        plot = pilot.app.query_one(SpectrumPlot)
        plot.show(g)
        await pilot.pause()
        m = monitor(plot)
        assert len(g.singular_values) == 36 and set(m.marker[0]) == {"●"}
        assert m.label == [None] * len(m.label)  # no plotext legend box on the data
        text = legend_of(plot)
        assert "σ_j" in text and "rank 12" in text and f"tolerance {g.tolerance:.3g}" in text
        assert "near band ×÷2: 0 inside" in text  # the report's rank_rule.near_factor
        assert "below" not in text
        tol_row = math.log10(g.tolerance)
        assert plot.axis.lo < tol_row < plot.axis.hi  # the tolerance line is on the axis

    run([SpectrumPlot()], (100, 24), body)


def test_a_rank_zero_spectrum_draws_at_the_floor_without_a_log_of_zero():
    g = report("critique").G
    assert g.rank == 0 and not any(g.singular_values)

    async def body(pilot):
        plot = pilot.app.query_one(SpectrumPlot)
        plot.show(g)
        await pilot.pause()
        m = monitor(plot)
        assert m.ylim[0] == [-1.0, 1.0] and set(series_ys(m)) == {-1.0}
        assert "all 0 (G = 0)" in legend_of(plot) and "rank 0" in legend_of(plot)
        plot.clear("Running: the spectrum appears when G has been computed.")
        await pilot.pause()
        assert plot.axis is None and "Running" in legend_of(plot)

    run([SpectrumPlot()], (60, 12), body)


def test_an_overlay_spectrum_has_its_own_colour_and_legend_entry():
    main, other = report("deep-linear").G, report("xor-relu").G

    async def body(pilot):
        plot = pilot.app.query_one(SpectrumPlot)
        plot.show(main, other, "xor-relu")
        await pilot.pause()
        m = monitor(plot)
        assert {c[0] for c in m.color} >= {"cyan", "magenta"}
        assert len(m.x) == 2 and len(m.x[1]) == len(other.singular_values)
        assert "xor-relu: rank 3" in legend_of(plot)
        plot.show(main)  # the overlay goes again
        await pilot.pause()
        assert len(monitor(plot).x) == 1 and "xor-relu" not in legend_of(plot)

    run([SpectrumPlot()], (100, 24), body)


def test_training_plots_share_the_step_axis_and_rank_ticks_are_integers():
    r = report("deep-linear")

    async def body(pilot):
        plots = pilot.app.query_one(TrainingPlots)
        plots.reset(r.config.train.steps)
        plots.finished(r)
        await pilot.pause()
        loss, rank = monitor(plots, "#loss-plot"), monitor(plots, "#rank-plot")
        assert loss.xlim[0] == rank.xlim[0] == [0.0, 150.0]
        assert loss.xticks[0] == [] and min(rank.xticks[0]) == 0  # the labels once, under the rank plot
        assert all(float(t).is_integer() for t in rank.yticks[0]) and rank.yticks[0]
        assert set(rank.marker[0]) == {"●"} and len(rank.x[0]) == len(r.training.rank_history) == 22
        assert legend_of(plots, "#rank-legend") == "● rank(G) at 22 probe steps, last 12"
        assert legend_of(plots, "#loss-legend").startswith("─ training loss, log scale")
        assert loss.label == [None] and rank.label == [None]
        # both frames start in the same column: the y labels are padded to one width
        assert {len(s) for s in loss.ylabels[0] + rank.ylabels[0]} == {6}

    run([TrainingPlots()], (60, 12), body)


def test_training_plots_throttle_redraws_and_draw_the_last_state():
    async def body(pilot):
        plots = pilot.app.query_one(TrainingPlots)
        plots.reset(100)
        before = plots.draws
        start = time.monotonic()
        for i in range(1, 101):
            plots.progress(TrainProgress(i, 100, 1.0 / i, i * 0.01, tuple(range(1, i + 1)),
                                         tuple(1.0 / j for j in range(1, i + 1))))
        spent = time.monotonic() - start
        # at most one draw per MIN_INTERVAL of the time the loop took, plus the first
        assert plots.draws - before <= 2 + spent / MIN_INTERVAL < 100
        for _ in range(100):  # the pending timer draws the newest snapshot
            if max(series_xs(monitor(plots, "#loss-plot")), default=0) == 100:
                break
            await pilot.pause(MIN_INTERVAL)
        assert max(series_xs(monitor(plots, "#loss-plot"))) == 100

    run([TrainingPlots()], (80, 20), body)


def test_a_hidden_plot_waits_and_draws_when_shown():
    plots = TrainingPlots()

    async def body(pilot):
        plots.display = False
        await pilot.pause()
        drawn = plots.draws
        plots.reset(10)
        plots.rank_probe(RankProbe(5, 3, 1.0, 0.1, 1e-15))
        await pilot.pause(2 * MIN_INTERVAL)
        assert plots.draws == drawn and plots.ranks == [3]
        plots.display = True
        for _ in range(100):
            if plots.draws > drawn:
                break
            await pilot.pause(MIN_INTERVAL)
        assert len(monitor(plots, "#rank-plot").x[0]) == 1

    run([plots], (80, 20), body)


def test_the_panes_use_the_plots():
    r = report("xor-relu")

    async def body(pilot):
        spectrum = pilot.app.query_one(SpectrumPane)
        spectrum.show(r)
        training = pilot.app.query_one(TrainingPane)
        training.reset(r.config.name, r.config.train.steps)
        training.finished(r)
        await pilot.pause()
        plot = spectrum.query_one(SpectrumPlot)
        assert plot.id == "spec-plot" and plot.axis is not None and plot.axis.lo == -17
        assert set(monitor(plot).marker[0]) == {"●"}  # four values
        assert training.plots.total == 2000 and monitor(training.plots, "#rank-plot").xlim[0] == [0.0, 2000.0]
        spectrum.show(report("cancelled"))
        await pilot.pause()
        assert "cancelled" in legend_of(plot) and plot.axis is None

    run([SpectrumPane(), TrainingPane()], (120, 50), body)


def test_the_stage_log_scrolls_and_follows_the_end_unless_scrolled_up():
    pane = TrainingPane()

    async def body(pilot):
        pane.reset("tiny", 10)
        log = pane.query_one(StageLog)
        for i in range(40):
            pane.note(Note(f"line {i}"))
        await pilot.pause()
        assert len(log.lines) == 41 and log.max_scroll_y > 0
        assert log.follow and log.scroll_offset.y == log.max_scroll_y  # the newest line in view
        log.focus()
        await pilot.press("home")
        await pilot.pause()
        assert log.scroll_offset.y == 0 and not log.follow
        pane.note(Note("one more"))
        await pilot.pause()
        assert log.scroll_offset.y == 0  # the user's place is kept
        await pilot.press("end")
        await pilot.pause()
        assert log.follow
        pane.note(Note("the last"))
        await pilot.pause()
        assert log.scroll_offset.y == log.max_scroll_y and log.lines[-1].plain == "• the last"

    run([pane], (80, 30), body)


def stage_line(pane) -> str:
    return pane.query_one("#stage-progress", Static).content.plain


def test_stage_progress_shows_the_fraction_and_the_time_left():
    pane = TrainingPane()

    async def body(pilot):
        pane.reset("tiny", 10)
        pane.stage_changed(Stage("jacobian"))
        assert stage_line(pane) == "▶ jacobian"
        pane.stage_progress(StageProgress("jacobian", 450, 1000, "columns", 1.25, 1.5, "measured"))
        assert stage_line(pane) == ("▶ jacobian 45% (450/1,000 columns)  elapsed 1.2 s  "
                                    "about 1.5 s left (measured)")  # 1.25 s: rounded half to even
        pane.stage_progress(StageProgress("jacobian", 1, 3, "", 0.5, None, "none"))
        assert stage_line(pane) == "▶ jacobian 33% (1/3)  elapsed 0.5 s"
        pane.stopped("cancelled")
        assert stage_line(pane) == ""

    run([pane], (100, 30), body)


def test_the_stage_line_shows_the_runs_time_left_from_the_apps_clock():
    pane = TrainingPane()
    plan = Plan(stage_seconds={"train": 10.0, "jacobian": 4.0, "spectrum": 2.0, "hessian": 30.0})
    now = [0.0]
    clock = RunClock(now=lambda: now[0])

    async def body(pilot):
        pane.clock = clock
        clock.start(("data", "train", "jacobian", "spectrum", "hessian"))
        pane.reset("tiny", 10)
        clock.plan(plan)
        for e in (Stage("train", done=True, seconds=9.0), Stage("jacobian")):
            clock.stage(e)
            pane.stage_changed(e)
        e = StageProgress("jacobian", 1, 4, "columns", 1.0, 3.0, "measured")
        clock.progress(e)
        pane.stage_progress(e)
        assert stage_line(pane).endswith("·  run: about 35 s left")  # 3 measured + 2 + 30
        pane.clock = None
        pane.stage_progress(e)
        assert "run:" not in stage_line(pane)

    run([pane], (100, 30), body)


def test_plots_fit_a_dashboard_cell():
    g = report("collapse")

    async def body(pilot):
        spectrum, training = pilot.app.query_one(SpectrumPlot), pilot.app.query_one(TrainingPlots)
        spectrum.show(g.G)
        training.reset(g.config.train.steps)
        training.finished(g)
        await pilot.pause()
        for widget in (spectrum, training):
            assert widget.size.width == 60 and widget.size.height == 12
            for p in widget.query(PlotextPlot):
                assert p.size.height >= 3 and "┌" in p.render().plain  # a frame is drawn
        assert spectrum.axis.lo == -16 and spectrum.axis.lo > math.log10(EPS) - 2

    class Cell(Host):
        CSS = "SpectrumPlot, TrainingPlots { width: 60; height: 12; }"

    async def main():
        async with Cell(SpectrumPlot(), TrainingPlots()).run_test(size=(80, 30)) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(main())
