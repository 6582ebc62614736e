"""The run clock (render/eta.py) and the summary strip (render/strip.py), with a fake clock and real reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from basintui.render.eta import Remaining, RunClock, clock, progress_text
from basintui.render.strip import StripState, strip_cells, strip_text
from basintui.schema import load_report
from basintui.schema.events import Stage, StageProgress, TrainProgress
from basintui.schema.plan import Plan

REPORTS = Path(__file__).resolve().parent / "fixtures" / "reports"


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def started(stages=("data", "train", "spectrum", "hessian"), plan_seconds=None):
    t = FakeTime()
    c = RunClock(now=t)
    c.start(stages)
    if plan_seconds is not None:
        c.plan(Plan(stage_seconds=plan_seconds))
    return c, t


def test_remaining_is_the_running_stages_estimate_plus_the_planned_stages_to_come():
    c, t = started(plan_seconds={"data": 1.0, "train": 10.0, "spectrum": 4.0, "hessian": 30.0})
    c.stage(Stage("data"))
    assert c.remaining().seconds == pytest.approx(1.0 + 10.0 + 4.0 + 30.0)
    assert c.remaining().complete
    t.t += 0.5
    assert c.remaining().seconds == pytest.approx(0.5 + 44.0)  # the plan's estimate counts down
    c.stage(Stage("data", done=True, seconds=0.5))
    c.stage(Stage("train"))
    t.t += 2.0
    c.train(TrainProgress(step=20, total=100, loss=1.0, elapsed=2.0))  # 0.1 s a step measured, 80 to go
    assert c.remaining().seconds == pytest.approx(8.0 + 34.0)
    c.stage(Stage("train", done=True, seconds=10.0))
    c.stage(Stage("hessian"))  # spectrum skipped on the way: not waited for
    c.progress(StageProgress("hessian", 10, 40, "columns", 3.0, eta=9.0, eta_source="measured"))
    t.t += 4.0
    assert c.remaining().seconds == pytest.approx(5.0)
    assert c.elapsed() == pytest.approx(6.5)


def test_a_stage_without_an_estimate_makes_the_total_a_lower_bound():
    c, _ = started(plan_seconds={"spectrum": 4.0})
    c.stage(Stage("data"))
    r = c.remaining()
    assert (r.seconds, r.complete) == (pytest.approx(4.0), False)
    assert r.words() == "≥ 4.0 s"
    c2, _ = started(plan_seconds={})
    c2.stage(Stage("data"))
    assert c2.remaining().seconds is None and c2.remaining().words() == "unknown"


def test_a_late_progress_event_of_another_stage_is_ignored_and_eta_never_goes_negative():
    c, t = started(plan_seconds={"hessian": 10.0})
    c.stage(Stage("hessian"))
    c.progress(StageProgress("spectrum", 1, 2, eta=100.0))
    assert c.remaining().seconds == pytest.approx(10.0)
    t.t += 50.0  # overran the estimate
    assert c.remaining().seconds == 0.0


def test_a_stopped_clock_keeps_its_elapsed_time_and_has_nothing_left():
    c, t = started()
    t.t += 3.0
    c.stop()
    t.t += 10.0
    assert c.elapsed() == pytest.approx(3.0)
    assert c.remaining().seconds == 0.0


@pytest.mark.parametrize("seconds, words", [(0.04, "0.0 s"), (9.96, "10.0 s"), (42.4, "42 s"), (61, "1:01"),
                                            (3725, "1:02:05"), (-3, "0.0 s")])
def test_clock_words(seconds, words):
    assert clock(seconds) == words


def test_progress_text_says_fraction_units_the_estimates_source_and_the_runs_time_left():
    e = StageProgress("hessian", 34, 120, "columns", 12.0, eta=30.0, eta_source="measured")
    assert progress_text("hessian", e).plain == "▶ hessian 28% (34/120 columns)  elapsed 12 s  about 30 s left (measured)"
    e = StageProgress("hessian", 0, 120, "columns", 0.2, eta=45.0, eta_source="plan")
    run = Remaining(50.0, True)
    assert progress_text("hessian", e, run).plain.endswith("about 45 s left (planned)  ·  run: about 50 s left")
    assert progress_text("hessian", e, Remaining(50.0, False)).plain.endswith("·  run: ≥ 50 s left")
    assert progress_text("hessian", e, Remaining(None, False)).plain.endswith("(planned)")
    assert progress_text("layers", StageProgress("layers", 3, 3, "blocks", 1.5)).plain == \
        "▶ layers 100% (3/3 blocks)  elapsed 1.5 s"
    assert progress_text("layers", StageProgress("hessian", 3, 3)).plain == "▶ layers"  # another stage's: not shown
    assert progress_text("layers", StageProgress("layers", 0.5, 2.0)).plain.startswith("▶ layers 25% (0.5/2)")
    assert progress_text("hessian", StageProgress("hessian", 37, 100, "%", 2.0)).plain == "▶ hessian 37%  elapsed 2.0 s"


def _cells(state: StripState) -> dict[str, str]:
    return {label or value.plain.split(" ")[0]: value.plain for label, value in strip_cells(state)}


@pytest.mark.parametrize("name, sizes", [("xor-relu", (17, 4, 3)), ("critique", (2, 4, 0)), ("deep-linear", None)])
def test_strip_says_what_the_report_says(name, sizes):
    r = load_report(REPORTS / f"{name}.json")
    cells = _cells(StripState(name, r.training.status, r.plan, r, 12.0, None))
    g = r.G
    assert cells["rank(G)"] == f"rank(G) {'=' if g.rank_exact is not False else '≥'} {g.rank}"
    assert cells["N"] == f"{g.n_params:,}" and cells["k·d"] == f"{g.n_outputs:,}"
    rel = "=" if g.rank_exact is not False else "≤"
    assert cells["dim ker G"] == f"{rel} {g.kernel_dim:,}" and g.kernel_dim == g.n_params - g.rank
    assert cells["time"] == "12 s"
    assert cells["Claim 3"] == r.hessian.claim3.verdict.replace("_", " ")
    assert cells["run"] == r.training.status
    if sizes is not None:  # the exact answers of these two cases (DESIGN §2)
        assert (g.n_params, g.n_outputs, g.rank) == sizes


def test_strip_before_g_uses_the_plan_and_says_pending_while_running():
    plan = Plan(n_params=1234, kd=40)
    cells = _cells(StripState("digits", "running", plan, None, 3.0, None, stage="train"))
    assert cells["N"] == "1,234" and cells["k·d"] == "40"
    assert cells["rank(G)"] == "…" and cells["Claim 3"] == "…"
    assert cells["run"] == "running (train)"


def test_strip_of_a_cancelled_run_says_not_computed_and_a_hessian_turned_off_says_off():
    r = load_report(REPORTS / "cancelled.json")
    cells = _cells(StripState("x", "cancelled", r.plan, r, 1.0, None))
    assert cells["rank(G)"] == "not computed" and cells["Claim 3"] == "not computed"
    r = load_report(REPORTS / "collapse.json")
    assert r.hessian is None
    assert _cells(StripState("collapse", "converged", r.plan, r))["Claim 3"].startswith("off")
    text = strip_text(StripState("collapse", "converged", r.plan, r)).plain
    assert f"rank(G) = {r.G.rank}" in text and "│" in text
