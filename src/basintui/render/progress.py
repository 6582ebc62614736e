"""Progress of a headless run on stderr: a rich progress bar on a terminal, nothing but notes otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..limits import fmt_bytes
from ..schema.events import Event, Note, PlanReady, RankProbe, Stage, TrainStep


class RunProgress:
    """Context manager; pass `on_event` to session.run (it takes the engine's events, basintui.schema.events)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
            transient=False,
        )
        self.train_task = None
        self.stage_task = None

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
            if self.train_task is None:
                self.train_task = self.progress.add_task("train", total=max(event.total, 1), info="")
            self.progress.update(self.train_task, completed=event.step, info=f"loss {event.loss:.4g}")
        elif isinstance(event, RankProbe) and self.live:
            self.progress.console.print(f"[dim]step {event.step}: rank(G) = {event.rank}[/]")
        elif isinstance(event, Stage) and event.name != "train":
            if not event.done:
                self.stage_task = self.progress.add_task(event.name, total=1, info="")
            elif self.stage_task is not None:
                self.progress.update(self.stage_task, completed=1, info=f"{event.seconds:.2f} s")
