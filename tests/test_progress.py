"""Stage progress: the engine's meter (engine/progress.py), its use by every stage of a run, the planner's
per-stage estimates, the bridge's coalescing and the CLI's plain lines (render/progress.py)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console

from basintui.config import load_preset
from basintui.schema.events import Note, Stage, StageProgress, TrainStep


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _meter(plan=None, **kw):
    from basintui.engine.progress import Meter

    events: list = []
    clock = FakeClock()
    return Meter(events.append, plan or {}, clock=clock, **kw), events, clock


# --------------------------------------------------------------------------- the meter


def test_eta_comes_from_the_plan_until_work_is_measured_then_from_the_rate():
    m, events, clock = _meter({"hessian": 10.0})
    m.begin("hessian")
    m.expect(100, "columns")
    clock.t = 2.0
    first = m.snapshot()
    assert (first.eta_source, first.eta, first.elapsed) == ("plan", 8.0, 2.0)
    m.update(0, upto=10)  # the loop starts at t = 2
    clock.t = 4.0
    m.update(10, upto=20)  # 10 columns in 2 s: 5 a second
    s = m.snapshot()
    assert s.eta_source == "measured"
    assert s.done == 10 and s.eta == pytest.approx((100 - 10) / 5)
    assert events[-1].eta_source == "measured"


def test_without_a_plan_there_is_no_estimate_until_a_rate_is_measured():
    m, _, clock = _meter()
    m.begin("layers", 4, "steps")
    clock.t = 3.0
    s = m.snapshot()
    assert (s.eta, s.eta_source) == (None, "none")


def test_a_plan_that_ran_out_gives_no_estimate_rather_than_zero():
    m, _, clock = _meter({"spectrum": 2.0})
    m.begin("spectrum", 1, "SVDs")
    clock.t = 1.0
    assert m.snapshot().eta == 1.0
    clock.t = 5.0
    assert (m.snapshot().eta, m.snapshot().eta_source) == (None, "none")


def test_the_heartbeat_interpolates_toward_the_running_call_but_never_reaches_it():
    from basintui.engine.progress import REACH

    m, events, clock = _meter({"spectrum": 10.0})
    m.begin("spectrum", 100, "rows")
    m.update(0, upto=100)  # one long call for the whole stage: the plan's rate, 10 rows a second
    clock.t = 5.0
    m.tick()
    assert events[-1].done == pytest.approx(50.0)
    clock.t = 60.0
    m.tick()
    assert events[-1].done == pytest.approx(REACH * 100) and events[-1].done < events[-1].total
    m.end()
    assert events[-1].done == events[-1].total == 100 and events[-1].eta == 0.0


def test_done_never_goes_down_and_snapshots_are_rate_limited():
    m, events, clock = _meter(min_interval=0.25)
    m.begin("train", 10, "steps")
    n0 = len(events)
    for step in range(10):
        clock.t += 0.1
        m.update(step, upto=step + 1)
    sent = events[n0:]
    assert len(sent) == 3  # 1 s of updates every 0.1 s, at most one snapshot per 0.25 s (at 0.3, 0.6, 0.9)
    m.update(2)  # a late, smaller report
    dones = [e.done for e in events]
    assert dones == sorted(dones)
    assert m.snapshot().done == 9


def test_tick_emits_once_per_heartbeat_while_nothing_reports():
    m, events, clock = _meter(heartbeat=0.5)
    m.begin("hessian", 10, "steps")
    m.update(0, upto=1)
    n0 = len(events)
    for _ in range(40):  # 10 s of ticks every 0.25 s, no update from the work
        clock.t += 0.25
        m.tick()
    assert len(events) - n0 == 20  # one per 0.5 s: at least one a second
    assert all(e.done < 1 for e in events[n0:])


def test_spans_map_a_loops_own_units_onto_the_stage():
    m, events, clock = _meter(min_interval=0.0)
    m.begin("hessian", 12, "steps")
    with m.span(0, 1):
        m.expect(4, "whatever")  # the span's own units: not the stage's
        m.update(2)
        assert events[-1].done == pytest.approx(0.5) and events[-1].unit == "steps"
    assert events[-1].done == 1  # a span that ended is done
    with m.span(1, 11):
        m.expect(100, "columns")
        m.update(50)
        assert events[-1].done == pytest.approx(6.0)
        with m.span(50, 100):  # nested: the second half of the columns
            m.expect(2)
            m.update(1)
        assert events[-2].done == pytest.approx(8.5)  # 1 of 2 → column 75 → step 8.5
    assert m.snapshot().done == pytest.approx(11.0)
    with m.step():  # the next unit after those done: 11 → 12 (still short of the total until end)
        pass
    assert m.snapshot().done == 12  # every unit done: the total, before end() too
    m.end()
    assert events[-1].done == 12


def test_muted_loops_report_nothing():
    m, events, _ = _meter(min_interval=0.0)
    m.begin("train", 10, "steps")
    n0 = len(events)
    with m.muted():
        m.expect(999, "inputs")
        m.update(500)
    assert len(events) == n0 and m.snapshot().total == 10 and m.snapshot().done == 0


def test_a_token_without_a_meter_gets_a_silent_one():
    from basintui.engine import progress
    from basintui.engine.cancel import CancelToken

    t = CancelToken()
    assert progress.of(t) is progress.SILENT and progress.of(None) is progress.SILENT
    progress.of(t).update(3)  # no stage, no error
    assert progress.SILENT.snapshot() is None


def test_the_heartbeat_reports_during_one_long_call_that_cannot_report():
    """A real helper thread and a real blocking call (a sleep standing in for LAPACK): snapshots arrive
    while it runs. How many depends on the scheduler; at least two in 0.6 s with a 0.1 s heartbeat."""
    from basintui.engine.cancel import CancelToken, run_cancellable
    from basintui.engine.progress import Meter

    events: list = []
    lock = threading.Lock()

    def emit(e):
        with lock:
            events.append((time.monotonic(), e))

    m = Meter(emit, {"spectrum": 0.6}, heartbeat=0.1)
    with m.running():
        m.begin("spectrum", 1, "SVDs")
        m.update(0, upto=1)
        t0 = time.monotonic()
        run_cancellable(lambda: time.sleep(0.6), CancelToken())
        t1 = time.monotonic()
        m.end()
    during = [e for t, e in events if t0 < t < t1]
    assert len(during) >= 2
    assert all(0 < e.done < 1 for e in during[1:])


# --------------------------------------------------------------------------- real runs


def _by_stage(events):
    """StageProgress events per stage, checked to lie between the stage's start and end."""
    running, seen = None, {}
    for e in events:
        if isinstance(e, Stage):
            running = None if e.done else e.name
            if not e.done:
                seen[e.name] = []
        elif isinstance(e, StageProgress):
            assert e.name == running, f"{e.name} progress outside its stage ({running} running)"
            seen[e.name].append(e)
    return seen


@pytest.mark.parametrize("name", ["xor-relu", "critique"])
def test_every_stage_of_a_run_reports_progress_ending_at_its_total(name):
    from basintui.engine.cancel import CancelToken
    from basintui.engine.session.run import run

    events: list = []
    token = CancelToken()
    run(load_preset(name), on_event=events.append, cancel=token)
    seen = _by_stage(events)
    stages = [e.name for e in events if isinstance(e, Stage) and e.done]
    assert set(seen) == set(stages) and {"data", "train", "jacobian", "spectrum", "hessian"} <= set(stages)
    if name == "critique":
        assert "levelset" in seen
    for stage, evs in seen.items():
        assert evs, stage
        assert all(0 <= e.done <= e.total for e in evs), stage
        dones = [e.done for e in evs]
        assert dones == sorted(dones), stage
        assert evs[-1].done == evs[-1].total and evs[-1].eta == 0.0, stage
        assert evs[-1].unit, stage
    assert token.meter is None  # the run took its meter off the token


def test_the_dense_hessian_reports_every_column():
    import torch

    from basintui.engine.analyses.curvature import dense_hessian
    from basintui.engine.cancel import CancelToken
    from basintui.engine.progress import Meter

    events: list = []
    token = CancelToken()
    token.meter = Meter(events.append, min_interval=0.0)
    token.meter.begin("hessian")
    theta = torch.randn(7, dtype=torch.float64)
    H = dense_hessian(lambda t: (t**4).sum(), theta, token, chunk=1)
    assert torch.allclose(H, torch.diag(12 * theta**2))
    cols = [e for e in events if e.unit == "columns"]
    assert [e.done for e in cols] == list(range(7)) and all(e.total == 7 for e in cols)


@pytest.mark.slow
def test_the_digits_hessian_stage_reports_at_least_once_a_second():
    """The stage that showed 0/1 for its whole run: its snapshots, on the engine's own stage clock."""
    from basintui.engine.session.run import run

    events: list = []
    run(load_preset("digits", ["analysis.layers=false"]), on_event=events.append)
    h = _by_stage(events)["hessian"]
    assert h[-1].unit == "%" and h[-1].total == 100  # G·Q^½'s SVD, N columns, two eigensolves, weighed
    assert sum(0 < e.done < e.total for e in h) >= 2  # snapshots inside the stage, not just 0 and the end


# --------------------------------------------------------------------------- the planner


def test_the_hessian_phases_share_the_stage_in_order_and_in_full():
    from types import SimpleNamespace

    import torch

    from basintui.engine.analyses.hessian import _progress_parts

    ctx = SimpleNamespace(x=torch.zeros(200, 64), out_dim=10, loss="ce", layout=SimpleNamespace(n_params=2410))
    for mode, names in (("dense", ["ggn", "columns", "eig_H", "eig_residual"]),
                        ("lanczos", ["ggn", "extremes", "residual", "density"])):
        parts = _progress_parts(ctx, mode, 256)
        assert list(parts) == names
        bounds = [b for lo_hi in parts.values() for b in lo_hi]
        assert bounds[0] == 0 and bounds[-1] == pytest.approx(100) and bounds == sorted(bounds)
        assert all(hi - lo >= 0.9 for lo, hi in parts.values())  # at least 1 % of the costs: each moves the bar
    mse = _progress_parts(SimpleNamespace(**{**vars(ctx), "loss": "mse"}), "dense", 256)
    assert mse["ggn"] == (0.0, pytest.approx(100 * 0.01 / 1.01))  # mse reuses the spectrum: only the 1 % floor


def test_a_gram_route_shares_its_stage_in_order_and_in_full():
    from basintui.engine.numerics.spectrum import gram_parts

    for shape in ((6531, 64), (10059, 4096), (1, 1)):
        parts = gram_parts(shape)
        assert list(parts) == ["gram", "eig", "ritz", "exact"]
        bounds = [b for lo_hi in parts.values() for b in lo_hi]
        assert bounds[0] == 0 and bounds[-1] == pytest.approx(100) and bounds == sorted(bounds)
    wide = gram_parts((10059, 4096))  # a 4096² Gram's eigenvalues weigh more than a 64² one's
    assert wide["eig"][1] - wide["eig"][0] > 10 > gram_parts((6531, 64))["eig"][1] - gram_parts((6531, 64))["eig"][0]


def test_the_plan_estimates_stage_seconds_where_a_rate_was_measured():
    from basintui.planner import plan, sizes_from_preset
    from basintui.schema.plan import decode_plan

    preset = load_preset("digits")
    sizes = sizes_from_preset(preset)
    assert plan(preset, sizes, 8 << 30).stage_seconds == {}
    fast, slow = plan(preset, sizes, 8 << 30, gflops=100.0), plan(preset, sizes, 8 << 30, gflops=10.0)
    assert {"train", "jacobian", "spectrum", "hessian", "layers"} <= set(fast.stage_seconds)
    for stage in ("jacobian", "spectrum", "hessian"):
        assert 0 < fast.stage_seconds[stage] < slow.stage_seconds[stage]
    assert decode_plan({"known": False}).stage_seconds == {}  # reports from before the field


# --------------------------------------------------------------------------- the app's bridge


def test_stage_progress_coalesces_per_run_and_stage_only():
    from basintui.tui.messages import EngineEvent

    a, b = StageProgress("hessian", 1, 10), StageProgress("hessian", 2, 10)
    assert EngineEvent(1, b).can_replace(EngineEvent(1, a))
    assert not EngineEvent(1, b).can_replace(EngineEvent(2, a))  # another run's
    assert not EngineEvent(1, b).can_replace(EngineEvent(1, StageProgress("layers", 1, 3)))
    assert not EngineEvent(1, b).can_replace(EngineEvent(1, Stage("hessian")))
    assert not EngineEvent(1, Stage("hessian", True)).can_replace(EngineEvent(1, b))


def test_the_outbox_passes_stage_progress_without_dropping_a_pending_training_snapshot():
    from basintui.schema.events import TrainProgress
    from basintui.tui.bridge import _Outbox

    class Out(list):
        put = list.append

    out = Out()
    box = _Outbox(out)
    box.on_event(TrainStep(1, 10, 0.5, 0.0))  # posted (the first interval is up)
    box.last_post = time.monotonic() + 3600  # the next interval is not up, whatever the machine's speed
    box.on_event(TrainStep(2, 10, 0.4, 0.0))  # pending
    box.on_event(StageProgress("train", 2, 10))
    assert box.pending is not None and box.pending.step == 2  # a stage snapshot leaves it pending
    box.on_event(Note("x"))
    assert [type(e) for e in out] == [TrainProgress, StageProgress, Note]


# --------------------------------------------------------------------------- the CLI's lines


def _plain(lines: bool = False):
    from basintui.render.progress import RunProgress

    err = io.StringIO()
    return RunProgress(Console(file=io.StringIO(), force_terminal=False), lines=lines, err=err), err


def test_plain_lines_say_when_a_stage_ends_and_how_a_long_one_is_going():
    rp, err = _plain()
    with rp:
        rp.on_event(Stage("hessian"))
        rp.on_event(StageProgress("hessian", 10, 100, "steps", elapsed=4.0, eta=36.0, eta_source="measured"))
        rp.on_event(StageProgress("hessian", 30, 100, "steps", elapsed=12.0, eta=28.0, eta_source="measured"))
        rp.on_event(StageProgress("hessian", 40, 100, "steps", elapsed=16.0, eta=24.0, eta_source="measured"))
        rp.on_event(StageProgress("hessian", 60, 100, "steps", elapsed=22.5, eta=None, eta_source="none"))
        rp.on_event(StageProgress("hessian", 70.4, 100, "%", elapsed=33.0, eta=10.0, eta_source="measured"))
        rp.on_event(Stage("hessian", done=True, seconds=41.25))
        rp.on_event(Stage("layers"))
        rp.on_event(StageProgress("layers", 1, 2, "steps", elapsed=0.3, eta=90.0, eta_source="plan"))
        rp.on_event(Stage("layers", done=True, seconds=0.5))
    assert err.getvalue().splitlines() == [
        "basintui: stage hessian 30/100 steps (30%), about 28 s left",
        "basintui: stage hessian 60/100 steps (60%)",
        "basintui: stage hessian 70%, about 10 s left",
        "basintui: stage hessian done (41.25 s)",
        "basintui: stage layers done (0.50 s)",
    ]


def test_progress_lines_mode_also_says_when_each_stage_starts():
    rp, err = _plain(lines=True)
    with rp:
        rp.on_event(Stage("spectrum"))
        rp.on_event(StageProgress("spectrum", 0.5, 1, "SVDs", elapsed=11.0, eta=5.0, eta_source="plan"))
        rp.on_event(Stage("spectrum", done=True, seconds=12.0))
    assert err.getvalue().splitlines() == [
        "basintui: stage spectrum started",
        "basintui: stage spectrum 0.5/1 SVDs (50%), about 5 s left (planned)",
        "basintui: stage spectrum done (12.00 s)",
    ]
