"""Snapshots of every pane at 120×40 and 80×24, from a real report the engine wrote.

The report is tests/fixtures/reports/xor-relu.json (every section on: G, the dense Hessian, the layers,
the dependent inputs and the level set), decoded by basintui.schema. It is replayed through the bridge
(`BasinApp(preset, session=replay_session)`): the fake session emits the events a run of that report
would (stages with their stored timings, the plan, the rank probes, one step per stored loss) and
returns the decoded report. Regenerate the stored reports with `tests/fixtures/reports/regenerate.py`,
then the snapshots with `pytest tests/test_tui_snapshots.py --snapshot-update`, and look at them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from textual.widgets import TabbedContent

from basintui.config import load_preset
from basintui.schema import load_report, report_to_builtins
from basintui.schema.events import Note, PlanReady, RankProbe, Stage, TrainStep
from basintui.tui.app import BasinApp

REPORTS = Path(__file__).resolve().parent / "fixtures" / "reports"
CASE = "xor-relu"
TABS = ["setup", "training", "spectrum", "layers", "hessian", "levelset"]


def _cases() -> dict:
    spec = importlib.util.spec_from_file_location("regenerate_reports", REPORTS / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


class StoredReport:
    """What the bridge gets back from a session: the typed report (and its builtins form)."""

    def __init__(self, report) -> None:
        self.report = report

    def to_schema(self):
        return self.report

    def to_dict(self) -> dict:
        return report_to_builtins(self.report)


def replay_session(preset, on_event, cancel):
    """A deterministic stand-in for engine.session.run: the events of the stored run, then its report."""
    report = load_report(REPORTS / f"{CASE}.json")
    tr, timings = report.training, report.timings
    on_event(Stage("data"))
    on_event(Stage("data", done=True, seconds=timings.get("data", 0.0), detail=report.data.description))
    if report.plan is not None:
        on_event(PlanReady(report.plan))
    for note in report.notes:
        on_event(Note(note))
    on_event(Stage("train", detail=f"{preset.train.steps} steps of {preset.train.optimizer}"))
    for p in tr.rank_history:
        on_event(RankProbe(p.step, p.rank, p.sigma_max, p.sigma_min, p.tolerance))
    for s, loss in enumerate(tr.losses, start=1):
        cancel.check()
        on_event(TrainStep(s, tr.steps, loss, tr.seconds * s / max(len(tr.losses), 1)))
    on_event(Stage("train", done=True, seconds=timings.get("train", 0.0), detail=tr.status))
    for name, seconds in timings.items():
        if name not in ("data", "train", "total"):
            on_event(Stage(name))
            on_event(Stage(name, done=True, seconds=seconds))
    return StoredReport(report)


def make_app() -> BasinApp:
    preset_name, sets, _ = _cases()[CASE]
    return BasinApp(load_preset(preset_name, sets), session=replay_session)


def run_then_show(tab: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        if tab != "setup":
            await pilot.press("r")
            for _ in range(600):
                if app.report is not None:
                    break
                await pilot.pause(0.05)
            assert app.report is not None, "the replayed run did not finish"
            await app.workers.wait_for_complete()
        await pilot.press(str(TABS.index(tab) + 1))
        tabs = app.query_one(TabbedContent)
        for _ in range(100):
            if tabs.active == tab:
                break
            await pilot.pause(0.05)
        assert tabs.active == tab
        app.clear_notifications()
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", [(120, 40), pytest.param((80, 24), marks=pytest.mark.slow)],  # 80x24: slow set
                         ids=["120x40", "80x24"])
@pytest.mark.parametrize("tab", TABS)
def test_pane_snapshot(snap_compare, tab, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=run_then_show(tab))
