"""The Training pane: progress (step, loss, elapsed, remaining), the log10-loss curve, rank(G)
during training with the top and bottom singular values, and the log of stages."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static
from textual_plotext import PlotextPlot

from ...schema.events import Note, RankProbe, Stage, TrainProgress
from .plotting import decimate, log10_floor, num

if TYPE_CHECKING:
    from ...schema.plan import Plan
    from ...schema import Report


class StageLog(Static, can_focus=True):
    """The log of stages: the latest lines in a fixed height. Unlike a RichLog, a new line never
    changes the widget's size, so it never makes the screen lay out (and re-render both plots) again
    while the engine works. The whole run is in the report (timings, notes)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("", **kw)
        self.lines: list[Text] = []

    def clear(self) -> None:
        self.lines = []
        self.update("", layout=False)

    def write(self, line: Text | str) -> None:
        self.lines.append(line if isinstance(line, Text) else Text(line))
        del self.lines[:-500]
        self._show()

    def on_resize(self) -> None:
        self._show()

    def _show(self) -> None:
        rows = self.size.height - self.styles.gutter.height  # the border-top is part of the gutter
        height = rows if rows > 0 else 8
        text = Text("\n").join(self.lines[-height:])
        text.no_wrap, text.overflow = True, "ellipsis"  # one row a line: the newest line stays in view
        self.update(text, layout=False)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainingPane(Vertical):
    """Border title "Training"."""

    DEFAULT_CSS = """
    TrainingPane #train-status { height: 1; padding: 0 1; }
    TrainingPane ProgressBar { padding: 0 1; height: 1; width: 1fr; }
    TrainingPane ProgressBar Bar { width: 1fr; }
    TrainingPane #train-plots { height: 1fr; min-height: 8; }
    TrainingPane PlotextPlot { width: 1fr; height: 1fr; }
    TrainingPane #stage-log { height: 9; border-top: solid $panel; padding: 0 1; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Training"
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.probes: list[RankProbe] = []
        self.state = "idle"
        self.stage = ""
        self.step = 0
        self.total = 0
        self.loss = float("nan")
        self.elapsed = 0.0

    def compose(self) -> ComposeResult:
        yield Static("No run yet: press r to run the preset from Setup.", id="train-status")
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="train-bar")
        with Horizontal(id="train-plots"):
            yield PlotextPlot(id="loss-plot")
            yield PlotextPlot(id="rank-plot")
        yield StageLog(id="stage-log")

    def on_mount(self) -> None:
        self._draw_loss()
        self._draw_rank()

    # ---- run lifecycle
    def reset(self, preset_name: str, total: int) -> None:
        self.steps, self.losses, self.probes = [], [], []
        self.state, self.stage, self.step, self.total = "running", "starting", 0, total
        self.loss, self.elapsed = float("nan"), 0.0
        self.query_one(ProgressBar).update(total=max(total, 1), progress=0)
        log = self.query_one(StageLog)
        log.clear()
        log.write(Text(f"Run of preset {preset_name!r}: {total} training steps", style="bold"))
        self._status()
        self._draw_loss()
        self._draw_rank()

    def plan(self, plan: Plan) -> None:
        """The planner's decision for this run (the PlanReady event's plan), one line in the log."""
        if plan.n_params is None or plan.n_train is None or plan.out_dim is None:
            line = f"  sizes measured by the run: {plan.why_unknown}; Hessian {plan.hessian_mode or 'unknown'}"
        else:
            line = (f"  N = {plan.n_params:,} parameters, k = {plan.n_train:,} inputs, d = {plan.out_dim}: G is "
                    f"{plan.n_params:,} × {plan.n_train * plan.out_dim:,}; Hessian {plan.hessian_mode}")
        self.query_one(StageLog).write(line)

    def stage_changed(self, m: Stage) -> None:
        log = self.query_one(StageLog)
        if m.done:
            line = Text(f"✓ {m.name}", style="green")
            line.append(f"  {m.seconds:.2f} s", style="dim")
            if m.detail:
                line.append(f"  {m.detail}")
            log.write(line)
        else:
            self.stage = m.name
            log.write(Text(f"▶ {m.name}" + (f"  {m.detail}" if m.detail else "")))
        self._status()

    def note(self, m: Note) -> None:
        style = "yellow" if m.level == "warn" else "dim"
        self.query_one(StageLog).write(Text(("⚠ " if m.level == "warn" else "• ") + m.text, style=style))

    def progress(self, m: TrainProgress) -> None:
        self.step, self.total, self.loss, self.elapsed = m.step, m.total, m.loss, m.elapsed
        self.steps, self.losses = list(m.steps), list(m.losses)
        self.query_one(ProgressBar).update(total=max(m.total, 1), progress=m.step)
        self._status()
        self._draw_loss()

    def rank_probe(self, m: RankProbe) -> None:
        self.probes.append(m)
        self.query_one(StageLog).write(Text(
            f"  step {m.step}: rank(G) = {m.rank}  (σ_max {m.sigma_max:.3g}, σ_min {m.sigma_min:.3g})", style="cyan"))
        self._draw_rank()

    def finished(self, report: Report) -> None:
        tr = report.training
        self.state = "finished"
        self.steps, self.losses = list(range(len(tr.losses))), [float(v) for v in tr.losses]
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
        self._draw_loss()
        self._draw_rank()

    def stopped(self, why: str) -> None:
        self.state = why
        self.query_one(StageLog).write(Text(f"■ {why}", style="bold yellow"))
        self._status()

    # ---- drawing
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
        t.append(f"  step {self.step:,}/{self.total:,}{pct}  loss {num(self.loss)}  elapsed {_clock(self.elapsed)}")
        if self.state == "running":
            t.append(f"  remaining {_clock(remaining)}" if self.stage == "train" else "")
        status.update(t, layout=False)  # fixed height: no relayout of the screen at 10 Hz

    def _draw_loss(self) -> None:
        plot = self.query_one("#loss-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("log10 training loss")
        plt.xlabel("step")
        if self.losses:
            cap = max(32, 2 * max(plot.size.width, 40))
            xs, ys = decimate(self.steps, log10_floor(self.losses), cap)
            plt.plot(xs, ys, marker="braille")
        plot.refresh()

    def _draw_rank(self) -> None:
        plot = self.query_one("#rank-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("rank(G) during training · log10 σ (right)")
        plt.xlabel("step")
        if self.probes:
            xs = [p.step for p in self.probes]
            plt.plot(xs, [p.rank for p in self.probes], marker="braille", label="rank")
            plt.plot(xs, log10_floor([p.sigma_max for p in self.probes]), marker="braille", yside="right",
                     label="σ_max")
            plt.plot(xs, log10_floor([p.sigma_min for p in self.probes]), marker="braille", yside="right",
                     label="σ_min")
        else:
            plt.text("no rank probes in this run (analysis.rank_every)" if self.state != "running"
                     else "no rank probes yet", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        plot.refresh()
