"""The Training pane: progress (step, loss, elapsed, remaining), the running stage's progress and
time left (and the run's, from the plan's per-stage estimates), the loss curve over rank(G) during
training on one step axis, and the scrollable log of stages."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import ProgressBar, Static

from ...render.eta import clock, progress_text
from ...schema.events import Note, RankProbe, Stage, StageProgress, TrainProgress
from .loglines import note_line, stage_line
from .plots import TrainingPlots
from .plotting import num

if TYPE_CHECKING:
    from ...render.eta import RunClock
    from ...schema import Report
    from ...schema.plan import Plan


class StageLog(ScrollView, can_focus=True):
    """The log of stages, scrollable (arrows, page keys, wheel). It follows the newest line unless the
    user has scrolled up, and follows again once scrolled back to the end. A new line changes only the
    virtual height, never the widget's size, so it never makes the screen lay out (and re-render both
    plots) again while the engine works. `lines` keeps the last MAX_LINES lines as rich Text."""

    MAX_LINES = 2000

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.lines: list[Text] = []
        self.follow = True  # at the end: new lines scroll into view
        self._widest = 0

    def clear(self) -> None:
        self.lines, self._widest, self.follow = [], 0, True
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    def write(self, line: Text | str) -> None:
        text = line if isinstance(line, Text) else Text(line)
        self.lines.append(text)
        if len(self.lines) > self.MAX_LINES:
            del self.lines[: len(self.lines) - self.MAX_LINES]
        self._widest = max(self._widest, text.cell_len)
        self.virtual_size = Size(self._widest, len(self.lines))
        if self.follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.size.height:  # a hidden log (another pane showing) has no end to be at
            self.follow = round(new_value) >= self.max_scroll_y  # the user scrolled up, or back to the end

    def on_resize(self) -> None:
        """Shown (its pane opened) or resized: a log that follows the end shows the end. Lines written while
        the pane was hidden could not scroll it there, which left the top in view, depending on timing."""
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width, style = self.scrollable_content_region.width, self.rich_style
        index = scroll_y + y
        if index >= len(self.lines):
            return Strip.blank(width, style)
        text = self.lines[index].copy()
        text.stylize_before(style)
        text.no_wrap, text.end = True, ""
        strip = Strip(list(text.render(self.app.console)))
        return strip.crop_extend(scroll_x, scroll_x + width, style)


class TrainingPane(Vertical):
    """Border title "Training"."""

    DEFAULT_CSS = """
    TrainingPane #train-status { height: 1; padding: 0 1; }
    TrainingPane #stage-progress { height: 1; padding: 0 1; }
    TrainingPane ProgressBar { padding: 0 1; height: 1; width: 1fr; }
    TrainingPane ProgressBar Bar { width: 1fr; }
    TrainingPane #train-plots { height: 2fr; min-height: 8; }
    TrainingPane #stage-log { height: 1fr; min-height: 4; max-height: 12; border-top: solid $panel; padding: 0 1; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Training"
        self.probes: list[RankProbe] = []
        self.state = "idle"
        self.stage = ""
        self.step = 0
        self.total = 0
        self.loss = float("nan")
        self.elapsed = 0.0
        self.clock: RunClock | None = None  # the app's clock of the run (the run's time left), when given
        self.last_progress: StageProgress | None = None

    def compose(self) -> ComposeResult:
        yield Static("No run yet: press r to run the preset from Setup.", id="train-status")
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="train-bar")
        yield Static("", id="stage-progress")
        yield TrainingPlots(id="train-plots")
        yield StageLog(id="stage-log")

    @property
    def plots(self) -> TrainingPlots:
        return self.query_one(TrainingPlots)

    # ---- run lifecycle
    def reset(self, preset_name: str, total: int) -> None:
        self.probes = []
        self.state, self.stage, self.step, self.total = "running", "starting", 0, total
        self.loss, self.elapsed = float("nan"), 0.0
        self.last_progress = None
        self.query_one(ProgressBar).update(total=max(total, 1), progress=0)
        log = self.query_one(StageLog)
        log.clear()
        log.write(Text(f"Run of preset {preset_name!r}: {total} training steps", style="bold"))
        self.plots.reset(total)
        self._status()
        self._stage_line()

    def plan(self, plan: Plan) -> None:
        """The planner's decision for this run (the PlanReady event's plan), one line in the log."""
        if plan.n_params is None or plan.n_train is None or plan.out_dim is None:
            line = f"  sizes measured by the run: {plan.why_unknown}; Hessian {plan.hessian_mode or 'unknown'}"
        else:
            line = (f"  N = {plan.n_params:,} parameters, k = {plan.n_train:,} inputs, d = {plan.out_dim}: G is "
                    f"{plan.n_params:,} × {plan.n_train * plan.out_dim:,}; Hessian {plan.hessian_mode}")
        self.query_one(StageLog).write(line)
        self._stage_line()

    def stage_changed(self, m: Stage) -> None:
        log = self.query_one(StageLog)
        if not m.done:
            self.stage, self.last_progress = m.name, None
        log.write(stage_line(m))
        self._status()
        self._stage_line()

    def stage_progress(self, e: StageProgress) -> None:
        """How far the running stage has got: fraction, units, elapsed and the time left (one line)."""
        self.last_progress = e
        self._stage_line()

    def note(self, m: Note) -> None:
        self.query_one(StageLog).write(note_line(m))

    def progress(self, m: TrainProgress) -> None:
        self.step, self.total, self.loss, self.elapsed = m.step, m.total, m.loss, m.elapsed
        self.query_one(ProgressBar).update(total=max(m.total, 1), progress=m.step)
        self._status()
        self.plots.progress(m)

    def rank_probe(self, m: RankProbe) -> None:
        self.probes.append(m)
        self.query_one(StageLog).write(Text(
            f"  step {m.step}: rank(G) = {m.rank}  (σ_max {m.sigma_max:.3g}, σ_min {m.sigma_min:.3g})", style="cyan"))
        self.plots.rank_probe(m)

    def finished(self, report: Report) -> None:
        tr = report.training
        self.state = "finished"
        self.step = tr.steps
        self.total = max(self.total, self.step)
        if tr.final_loss is not None:
            self.loss = float(tr.final_loss)
        self.elapsed = float(tr.seconds or self.elapsed)
        self.probes = [RankProbe(p.step, p.rank, p.sigma_max, p.sigma_min, p.tolerance) for p in tr.rank_history]
        done = tr.status in ("converged", "max_steps")
        self.query_one(ProgressBar).update(total=max(self.total, 1), progress=self.total if done else self.step)
        self.stage = tr.status
        total = report.total_seconds
        self.query_one(StageLog).write(Text(
            f"■ finished: {tr.status} after {tr.steps} steps, final loss {num(tr.final_loss)}"
            + (f"; total {total:.2f} s" if total is not None else ""), style="bold"))
        if tr.message:
            self.query_one(StageLog).write(Text(f"  {tr.message}", style="dim"))
        self._status(tr.status)
        self._stage_line()
        self.plots.finished(report)

    def stopped(self, why: str) -> None:
        self.state = why
        self.query_one(StageLog).write(Text(f"■ {why}", style="bold yellow"))
        self._status()
        self._stage_line()

    # ---- text lines
    def _status(self, status_word: str | None = None) -> None:
        status = self.query_one("#train-status", Static)
        if self.state == "idle":
            return
        remaining = ((self.total - self.step) * self.elapsed / self.step) if self.step and self.total else math.nan
        t = Text()
        if self.state == "running":
            t.append(f"{self.stage}", style="bold")
        else:
            t.append(f"{self.state}", style="bold green" if self.state == "finished" else "bold yellow")
            if status_word is not None:
                t.append(f" ({status_word})")
        pct = f" ({100 * self.step / self.total:.0f}%)" if self.total else ""
        t.append(f"  step {self.step:,}/{self.total:,}{pct}  loss {num(self.loss)}  elapsed {clock(self.elapsed)}")
        if self.state == "running":
            t.append(f"  remaining {clock(remaining)}" if self.stage == "train" else "")
        status.update(t, layout=False)  # fixed height: no relayout of the screen at 10 Hz

    def _stage_line(self) -> None:
        line = progress_text(self.stage, self.last_progress, self.clock.remaining() if self.clock else None)
        if self.state != "running":
            line = Text("")
        self.query_one("#stage-progress", Static).update(line, layout=False)
