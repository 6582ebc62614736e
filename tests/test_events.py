"""One event type from the engine to the app: the schema events cross the process boundary as they
are (pickle, or msgpack), become one Textual message, keep their order, and progress coalesces."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_preset

from basintui.config import load_preset
from basintui.planner import plan_preset
from basintui.schema.events import (
    Failed,
    Finished,
    Note,
    Partial,
    PlanReady,
    RankProbe,
    Stage,
    TrainProgress,
    TrainStep,
    decode_event,
    encode_event,
)
from basintui.schema.report import load_report

FIXTURES = Path(__file__).parent / "fixtures" / "report1"


def a_report():
    return load_report(FIXTURES / "xor-relu.json")


def every_event():
    report = a_report()
    return [
        Stage("data"), Stage("data", True, 0.25, "64 inputs"), TrainStep(3, 10, 0.5, 0.01),
        TrainProgress(3, 10, 0.5, 0.01, (0, 1, 2, 3), (1.0, 0.9, 0.7, 0.5)), RankProbe(2, 3, 4.5, 0.125, 1e-12),
        Note("a plan"), Note("careful", "warn"), PlanReady(plan_preset(load_preset("xor-relu"), 1 << 33)),
        Partial("spectrum", report), Finished(report), Failed("input", "ValueError: no", "Traceback ..."),
    ]


def test_every_event_round_trips_through_pickle_and_msgpack_unchanged():
    """What goes on the queue comes off it the same (compared by encoding: a report's nan ≠ nan)."""
    events = every_event()
    assert {type(e).__name__ for e in events} == {"Stage", "TrainStep", "TrainProgress", "RankProbe", "Note",
                                                   "PlanReady", "Partial", "Finished", "Failed"}
    for e in events:
        wire = encode_event(e)
        for back in (pickle.loads(pickle.dumps(e)), decode_event(wire)):
            assert type(back) is type(e) and encode_event(back) == wire, type(e).__name__
    assert decode_event(encode_event(Stage("x"))) == Stage("x")  # no report: plain equality holds too


def test_events_are_built_positionally_in_todays_field_order():
    s, t, r, n = Stage("jacobian", True, 1.5, "d"), TrainStep(1, 2, 0.3, 0.4), RankProbe(5, 6, 7.0, 8.0, 9.0), Note("x")
    assert (s.name, s.done, s.seconds, s.detail) == ("jacobian", True, 1.5, "d")
    assert (t.step, t.total, t.loss, t.elapsed) == (1, 2, 0.3, 0.4)
    assert (r.step, r.rank, r.sigma_max, r.sigma_min, r.tolerance) == (5, 6, 7.0, 8.0, 9.0)
    assert n.level == "info" and Stage("a") == Stage("a", False, 0.0, "")


# --------------------------------------------------------------------------- the engine process's outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_outbox_puts_the_events_themselves_and_coalesces_training_steps(monkeypatch):
    from basintui.tui import bridge

    clock = Clock()
    monkeypatch.setattr(bridge.time, "monotonic", clock)
    out: list = []
    box = bridge._Outbox(SimpleNamespace(put=out.append))
    box.on_event(Stage("train", detail="1000 steps"))
    for step in range(1000):  # 1000 steps, 1 ms apart: 1 s of training
        clock.now += 0.001
        box.on_event(TrainStep(step, 1000, 1.0 / (step + 1), step * 0.001))
        if step == 500:
            box.on_event(RankProbe(step, 3, 2.0, 0.5, 1e-12))
    clock.now += 0.2
    box.on_event(Stage("train", True, 1.0, "done"))
    box.on_event(Finished(a_report()))  # the result goes out separately, once run() returned
    snapshots = [e for e in out if isinstance(e, TrainProgress)]
    others = [e for e in out if not isinstance(e, TrainProgress)]
    assert all(type(e).__module__ == "basintui.schema.events" for e in out), "no tuples, only schema events"
    assert others == [Stage("train", detail="1000 steps"), RankProbe(500, 3, 2.0, 0.5, 1e-12),
                      Stage("train", True, 1.0, "done")]
    assert 2 <= len(snapshots) <= 1 + 1.0 / bridge.PROGRESS_INTERVAL_S + 1  # at most 10 a second
    last = snapshots[-1]
    assert last.steps[-1] == last.step and len(last.steps) == len(last.losses) and last.steps[0] == 0
    probe_at = out.index(others[1])
    assert all(s.step <= 500 for s in out[:probe_at] if isinstance(s, TrainProgress))  # order kept


def test_a_newer_progress_snapshot_replaces_a_queued_one_of_the_same_run_only():
    from basintui.tui.messages import EngineEvent

    p = TrainProgress(1, 10, 0.5, 0.1)
    assert EngineEvent(1, p).can_replace(EngineEvent(1, TrainProgress(0, 10, 0.6, 0.0)))
    assert not EngineEvent(2, p).can_replace(EngineEvent(1, p))  # another run's
    assert not EngineEvent(1, p).can_replace(EngineEvent(1, Stage("train")))
    assert not EngineEvent(1, Stage("train", True)).can_replace(EngineEvent(1, Stage("train")))
    assert not EngineEvent(1, Note("x")).can_replace(EngineEvent(1, p))


# --------------------------------------------------------------------------- the bridge, end to end


class ScriptedReport:
    """Stands in for the engine's Report: it pickles (the export handle) and gives its typed form."""

    def to_schema(self):
        return a_report()


SCRIPT = [Stage("data"), Note("spectrum route: explicit"), Stage("data", True, 0.1, "xor"),
          Stage("train", detail="40 steps of adam"), *[TrainStep(i, 40, 1.0 / (i + 1), i * 1e-3) for i in range(40)],
          RankProbe(20, 3, 2.0, 0.5, 1e-12), Stage("train", True, 0.04, "converged"), Stage("jacobian"),
          Stage("jacobian", True, 0.01)]


def scripted_session(preset, on_event, cancel):
    """A session (module level: it travels to the engine process by name) that emits SCRIPT."""
    if preset.name == "fails":
        from basintui.engine.errors import InputError

        on_event(Stage("data"))
        raise InputError("data.n", "no inputs")
    on_event(PlanReady(plan_preset(preset, 1 << 33)))
    for e in SCRIPT:
        on_event(e)
    on_event(Partial("spectrum", a_report()))
    on_event(Finished(a_report()))
    return ScriptedReport()


class HeadlessApp:
    """What the bridge needs of an App: post_message (thread-safe) and a thread worker."""

    def __init__(self) -> None:
        self.messages: list = []
        self.threads: list[threading.Thread] = []

    def post_message(self, m) -> None:
        self.messages.append(m)

    def run_worker(self, fn, **_kw):
        t = threading.Thread(target=fn, daemon=True)
        self.threads.append(t)
        t.start()


def run_bridge(monkeypatch, preset):
    from basintui.tui import bridge as bridge_mod

    monkeypatch.setattr(bridge_mod, "get_current_worker", lambda: SimpleNamespace(is_cancelled=False))
    b, app = bridge_mod.Bridge(scripted_session), HeadlessApp()
    run_id = b.start(app, preset)
    for t in app.threads:
        t.join(60)
    assert b.shutdown(60.0)  # returns once every engine process ended; 60 s only guards against a hang
    return run_id, app.messages


def test_the_bridge_posts_one_message_type_for_engine_events_in_order(monkeypatch):
    from basintui.tui.bridge import ReportHandle
    from basintui.tui.messages import EngineEvent, RunStarted

    run_id, messages = run_bridge(monkeypatch, load_preset("xor-relu"))
    assert type(messages[0]) is RunStarted
    assert {type(m) for m in messages[1:]} == {EngineEvent} and all(m.run_id == run_id for m in messages)
    events = [m.event for m in messages[1:]]
    assert isinstance(events[0], PlanReady) and events[0].plan.n_params == 17
    ordered = [e for e in events if isinstance(e, (Stage, Note, RankProbe))]
    assert ordered == [e for e in SCRIPT if not isinstance(e, TrainStep)]  # stage start, its notes, its end
    assert any(isinstance(e, TrainProgress) for e in events)
    assert [type(e) for e in events[-2:]] == [Partial, Finished], "Finished once, last"
    assert sum(isinstance(e, Finished) for e in events) == 1
    assert events[-1].report.G.rank == a_report().G.rank
    assert isinstance(messages[-1].handle, ReportHandle) and isinstance(messages[-1].handle.load(), ScriptedReport)


def test_a_failing_run_ends_with_one_failed_event(monkeypatch):
    from basintui.tui.messages import EngineEvent

    _, messages = run_bridge(monkeypatch, make_preset(name="fails"))
    events = [m.event for m in messages if isinstance(m, EngineEvent)]
    assert events[0] == Stage("data") and isinstance(events[-1], Failed) and len(events) == 2
    assert events[-1].kind == "input" and "no inputs" in events[-1].message and "Traceback" in events[-1].details


# --------------------------------------------------------------------------- the session's order


def test_the_session_emits_plan_ready_before_training_and_finished_last():
    import torch

    from basintui.engine.session.run import run

    preset = make_preset(data={"n": 12, "dim": 3}, model={"hidden": [4]}, train={"steps": 20},
                         analysis={"hessian": "dense", "layers": False, "levelset": False})
    events: list = []
    rng = torch.random.get_rng_state()
    tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # the caller's choice, restored after the run
    report = run(preset, events.append)
    assert torch.equal(rng, torch.random.get_rng_state()), "the run's seeding leaked into the caller's RNG"
    assert torch.backends.cuda.matmul.allow_tf32 is tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    kinds = [type(e).__name__ for e in events]
    plan_at, train_at = kinds.index("PlanReady"), events.index(Stage("train", detail="20 steps of adam"))
    assert plan_at < train_at and kinds.count("PlanReady") == 1
    assert isinstance(events[-1], Finished) and kinds.count("Finished") == 1
    assert encode_event(events[-1]) == encode_event(Finished(report.to_schema()))  # the typed report, all of it
    assert events[-1].report.plan == events[plan_at].plan  # the plan is part of the report
    assert events[plan_at].plan.n_params == report.model.n_params and events[plan_at].plan.hessian_mode == "dense"
    starts = [e.name for e in events if isinstance(e, Stage) and not e.done]
    ends = [e.name for e in events if isinstance(e, Stage) and e.done]
    assert starts == ends and starts[:2] == ["data", "train"] and "hessian" in starts
    partial = next(e for e in events if isinstance(e, Partial))
    trained = events.index(next(e for e in events if isinstance(e, Stage) and e.done and e.name == "train"))
    assert partial.stage == "spectrum" and events.index(partial) > trained


@pytest.mark.parametrize("name", ["xor-relu"])
def test_a_presets_numbers_do_not_depend_on_the_callers_rng(name):
    """Seeded from the preset inside the run: the same weights whatever the caller's RNG state."""
    import torch

    from basintui.engine.session.run import run

    raw = load_preset(name).to_dict()
    raw["analysis"].update(hessian="off", layers=False, levelset=False)
    raw["train"]["steps"] = 100  # the seeded init and training, not the whole run
    preset = make_preset(**raw)
    torch.manual_seed(1)
    a = run(preset)
    torch.manual_seed(2)
    torch.rand(7)
    b = run(preset)
    assert (a.theta == b.theta).all() and a.training.final_loss == b.training.final_loss
    assert a.G.rank == b.G.rank
