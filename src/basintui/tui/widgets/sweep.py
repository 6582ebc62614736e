"""The Sweep pane: a grid and a seed count, Start runs `basintui sweep` on the preset in Setup (the app's
`preset`) on a local pool, and the plot of the fraction rank-deficient against N/(k·d) and the table per
point fill in as each run finishes. Stop cancels the runs in flight (they are recorded as cancelled);
the journal, summary.csv and sweep.json are in the folder the status line names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from ...render.sweep import plot, table

if TYPE_CHECKING:
    from ...config import Preset
    from ...schema.sweep import SweepSummary
    from ..sweep_runner import SweepRunner

DEFAULT_GRID = "model.hidden=[[2], [4], [8], [16]]"
DEFAULT_SEEDS = "10"


class SweepPane(Vertical):
    """Border title "Sweep". `runner_options` go to SweepRunner (tests pass a backend_factory)."""

    DEFAULT_CSS = """
    SweepPane #sweep-form { height: auto; }
    SweepPane #sweep-form Input { width: 1fr; }
    SweepPane #sweep-form #sweep-seeds { width: 10; }
    SweepPane #sweep-form Label { padding: 1 1 0 1; }
    SweepPane #sweep-status { height: auto; padding: 0 1; }
    SweepPane #sweep-body { height: 1fr; padding: 0 1; }
    """

    def __init__(self, *args: Any, runner_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runner_options = runner_options or {}
        self.runner: SweepRunner | None = None
        self.summary: SweepSummary | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="sweep-form"):
            yield Label("grid")
            yield Input(DEFAULT_GRID, id="sweep-grid", placeholder="KEY=[v1, v2]; KEY2=[…]")
            yield Label("seeds")
            yield Input(DEFAULT_SEEDS, id="sweep-seeds", type="integer")
            yield Button("Start", id="sweep-start", variant="primary")
            yield Button("Stop", id="sweep-stop", disabled=True)
        yield Static("Start runs the preset in Setup over the grid × seeds on this machine's cores.",
                     id="sweep-status")
        with VerticalScroll(id="sweep-body"):
            yield Static("", id="sweep-plot")

    def on_mount(self) -> None:
        self.border_title = "Sweep"

    # ---- the form
    def grid_items(self) -> list[str]:
        text = self.query_one("#sweep-grid", Input).value
        return [part.strip() for part in text.split(";") if part.strip()]

    def seeds(self) -> int:
        try:
            return int(self.query_one("#sweep-seeds", Input).value)
        except ValueError:
            return 0

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "sweep-start":
            from_setup = getattr(self.app, "setup_preset", None)  # the Setup form's preset, as `r` runs it
            self.start(from_setup() if from_setup else getattr(self.app, "preset", None))
        elif event.button.id == "sweep-stop":
            self.stop()

    # ---- running
    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.thread is not None and self.runner.thread.is_alive()

    def start(self, preset: Preset | None) -> bool:
        """Start a sweep of `preset`; False (with the reason in the status line) when it cannot start."""
        from ...sweep.grid import GridError
        from ..sweep_runner import SweepRunner

        if self.running:
            return False
        if preset is None:
            self.status("No valid preset in Setup.", error=True)
            return False
        try:
            runner = SweepRunner(preset, self.grid_items(), self.seeds(), **self.runner_options)
        except GridError as exc:
            self.status(f"cannot start: {exc}", error=True)
            return False
        self.runner = runner
        self.query_one("#sweep-start", Button).disabled = True
        self.query_one("#sweep-stop", Button).disabled = False
        self.status(f"running 0/{runner.total} runs of {preset.name}; files in {runner.out}")
        runner.start(self._from_thread(self._update), self._from_thread(self._done))
        return True

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.status("stopping: cancelling the runs in flight…")

    def on_unmount(self) -> None:
        if self.runner is not None:  # the app is closing: cancel the runs in flight, draw nothing
            self.runner.stop()

    def _from_thread(self, fn):
        def call(*args: Any) -> None:
            try:
                self.app.call_from_thread(fn, *args)
            except RuntimeError:  # the app has gone
                pass
        return call

    def _update(self, summary: SweepSummary, done: int, total: int) -> None:
        if not self.is_attached:
            return
        self.show(summary)
        failed = sum(p.failed for p in summary.points)
        out = self.runner.out if self.runner is not None else ""
        self.status(f"running {done}/{total} runs{f', {failed} failed' if failed else ''}; files in {out}")

    def _done(self, summary: SweepSummary | None, cancelled: bool, error: str | None) -> None:
        if not self.is_attached:
            return
        self.query_one("#sweep-start", Button).disabled = False
        self.query_one("#sweep-stop", Button).disabled = True
        if summary is not None:
            self.show(summary)
        out = self.runner.out if self.runner is not None else ""
        if error:
            self.status(f"the sweep failed: {error}", error=True)
        elif cancelled:
            self.status(f"stopped; the runs in flight were cancelled. Files in {out}")
        else:
            runs = sum(p.runs for p in summary.points) if summary else 0
            self.status(f"done: {runs} runs ok. Files in {out}")

    # ---- drawing
    def status(self, text: str, error: bool = False) -> None:
        for w in self.query("#sweep-status").results(Static):  # none once the pane is being removed
            w.update(Text(text, style="bold red" if error else ""))

    def show(self, summary: SweepSummary) -> None:
        self.summary = summary
        for w in self.query("#sweep-plot").results(Static):
            w.update(Text(plot(summary) + "\n\n" + table(summary)))
