"""A stored engine report replayed through the bridge as the events its run emitted (for Pilot and
snapshot tests: deterministic, no torch in the app's process, a real report's numbers).

`replay_session(name)` returns a stand-in for engine.session.run: it emits the stages with their
stored timings (each with a StageProgress half way and at the end), the plan, the notes, the rank
probes, one step per stored loss, and returns the decoded report. `stored_preset(name)` is the preset
the report was made with (tests/fixtures/reports/regenerate.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from basintui.config import load_preset
from basintui.schema import load_report, report_to_builtins
from basintui.schema.events import (
    Note,
    PlanReady,
    RankProbe,
    Stage,
    StageProgress,
    TrainStep,
)

REPORTS = Path(__file__).resolve().parent / "fixtures" / "reports"


def _cases() -> dict:
    spec = importlib.util.spec_from_file_location("regenerate_reports", REPORTS / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def stored_preset(name: str):
    preset_name, sets, _ = _cases()[name]
    return load_preset(preset_name, sets)


class StoredReport:
    """What the bridge gets back from a session: the typed report (and its builtins form)."""

    def __init__(self, report) -> None:
        self.report = report

    def to_schema(self):
        return self.report

    def to_dict(self) -> dict:
        return report_to_builtins(self.report)


def _train(report, preset, on_event, cancel) -> None:
    tr, timings = report.training, report.timings
    on_event(Stage("train", detail=f"{preset.train.steps} steps of {preset.train.optimizer}"))
    for p in tr.rank_history:
        on_event(RankProbe(p.step, p.rank, p.sigma_max, p.sigma_min, p.tolerance))
    for s, loss in enumerate(tr.losses, start=1):
        cancel.check()
        on_event(TrainStep(s, tr.steps, loss, tr.seconds * s / max(len(tr.losses), 1)))
    on_event(Stage("train", done=True, seconds=timings.get("train", 0.0), detail=tr.status))


class replay_session:
    """replay_session(name)(preset, on_event, cancel): the stored run of `name`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, preset, on_event, cancel):
        report = load_report(REPORTS / f"{self.name}.json")
        timings = report.timings
        on_event(Stage("data"))
        on_event(Stage("data", done=True, seconds=timings.get("data", 0.0), detail=report.data.description))
        if report.plan is not None:
            on_event(PlanReady(report.plan))
        for note in report.notes:
            on_event(Note(note))
        _train(report, preset, on_event, cancel)
        for stage, seconds in timings.items():
            if stage not in ("data", "train", "total"):
                on_event(Stage(stage))
                on_event(StageProgress(stage, 1, 2, "steps", seconds / 2, eta=seconds / 2, eta_source="measured"))
                on_event(StageProgress(stage, 2, 2, "steps", seconds, eta=0.0, eta_source="measured"))
                on_event(Stage(stage, done=True, seconds=seconds))
        return StoredReport(report)
