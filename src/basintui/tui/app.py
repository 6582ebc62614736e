"""The basintui app: Setup, Training, Spectrum of G, Information loss by layer, Hessian, Level set and
Beyond the rank.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane, TextArea

from ..atomic import write_text_atomic
from ..cli_reports import ReportFileError, read_report
from ..config import Preset, PresetError, from_dict, load_preset
from ..limits import fmt_bytes
from ..render.eta import RunClock, clock, progress_text
from ..render.strip import StripState
from ..schema.events import (
    Failed,
    Finished,
    Note,
    Partial,
    PlanReady,
    RankProbe,
    Stage,
    StageProgress,
    TrainProgress,
)
from ..schema.plan import Plan
from ..schema.report import report_to_builtins
from .bridge import Bridge, Session, export_paths
from .messages import EngineEvent, ExportDone, ExportFailed, RunStarted
from .screens.error import ErrorScreen
from .screens.export import ExportScreen
from .screens.help import HelpScreen
from .screens.path import PathScreen
from .widgets.beyond import BeyondPane, has_any
from .widgets.dashboard import Dashboard
from .widgets.hessian import HessianPane
from .widgets.layers import LayersPane
from .widgets.levelset import LevelSetPane
from .widgets.loglines import note_line, stage_line
from .widgets.setup import SetupChanged, SetupPane
from .widgets.spectrum import SpectrumPane
from .widgets.sweep import SweepPane
from .widgets.training import TrainingPane

if TYPE_CHECKING:
    from ..schema.report import Report

W = TypeVar("W")
DASHBOARD_COLUMNS = 120  # from this width the dashboard shows every summary at once


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
    ("dashboard", "Dashboard"),
    ("setup", "Setup"),
    ("training", "Training"),
    ("spectrum", "Spectrum of G"),
    ("layers", "Information loss by layer"),
    ("hessian", "Hessian"),
    ("levelset", "Level set"),
    ("beyond", "Beyond the rank"),
    ("sweep", "Sweep"),
)

KEYS: tuple[KeySpec, ...] = (
    KeySpec("r", "run", "Run", "run the preset in Setup (replaces a running run)"),
    KeySpec("ctrl+r", "run", "Run", "run from anywhere, even while typing in a field", show=False, priority=True,
            display="ctrl+r"),
    KeySpec("x", "cancel", "Cancel", "cancel the running run (what was computed is kept)"),
    KeySpec("c", "compare", "Compare", "compare this report with a saved one (spectra overlaid)"),
    KeySpec("s", "save_preset", "Save", "save the Setup fields as a preset TOML file (asks for the path)"),
    KeySpec("e", "export", "Export", "export the report as JSON + NPZ and the screen as SVG beside it"),
    KeySpec("0", "show_tab('dashboard')", "Dashboard", "show the dashboard (everything at once)", display="0"),
    *(KeySpec(str(i), f"show_tab('{tab}')", title, f"show the {title} pane full size", show=False, display=str(i))
      for i, (tab, title) in enumerate(TABS[1:], start=1)),
    KeySpec("escape", "back", "Back", "leave a text field; from a full-size pane, back to the dashboard",
            show=False, display="esc"),
    KeySpec("question_mark", "help", "Help", "this help", display="?"),
    KeySpec("ctrl+p", "command_palette", "Commands", "the command palette: every action by name", show=False,
            display="ctrl+p"),
    KeySpec("q", "quit", "Quit", "quit when not typing in a field (cancels a running run)"),
    KeySpec("ctrl+q", "quit", "Quit", "quit from anywhere", show=False, priority=True, display="ctrl+q"),
)


class BasinApp(App[int]):
    """`session` replaces engine.session.run (the snapshot tests inject a deterministic fake);
    `opened` shows a saved report (`basintui open`) without running anything."""

    CSS_PATH = "app.tcss"
    TITLE = "basintui"
    # -wide: a plot beside its facts (from 110 columns); -dash: the dashboard's grid (from 120)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide"), (DASHBOARD_COLUMNS, "-dash")]
    BINDINGS = [k.binding() for k in KEYS]

    def __init__(self, preset: Preset, session: Session | None = None,
                 opened: tuple[Report, Path] | None = None) -> None:
        super().__init__()
        self.preset = preset
        self.bridge = Bridge(session)
        self.report: Report | None = None
        self.report_path: Path | None = None  # where the shown report lives on disk (opened or exported)
        self.handle: Any = None
        self.opened = opened
        self.plan_now: Plan | None = None
        self.status = "ready"
        self.clock = RunClock()
        self.started_at: float | None = None
        self.first_spectrum_s: float | None = None  # seconds from `r` to the spectrum on screen

    # ---- layout
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with TabbedContent(initial="setup" if self.opened is None else "dashboard", id="tabs"):
            with TabPane("Dashboard", id="dashboard"):
                yield Dashboard(id="dashboard-pane")
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
            with TabPane("Beyond the rank", id="beyond"):
                yield BeyondPane(id="beyond-pane", classes="pane")
            with TabPane("Sweep", id="sweep"):
                yield SweepPane(id="sweep-pane", classes="pane")
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p is on the help screen

    def pane(self, cls: type[W]) -> W:
        """A widget of the main screen, whatever modal is on top."""
        return self.screen_stack[0].query_one(cls)

    def on_mount(self) -> None:
        self.sub_title = f"preset {self.preset.name}"
        # Open with focus on a pane (the preset list, or an opened report's dashboard), never in a text field.
        self.query_one("#preset-list" if self.opened is None else "#dash-log").focus()
        self.pane(TrainingPane).clock = self.clock  # one estimate of the run's time left, shown in both places
        self._strip()
        self.set_interval(1.0, self._tick)
        if self.opened is not None:
            self._show_opened(*self.opened)
        else:
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

    FOCUS_IN = {"dashboard": "#dash-log", "setup": "#preset-list", "training": "#stage-log",
                "spectrum": "#spec-facts", "layers": "#layers-table", "hessian": "#hess-facts",
                "levelset": "#ls-body", "beyond": "#beyond-body", "sweep": "#sweep-start"}

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """A tab clicked with the mouse: keep the focus on the visible pane, never in a hidden field."""
        pane_id = event.pane.id or ""
        if self.pane(TabbedContent).active == pane_id:  # a late activation must not pull focus back
            self._focus_pane(pane_id)

    @property
    def wide(self) -> bool:
        return self.size.width >= DASHBOARD_COLUMNS

    # ---- commands (palette) from the key table
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        seen = set()
        for k in KEYS:
            if k.action in seen or k.action in ("quit", "command_palette", "back"):
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

    def action_back(self) -> None:
        """Esc: out of a text field (the field keeps its value), else from a pane back to the dashboard."""
        focused = self.focused
        tab = self.pane(TabbedContent).active
        if isinstance(focused, (Input, TextArea)):
            self._focus_pane_root(tab)
        elif tab not in ("dashboard", "setup") or (tab == "setup" and self.status != "ready"):
            self.action_show_tab("dashboard")

    def _focus_pane_root(self, tab: str) -> None:
        target = self.FOCUS_IN.get(tab)
        if target:
            self.screen_stack[0].query_one(target).focus()
        else:
            self.set_focus(None)

    def action_save_preset(self) -> None:
        self.action_show_tab("setup")
        self.pane(SetupPane).action_save_preset()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(KEYS))

    def setup_preset(self) -> Preset | None:
        """The preset the Setup form holds now (None while a field is invalid): what `r` and a sweep start."""
        return self.pane(SetupPane).validate()

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
        self._reset_for_run(preset)
        self.action_show_tab("dashboard" if self.wide else "training")
        self.bridge.start(self, preset)
        self.call_after_refresh(self._freeze_heap)

    def _reset_for_run(self, preset: Preset) -> None:
        self.preset = preset
        self.report, self.handle, self.report_path, self.plan_now = None, None, None, None
        self.status = "running"
        self.started_at = time.monotonic()
        self.first_spectrum_s = None
        self.clock.start(planned_stages(preset))
        self.pane(TrainingPane).reset(preset.name, preset.train.steps)
        self.pane(Dashboard).reset(preset.train.steps)
        self.pane(SpectrumPane).clear("Running: the spectrum appears when G has been computed.")
        self.pane(LayersPane).clear("Running: the layers appear when the analysis has finished.")
        self.pane(HessianPane).clear("Running: the Hessian appears when the analysis has finished.")
        self.pane(LevelSetPane).clear("Running: the level-set check appears when the analysis has finished.")
        self.pane(BeyondPane).clear("Running: the sections beyond the rank appear as their stages finish.")
        self._strip()

    def action_cancel(self) -> None:
        if self.bridge.cancel():
            self.pane(TrainingPane).stopped("cancelled")
            self._stopped("cancelled")
            self.notify("Run cancelled.", timeout=3)
        else:
            self.notify("No run to cancel.", timeout=2)

    def action_export(self) -> None:
        if self.handle is None and self.report_path is None:
            self.notify("Nothing to export yet: run a preset first.", severity="warning", timeout=3)
            return
        if self.handle is None:  # an opened report: it is on disk already, the screen goes beside it
            self._write_svg(str(self.report_path.with_suffix(".svg")))
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")

        def confirmed(path: str | None) -> None:
            if path:
                json_path, npz_path = export_paths(path)
                self._write_svg(str(Path(json_path).with_suffix(".svg")))
                self.bridge.export(self, self.handle, json_path, npz_path)
                self.notify(f"Exporting to {json_path} and {npz_path} …", timeout=2)

        self.push_screen(ExportScreen(f"basintui-{self.preset.name}-{stamp}.json"), confirmed)

    def _write_svg(self, path: str) -> None:
        """The main screen (not the export dialog) as SVG, written atomically."""
        try:
            svg = self.export_screenshot(title=f"basintui · {self.preset.name}")
            write_text_atomic(Path(path), svg)
        except OSError as exc:
            self.push_screen(ErrorScreen("The screenshot could not be written", f"{path}: {exc.strerror or exc}"))
            return
        self.notify(f"Wrote {path}", title="Screen exported", timeout=5)

    def action_compare(self) -> None:
        mine = self.report
        if mine is None:
            self.notify("Nothing to compare yet: run a preset or open a report first.", severity="warning", timeout=3)
            return

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                other = read_report(Path(path).expanduser())
            except ReportFileError as exc:
                self.push_screen(ErrorScreen("That file cannot be compared", str(exc)))
                return
            from .screens.compare import (
                CompareScreen,  # the comparison's renderers load on first use
            )

            here = str(self.report_path) if self.report_path is not None else f"this run ({self.preset.name})"
            self.push_screen(CompareScreen(mine, other, here, path))

        self.push_screen(PathScreen("Compare with a saved report", "Path of a report JSON written by basintui:",
                                    str(self.report_path or "")), chosen)

    async def action_quit(self) -> None:
        if self.bridge.busy:
            self.bridge.cancel()
        self.exit(0)

    # ---- setup
    def on_setup_changed(self, message: SetupChanged) -> None:
        """Before any run the title and the strip follow Setup; after one they keep naming the run shown
        and its status (a late SetupChanged from composing Setup must not wipe the run's status)."""
        if message.preset is not None and self.status == "ready":
            self.sub_title = f"preset {message.preset.name}"
            self.preset = message.preset
            self._strip()

    # ---- the strip and the clock
    def _strip(self) -> None:
        dashboards = self.screen_stack[0].query(Dashboard)
        if not dashboards:  # a message from Setup while the screen is still being composed
            return
        state = StripState(self.preset.name, self.status, self.plan_now, self.report, self._elapsed(),
                           self.clock.remaining(), self.clock.current)
        dashboards.first().strip(state)

    def _elapsed(self) -> float | None:
        """The run's seconds: the report's own total once the run has ended with one (what the engine
        measured, the same in every view), else the app's clock while it runs."""
        total = self.report.total_seconds if self.report is not None and self.status != "running" else None
        if total is not None:
            return total
        return self.clock.elapsed() if self.clock.started is not None else None

    def _tick(self) -> None:
        if self.status == "running":
            self._strip()

    def _stopped(self, status: str) -> None:
        self.status = status
        self.clock.stop()
        self.sub_title = f"preset {self.preset.name} · {status}"
        elapsed = self._elapsed()
        self.pane(Dashboard).progress_line(Text(f"■ {status}" + (f" after {clock(elapsed)}" if elapsed else ""),
                                                style="bold"))
        self._strip()

    # ---- engine messages (stale runs dropped by id)
    def on_run_started(self, m: RunStarted) -> None:
        if self.bridge.is_current(m.run_id):
            self.sub_title = f"preset {m.preset_name} · running"

    def on_engine_event(self, m: EngineEvent) -> None:
        if not self.bridge.is_current(m.run_id):
            return
        match m.event:
            case Stage() as e:
                self._stage(e)
            case StageProgress() as e:
                self._stage_progress(e)
            case Note() as e:
                self.pane(TrainingPane).note(e)
                self.pane(Dashboard).log(note_line(e))
            case TrainProgress() as e:
                self.clock.train(e)
                self.pane(TrainingPane).progress(e)
                self.pane(Dashboard).train_progress(e)
            case RankProbe() as e:
                self.pane(TrainingPane).rank_probe(e)
                self.pane(Dashboard).rank_probe(e)
            case PlanReady(plan=plan):
                self._plan_ready(plan)
            case Partial(stage=stage, report=report):
                self._partial(stage, report)
            case Finished(report=report):
                self._finished(report, m.handle)
            case Failed() as e:
                self._failed(e)

    def _stage(self, e: Stage) -> None:
        self.clock.stage(e)
        self.pane(TrainingPane).stage_changed(e)
        self.pane(Dashboard).log(stage_line(e))
        if not e.done:
            self.pane(Dashboard).progress_line(progress_text(e.name, None, self.clock.remaining()))
        self._strip()

    def _stage_progress(self, e: StageProgress) -> None:
        self.clock.progress(e)
        self.pane(TrainingPane).stage_progress(e)
        self.pane(Dashboard).progress_line(progress_text(e.name, e, self.clock.remaining()))

    def _plan_ready(self, plan: Plan) -> None:
        self.plan_now = plan
        self.clock.plan(plan)
        self.pane(TrainingPane).plan(plan)
        self.pane(SetupPane).show_measured(
            f"Measured by the engine for the last run: N = {plan.n_params:,}, k = {plan.n_train:,}, "
            f"d = {plan.out_dim}; G {plan.n_params:,} × {plan.kd:,} ({fmt_bytes(plan.g_bytes)}), spectrum route "
            f"{plan.route}; Hessian {plan.hessian_mode}"
            + (f" ({fmt_bytes(plan.hessian_bytes)})" if plan.hessian_bytes else ""))
        self._strip()

    def _partial(self, stage: str, report: Report) -> None:
        """Show each finished section while later stages still run (never a pane for a null section:
        null mid-run means 'not yet', which the final report settles)."""
        self.report = report
        for section, pane in ((report.G, SpectrumPane), (report.layers, LayersPane),
                              (report.hessian, HessianPane), (report.levelset, LevelSetPane)):
            if section is not None:
                self.pane(pane).show(report)
        if has_any(report):
            self.pane(BeyondPane).show(report)
        self.pane(Dashboard).show(report)
        self._strip()
        if stage == "spectrum" and report.G is not None:
            if self.started_at is not None and self.first_spectrum_s is None:
                self.first_spectrum_s = time.monotonic() - self.started_at
            g = report.G
            self.notify(f"rank(G) = {g.rank} (N = {g.n_params:,}, kd = {g.n_outputs:,}); "
                        "the other analyses are still running", title="Spectrum ready", timeout=3)

    def _show_report(self, report: Report) -> None:
        self.report = report
        self.pane(TrainingPane).finished(report)
        for pane in (SpectrumPane, LayersPane, HessianPane, LevelSetPane, BeyondPane):
            self.pane(pane).show(report)
        self.pane(Dashboard).show(report, final=True)

    def _finished(self, report: Report, handle: Any) -> None:
        self.handle = handle
        self._show_report(report)
        g = report.G
        if self.started_at is not None and self.first_spectrum_s is None and g is not None:
            self.first_spectrum_s = time.monotonic() - self.started_at
        status = report.training.status
        self._stopped(status)
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

    def _show_opened(self, report: Report, path: Path) -> None:
        """`basintui open`: every pane from the saved report; nothing runs until `r`."""
        self.report_path = path
        self.pane(TrainingPane).reset(report.config.name, report.training.steps)
        self._show_report(report)
        self.status = "opened"
        self.sub_title = f"{path.name} · {report.training.status}"
        dash = self.pane(Dashboard)
        dash.log(Text(f"Opened {path}: a {report.training.status} run of preset {report.config.name}", style="bold"))
        for name, seconds in report.timings.items():
            if name != "total":
                dash.log(stage_line(Stage(name, done=True, seconds=seconds)))
        for note in report.notes:
            dash.log(note_line(Note(note)))
        took = report.total_seconds
        dash.progress_line(Text(f"■ {report.training.status}" + (f"; the run took {clock(took)}" if took else ""),
                                style="bold"))
        if not self.wide:
            self.call_after_refresh(self.action_show_tab, "spectrum")
        self._strip()

    def _failed(self, e: Failed) -> None:
        self.pane(TrainingPane).stopped(f"failed: {e.message}")
        self._stopped("failed")
        title = "The preset cannot be run as asked" if e.kind == "input" else "The engine failed"
        self.push_screen(ErrorScreen(title, e.message, e.details))

    def on_export_done(self, m: ExportDone) -> None:
        self.report_path = Path(m.paths[0]) if m.paths else self.report_path
        self.notify("Wrote " + " and ".join(m.paths), title="Report exported", timeout=6)

    def on_export_failed(self, m: ExportFailed) -> None:
        self.push_screen(ErrorScreen("Export failed", m.message))


def planned_stages(preset: Preset) -> tuple[str, ...]:
    """The stages a run of `preset` goes through, in order (a stage turned off is left out)."""
    a = preset.analysis
    return tuple(s for s, on in (("data", True), ("train", True), ("jacobian", True), ("spectrum", True),
                                 ("hessian", a.hessian != "off"), ("layers", a.layers), ("levelset", a.levelset),
                                 ("symmetry", a.symmetry), ("soft", a.soft), ("probe", bool(a.probe)),
                                 ("llc", a.llc), ("slices", a.slices))
                 if on)


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


def preset_of(report: Report, path: Path) -> tuple[Preset, str]:
    """The preset a saved report was run with (so `r` reruns it), or the default preset and why not."""
    try:
        return from_dict(report_to_builtins(report)["config"], source=str(path), source_dir=str(path.parent)), ""
    except PresetError as exc:
        return load_preset("default"), f"Its preset cannot be loaded here ({exc}); Setup holds the default preset."


def open_main(report: Report, path: Path) -> int:
    """`basintui open REPORT.json`: the app on a saved report, nothing running. Returns the exit code."""
    preset, why = preset_of(report, path)
    app = BasinApp(preset, opened=(report, path))
    if why:
        app.call_later(app.notify, why, severity="warning", timeout=8)
    app.run()
    app.bridge.shutdown(0.5, terminate=True)
    return int(app.return_code or 0)
