"""The basintui app: Setup, Training, Spectrum of G, Information loss by layer, Hessian and Level set.

Every number on screen comes from the run's typed report (`basintui.schema.Report`), which arrives
in the engine's events through the bridge (bridge.py, the one module that imports the engine): one
message, `EngineEvent`, dispatched on the event's type. The key table below is the single source of
the bindings, the help screen and the command palette's commands.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, TabbedContent, TabPane

from ..config import Preset, PresetError, load_preset
from ..schema.events import (
    Failed,
    Finished,
    Note,
    Partial,
    PlanReady,
    RankProbe,
    Stage,
    TrainProgress,
)
from ..schema.plan import Plan
from ..limits import fmt_bytes
from .bridge import Bridge, Session, export_paths
from .messages import EngineEvent, ExportDone, ExportFailed, RunStarted
from .screens.error import ErrorScreen
from .screens.export import ExportScreen
from .screens.help import HelpScreen
from .widgets.hessian import HessianPane
from .widgets.layers import LayersPane
from .widgets.levelset import LevelSetPane
from .widgets.setup import SetupChanged, SetupPane
from .widgets.spectrum import SpectrumPane
from .widgets.training import TrainingPane

if TYPE_CHECKING:
    from ..schema.report import Report

W = TypeVar("W")


@dataclass(frozen=True)
class KeySpec:
    """One key: the binding, the footer label and the help line all come from here."""

    key: str
    action: str
    description: str
    help: str
    show: bool = True
    priority: bool = False
    display: str = ""

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.description, show=self.show, priority=self.priority,
                       key_display=self.display or None)


TABS = (
    ("setup", "Setup"),
    ("training", "Training"),
    ("spectrum", "Spectrum of G"),
    ("layers", "Information loss by layer"),
    ("hessian", "Hessian"),
    ("levelset", "Level set"),
)

KEYS: tuple[KeySpec, ...] = (
    KeySpec("r", "run", "Run", "run the preset in Setup (replaces a running run)"),
    KeySpec("ctrl+r", "run", "Run", "run from anywhere, even while typing in a field", show=False, priority=True,
            display="ctrl+r"),
    KeySpec("c", "cancel", "Cancel", "cancel the running run"),
    KeySpec("escape", "cancel", "Cancel", "cancel the running run (also closes a dialog)", show=False,
            display="esc"),
    KeySpec("e", "export", "Export", "export the report as JSON + NPZ to a path you confirm"),
    *(KeySpec(str(i), f"show_tab('{tab}')", title, f"show the {title} pane", show=False, display=str(i))
      for i, (tab, title) in enumerate(TABS, start=1)),
    KeySpec("question_mark", "help", "Help", "this help", display="?"),
    KeySpec("ctrl+p", "command_palette", "Commands", "the command palette: every action by name", show=False,
            display="ctrl+p"),
    KeySpec("q", "quit", "Quit", "quit when not typing in a field (cancels a running run)"),
    KeySpec("ctrl+q", "quit", "Quit", "quit from anywhere", show=False, priority=True, display="ctrl+q"),
)


class BasinApp(App[int]):
    """`session` replaces engine.session.run (the snapshot tests inject a deterministic fake)."""

    CSS_PATH = "app.tcss"
    TITLE = "basintui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # plot beside its facts from 110 columns
    BINDINGS = [k.binding() for k in KEYS]

    def __init__(self, preset: Preset, session: Session | None = None) -> None:
        super().__init__()
        self.preset = preset
        self.bridge = Bridge(session)
        self.report: Report | None = None
        self.handle: Any = None
        self.started_at: float | None = None
        self.first_spectrum_s: float | None = None  # seconds from `r` to the spectrum on screen

    # ---- layout
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with TabbedContent(initial="setup", id="tabs"):
            with TabPane("Setup", id="setup"):
                yield SetupPane(self.preset, id="setup-pane", classes="pane")
            with TabPane("Training", id="training"):
                yield TrainingPane(id="training-pane", classes="pane")
            with TabPane("Spectrum of G", id="spectrum"):
                yield SpectrumPane(id="spectrum-pane", classes="pane")
            with TabPane("Layers", id="layers"):
                yield LayersPane(id="layers-pane", classes="pane")
            with TabPane("Hessian", id="hessian"):
                yield HessianPane(id="hessian-pane", classes="pane")
            with TabPane("Level set", id="levelset"):
                yield LevelSetPane(id="levelset-pane", classes="pane")
        yield Footer()

    def pane(self, cls: type[W]) -> W:
        """A widget of the main screen, whatever modal is on top."""
        return self.screen_stack[0].query_one(cls)

    def on_mount(self) -> None:
        self.sub_title = f"preset {self.preset.name}"
        # Open with focus on a pane (the preset list), never in a text field.
        self.query_one("#preset-list", OptionList).focus()
        self.bridge.prewarm()
        self._froze_heap = gc.get_freeze_count() == 0  # whether undoing the freeze on exit is ours to do
        self.call_after_refresh(self._freeze_heap)

    def _freeze_heap(self) -> None:
        """Move the objects alive now (widgets, styles, a shown report) out of the collector's sight.

        Measured: full (generation 2) collections over the app's heap stalled the event loop for
        100-210 ms during a run; after a freeze they touch only what was made since. gc.freeze is
        process-wide: it is this app's choice for its own lifetime, undone when it unmounts (unless
        something else in the process had frozen objects before the app started)."""
        gc.freeze()  # no gc.collect() first: a full collection is the very stall this avoids

    def on_unmount(self) -> None:
        self.bridge.shutdown(0.0, terminate=True)
        if getattr(self, "_froze_heap", False):
            gc.unfreeze()  # the frozen objects go back to the collector's oldest generation

    FOCUS_IN = {"setup": "#preset-list", "training": "#stage-log", "spectrum": "#spec-facts",
                "layers": "#layers-table", "hessian": "#hess-facts", "levelset": "#ls-body"}

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """A tab clicked with the mouse: keep the focus on the visible pane, never in a hidden field."""
        pane_id = event.pane.id or ""
        if self.pane(TabbedContent).active == pane_id:  # a late activation must not pull focus back
            self._focus_pane(pane_id)

    # ---- commands (palette) from the key table
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        seen = set()
        for k in KEYS:
            if k.action in seen or k.action in ("quit", "command_palette"):
                continue
            seen.add(k.action)
            yield SystemCommand(k.description if "show_tab" not in k.action else f"Show {k.description}",
                                f"{k.help} ({k.display or k.key})", partial(self.run_action, k.action))

    # ---- actions
    def action_show_tab(self, tab: str) -> None:
        self.pane(TabbedContent).active = tab
        self._focus_pane(tab)

    def _focus_pane(self, tab: str) -> None:
        focused = self.focused
        pane = self.screen_stack[0].query_one(f"TabPane#{tab}")
        if focused is not None and any(a is pane for a in focused.ancestors):
            return
        target = self.FOCUS_IN.get(tab)
        if target:
            self.screen_stack[0].query_one(target).focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(KEYS))

    def action_run(self) -> None:
        setup = self.pane(SetupPane)
        preset = setup.validate()
        if preset is None:
            self.action_show_tab("setup")
            row = setup.first_invalid()
            if row is not None:
                row.editor.focus()
                row.scroll_visible()
            self.notify(f"Not started: {setup.error}", title="Fix the preset first", severity="error", timeout=6)
            return
        if self.bridge.busy:
            self.notify("The running run was replaced by a new one.", timeout=3)
        self.preset = preset
        self.report, self.handle = None, None
        self.started_at = time.monotonic()
        self.first_spectrum_s = None
        self.pane(TrainingPane).reset(preset.name, preset.train.steps)
        self.pane(SpectrumPane).clear("Running: the spectrum appears when G has been computed.")
        self.pane(LayersPane).clear("Running: the layers appear when the analysis has finished.")
        self.pane(HessianPane).clear("Running: the Hessian appears when the analysis has finished.")
        self.pane(LevelSetPane).clear("Running: the level-set check appears when the analysis has finished.")
        self.action_show_tab("training")
        self.bridge.start(self, preset)
        self.call_after_refresh(self._freeze_heap)

    def action_cancel(self) -> None:
        if self.bridge.cancel():
            self.pane(TrainingPane).stopped("cancelled")
            self.sub_title = f"preset {self.preset.name} · cancelled"
            self.notify("Run cancelled.", timeout=3)
        else:
            self.notify("No run to cancel.", timeout=2)

    def action_export(self) -> None:
        if self.handle is None:
            self.notify("Nothing to export yet: run a preset first.", severity="warning", timeout=3)
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")

        def confirmed(path: str | None) -> None:
            if path:
                json_path, npz_path = export_paths(path)
                self.bridge.export(self, self.handle, json_path, npz_path)
                self.notify(f"Exporting to {json_path} and {npz_path} …", timeout=2)

        self.push_screen(ExportScreen(f"basintui-{self.preset.name}-{stamp}.json"), confirmed)

    async def action_quit(self) -> None:
        if self.bridge.busy:
            self.bridge.cancel()
        self.exit(0)

    # ---- setup
    def on_setup_changed(self, message: SetupChanged) -> None:
        if message.preset is not None:
            self.sub_title = f"preset {message.preset.name}"

    # ---- engine messages (stale runs dropped by id)
    def on_run_started(self, m: RunStarted) -> None:
        if self.bridge.is_current(m.run_id):
            self.sub_title = f"preset {m.preset_name} · running"

    def on_engine_event(self, m: EngineEvent) -> None:
        if not self.bridge.is_current(m.run_id):
            return
        training = self.pane(TrainingPane)
        match m.event:
            case Stage() as e:
                training.stage_changed(e)
            case Note() as e:
                training.note(e)
            case TrainProgress() as e:
                training.progress(e)
            case RankProbe() as e:
                training.rank_probe(e)
            case PlanReady(plan=plan):
                self._plan_ready(plan)
            case Partial(stage=stage, report=report):
                self._partial(stage, report)
            case Finished(report=report):
                self._finished(report, m.handle)
            case Failed() as e:
                self._failed(e)

    def _plan_ready(self, plan: Plan) -> None:
        self.pane(TrainingPane).plan(plan)
        self.pane(SetupPane).show_measured(
            f"Measured by the engine for the last run: N = {plan.n_params:,}, k = {plan.n_train:,}, "
            f"d = {plan.out_dim}; G {plan.n_params:,} × {plan.kd:,} ({fmt_bytes(plan.g_bytes)}), spectrum route "
            f"{plan.route}; Hessian {plan.hessian_mode}"
            + (f" ({fmt_bytes(plan.hessian_bytes)})" if plan.hessian_bytes else ""))

    def _partial(self, stage: str, report: Report) -> None:
        """Show each finished section while later stages still run (never a pane for a null section:
        null mid-run means 'not yet', which the final report settles)."""
        for section, pane in ((report.G, SpectrumPane), (report.layers, LayersPane),
                              (report.hessian, HessianPane), (report.levelset, LevelSetPane)):
            if section is not None:
                self.pane(pane).show(report)
        if stage == "spectrum" and report.G is not None:
            if self.started_at is not None and self.first_spectrum_s is None:
                self.first_spectrum_s = time.monotonic() - self.started_at
            g = report.G
            self.notify(f"rank(G) = {g.rank} (N = {g.n_params:,}, kd = {g.n_outputs:,}); "
                        "the other analyses are still running", title="Spectrum ready", timeout=3)

    def _finished(self, report: Report, handle: Any) -> None:
        self.report, self.handle = report, handle
        self.pane(TrainingPane).finished(report)
        for pane in (SpectrumPane, LayersPane, HessianPane, LevelSetPane):
            self.pane(pane).show(report)
        g = report.G
        if self.started_at is not None and self.first_spectrum_s is None and g is not None:
            self.first_spectrum_s = time.monotonic() - self.started_at
        status = report.training.status
        self.sub_title = f"preset {self.preset.name} · {status}"
        if self.pane(TabbedContent).active == "training" and g is not None:
            self.action_show_tab("spectrum")
        if report.error is not None:
            self.push_screen(ErrorScreen(
                "The analysis stopped with an error",
                f"{report.error.message}\n\nWhat was computed before it is shown; the report can be exported (e).",
            ))
            return
        self.call_after_refresh(self._freeze_heap)
        if g is not None:
            self.notify(f"rank(G) = {g.rank} (N = {g.n_params:,}, kd = {g.n_outputs:,})",
                        title=f"Run finished: {status}", timeout=4)

    def _failed(self, e: Failed) -> None:
        self.pane(TrainingPane).stopped(f"failed: {e.message}")
        self.sub_title = f"preset {self.preset.name} · failed"
        title = "The preset cannot be run as asked" if e.kind == "input" else "The engine failed"
        self.push_screen(ErrorScreen(title, e.message, e.details))

    def on_export_done(self, m: ExportDone) -> None:
        self.notify("Wrote " + " and ".join(m.paths), title="Report exported", timeout=6)

    def on_export_failed(self, m: ExportFailed) -> None:
        self.push_screen(ErrorScreen("Export failed", m.message))


def main(preset_name: str) -> int:
    """`basintui [PRESET]`: open the app on a preset. Returns the exit code."""
    import sys

    try:
        preset = load_preset(preset_name)
    except PresetError as exc:
        sys.stderr.write(f"basintui: error: {exc}\n")
        return 2
    app = BasinApp(preset)
    app.run()
    app.bridge.shutdown(0.5, terminate=True)  # quitting: a running engine process is ended at once
    return int(app.return_code or 0)
