"""The Sweep pane in a tiny app, driven with Pilot: Start runs the grid × seeds on the preset the app holds
and the table fills in run by run; a bad grid says why and starts nothing; Stop cancels. The fast tests use
a backend that answers each task in process with counts derived from it (no engine); the slow one runs the
real pool on deep-linear at steps 0 and checks the Singh rank."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Button, Input, Static

from basintui.config import load_preset
from basintui.sweep.journal import Journal
from basintui.tui.widgets.sweep import SweepPane


class StepBackend:
    """Each submitted task finishes when the test releases one (`gate`), with rank = its width."""

    def __init__(self, gate: threading.Semaphore | None = None):
        self.queue, self.gate = [], gate

    def capacity(self):
        return 1

    def submit(self, task):
        w = task.point["model.hidden"][0]
        self.queue.append((task, {"outcome": "ok", "rank": min(w, 4), "n_params": 4 * w + 1, "n_outputs": 4,
                                  "full_rank": 4, "g_deficient": w < 4, "kernel_dim": 4 * w + 1 - min(w, 4),
                                  "generic_dim": 4 * w - 3 if 4 * w + 1 >= 4 else None, "near_threshold": 0}))

    def wait(self, seconds):
        if not self.queue:
            return []
        if self.gate is not None and not self.gate.acquire(timeout=seconds):
            return []
        out, self.queue = self.queue[:1], self.queue[1:]
        return out

    def cancel(self):
        lost = [t for t, _ in self.queue]
        self.queue = []
        return [], lost


class Tiny(App):
    def __init__(self, preset, **options):
        super().__init__()
        self.preset = preset
        self.options = options

    def compose(self) -> ComposeResult:
        yield SweepPane(runner_options=self.options)


def pane(app) -> SweepPane:
    return app.query_one(SweepPane)


def status(app) -> str:
    return str(app.query_one("#sweep-status", Static).render())


def plot_text(app) -> str:
    return str(app.query_one("#sweep-plot", Static).render())


async def wait_until(pilot, cond, limit_s=60.0):
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def test_start_fills_the_table_run_by_run(tmp_path):
    asyncio.run(_test_start_fills_the_table_run_by_run(tmp_path))


async def _test_start_fills_the_table_run_by_run(tmp_path):
    gate = threading.Semaphore(0)
    app = Tiny(load_preset("xor-relu"), out_dir=str(tmp_path), backend_factory=lambda w: StepBackend(gate))
    async with app.run_test(size=(140, 40)) as pilot:
        app.query_one("#sweep-grid", Input).value = "model.hidden=[[2], [8]]"
        app.query_one("#sweep-seeds", Input).value = "2"
        await pilot.click("#sweep-start")
        await pilot.pause()
        assert pane(app).running and app.query_one("#sweep-stop", Button).disabled is False
        gate.release()
        await wait_until(pilot, lambda: "running 1/4" in status(app))
        assert "model.hidden=[2]" in plot_text(app) and "1/1 = 1.00" in plot_text(app)
        for _ in range(3):
            gate.release()
        await wait_until(pilot, lambda: status(app).startswith("done"))
        assert "done: 4 runs ok" in status(app) and str(tmp_path) in status(app)
        s = pane(app).summary
        assert [(p.runs, p.g_deficient.count) for p in s.points] == [(2, 2), (2, 0)]
    assert len(Journal(tmp_path).rows()) == 4 and (tmp_path / "sweep.json").exists()


def test_a_bad_grid_starts_nothing_and_says_why(tmp_path):
    asyncio.run(_test_a_bad_grid_starts_nothing_and_says_why(tmp_path))


async def _test_a_bad_grid_starts_nothing_and_says_why(tmp_path):
    app = Tiny(load_preset("xor-relu"), out_dir=str(tmp_path), backend_factory=lambda w: StepBackend())
    async with app.run_test(size=(140, 40)) as pilot:
        app.query_one("#sweep-grid", Input).value = "model.hidden=[[2], [-1]]"
        await pilot.click("#sweep-start")
        await pilot.pause()
        assert not pane(app).running
        assert "cannot start" in status(app) and "model.hidden=[-1]" in status(app)
    assert not (tmp_path / "runs.jsonl").exists()


def test_stop_cancels_the_runs_in_flight(tmp_path):
    asyncio.run(_test_stop_cancels_the_runs_in_flight(tmp_path))


async def _test_stop_cancels_the_runs_in_flight(tmp_path):
    app = Tiny(load_preset("xor-relu"), out_dir=str(tmp_path),
               backend_factory=lambda w: StepBackend(threading.Semaphore(0)))
    async with app.run_test(size=(140, 40)) as pilot:
        app.query_one("#sweep-grid", Input).value = "model.hidden=[[2]]"
        await pilot.click("#sweep-start")
        await pilot.pause()
        await pilot.click("#sweep-stop")
        await wait_until(pilot, lambda: status(app).startswith("stopped"))
    rows = Journal(tmp_path).rows()
    assert [r.status for r in rows] == ["cancelled"]


@pytest.mark.slow  # worker processes import torch
def test_the_pane_runs_a_real_sweep_on_the_pool(tmp_path):
    asyncio.run(_test_the_pane_runs_a_real_sweep_on_the_pool(tmp_path))


async def _test_the_pane_runs_a_real_sweep_on_the_pool(tmp_path):
    preset = load_preset("deep-linear", ["train.steps=0", 'data.targets="self"', "data.n=12",
                                         'analysis.hessian="off"'])
    app = Tiny(preset, out_dir=str(tmp_path), workers=1)
    async with app.run_test(size=(140, 40)) as pilot:
        app.query_one("#sweep-grid", Input).value = "model.hidden=[[6, 5], [2, 8]]"
        app.query_one("#sweep-seeds", Input).value = "1"
        await pilot.click("#sweep-start")
        await wait_until(pilot, lambda: status(app).startswith("done"), limit_s=240)
    rows = Journal(tmp_path).rows()
    assert sorted(r.rank for r in rows) == [10, 12]  # Singh: q(r + d − q) with r = 4, d = 3
