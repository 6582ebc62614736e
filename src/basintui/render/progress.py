"""Progress of a headless run on stderr.

On a terminal, a rich progress bar per stage: its fraction done in the stage's own units (columns,
steps, probes), the time it has run and the engine's estimate of the time left. Otherwise plain lines:
one as each stage ends (`basintui: stage NAME done (SECONDS s)`), and for a long stage one progress
line every LONG_STAGE_EVERY_S seconds of it (`basintui: stage NAME DONE/TOTAL UNIT (P%), about S s
left`). `lines=True` (`--progress lines`) adds a line as each stage starts, and prints the lines on a
terminal too, beside the bars. The line cadence follows the engine's own stage clock
(`StageProgress.elapsed`), not this process's.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..limits import fmt_bytes
from ..schema.events import Event, Note, PlanReady, RankProbe, Stage, StageProgress, TrainStep

LONG_STAGE_EVERY_S = 10.0  # a plain progress line per this many seconds of a stage, none for shorter stages


def left_words(e: StageProgress) -> str:
    """'about 12 s left' (from the measured rate), '… (planned)' (the planner's), '' when there is no estimate."""
    if e.eta is None or e.eta_source == "none":
        return ""
    secs = "under 1 s" if e.eta < 1 else f"about {e.eta:.0f} s" if e.eta < 90 else f"about {e.eta / 60:.1f} min"
    return f"{secs} left" + (" (planned)" if e.eta_source == "plan" else "")


def progress_line(e: StageProgress) -> str:
    """The plain progress line of a stage."""
    pct = 100.0 * e.done / e.total if e.total > 0 else 0.0
    unit = f" {e.unit}" if e.unit else ""
    left = left_words(e)
    done = f"{int(e.done)}" if e.total >= 10 else f"{e.done:.1f}".removesuffix(".0")
    amount = f"{pct:.0f}%" if e.unit == "%" else f"{done}/{e.total:.0f}{unit} ({pct:.0f}%)"  # the Hessian's is a share
    return f"basintui: stage {e.name} {amount}" + (f", {left}" if left else "")


class RunProgress:
    """Context manager; pass `on_event` to session.run (it takes the engine's events, basintui.schema.events)."""

    def __init__(self, console: Console, lines: bool = False, err: TextIO | None = None) -> None:
        self.console = console
        self.live = console.is_terminal
        self.lines = lines  # --progress lines: start and end lines, on a terminal too
        self.plain = lines or not self.live  # plain lines on `err`
        self.err = err
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            console=console,
            disable=not self.live,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.totals: dict[str, float] = {}
        self.next_line: dict[str, float] = {}  # the stage's elapsed seconds at which its next plain line is due

    def __enter__(self) -> "RunProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def _print(self, text: str) -> None:
        if self.live:
            self.progress.console.print(text)
        else:
            self.console.print(text, markup=False, highlight=False)

    def _line(self, text: str) -> None:
        out = self.err or sys.stderr
        out.write(text + "\n")
        out.flush()

    def _task(self, name: str, total: float | None = None) -> int:
        """The stage's bar (made on first use), with its total when one is given."""
        if total is not None:
            self.totals[name] = max(float(total), 1.0)
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=self.totals.get(name, 1.0), info="", left="")
        elif total is not None:
            self.progress.update(self.tasks[name], total=self.totals[name])
        return self.tasks[name]

    def on_event(self, event: Event) -> None:
        if isinstance(event, Note):
            style = "yellow" if event.level == "warn" else "dim"
            if self.live:
                self.progress.console.print(f"[{style}]{event.text}[/]")
            elif event.level == "warn":
                self._print(f"warning: {event.text}")
        elif isinstance(event, PlanReady) and self.live:
            p = event.plan
            self.progress.console.print(
                f"[dim]N = {p.n_params} parameters, k = {p.n_train} inputs, d = {p.out_dim}: "
                f"G is {p.n_params} × {p.n_train * p.out_dim} ({fmt_bytes(p.g_bytes)})[/]")
        elif isinstance(event, TrainStep):
            self.progress.update(self._task("train", event.total), completed=event.step, info=f"loss {event.loss:.4g}")
        elif isinstance(event, RankProbe) and self.live:
            self.progress.console.print(f"[dim]step {event.step}: rank(G) = {event.rank}[/]")
        elif isinstance(event, StageProgress):
            self._stage_progress(event)
        elif isinstance(event, Stage):
            self._stage(event)

    def _stage_progress(self, e: StageProgress) -> None:
        task = self._task(e.name, e.total)
        fields = {} if e.name == "train" else {"info": e.unit}  # training's info is its loss
        self.progress.update(task, completed=e.done, left=left_words(e), **fields)
        due = self.next_line.setdefault(e.name, LONG_STAGE_EVERY_S)
        if self.plain and e.elapsed >= due and e.done < e.total:
            self._line(progress_line(e))
            self.next_line[e.name] = e.elapsed + LONG_STAGE_EVERY_S

    def _stage(self, e: Stage) -> None:
        if not e.done:
            self._task(e.name)
            self.next_line[e.name] = LONG_STAGE_EVERY_S
            if self.lines:
                self._line(f"basintui: stage {e.name} started")
            return
        task = self._task(e.name)
        info = {} if e.name == "train" else {"info": f"{e.seconds:.2f} s"}
        self.progress.update(task, completed=self.totals.get(e.name, 1.0), left="", **info)
        if self.plain:
            self._line(f"basintui: stage {e.name} done ({e.seconds:.2f} s)")
