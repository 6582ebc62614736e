"""Pilot tests of the app on real (small) engine runs, and the layering rule of the tui package."""

from __future__ import annotations

import ast
import asyncio
import io
import time
from pathlib import Path

import pytest
from conftest import ROOT, engine_plan, make_preset
from rich.console import Console
from textual.widgets import Input, Static

from basintui.tui.app import KEYS, BasinApp
from basintui.tui.bridge import export_paths
from basintui.tui.screens.error import ErrorScreen
from basintui.tui.screens.export import ExportScreen
from basintui.tui.screens.help import HelpScreen, keys_table
from basintui.tui.widgets.setup import FieldRow
from basintui.tui.widgets.training import TrainingPane

TUI = ROOT / "src" / "basintui" / "tui"


def tiny(**train):
    return make_preset(data={"n": 16, "dim": 4}, model={"hidden": [8]},
                       train={"steps": 200, "lr": 0.01, **train}, analysis={"hessian": "dense"})


async def wait_for(pilot, cond, timeout: float = 60.0, what: str = "") -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")
        await pilot.pause(0.05)
    return time.monotonic() - t0


def text_of(app, selector: str) -> str:
    return str(app.screen_stack[0].query_one(selector, Static).render())


@pytest.mark.slow
def test_run_shows_the_reports_rank_and_exports(tmp_path):
    async def main():
        app = BasinApp(tiny())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert not isinstance(app.focused, Input), "the app must open with focus on a pane, not a field"
            await pilot.press("r")
            wall = await wait_for(pilot, lambda: app.report is not None, what="the run's report")
            await app.workers.wait_for_complete()
            g = app.report.G
            head = text_of(app, "#spec-head")
            assert f"rank(G) = {g.rank}" in head
            assert f"N = {g.n_params:,}" in head and f"kd = {g.n_outputs:,}" in head
            # the training pane saw progress snapshots, at most 10 a second
            assert app.bridge.progress_posted >= 1
            assert app.bridge.progress_posted <= 10 * wall + 1
            # layers pane in ranking order, from the report
            rows = app.report.layers
            table = app.screen_stack[0].query_one("#layers-table")
            assert table.row_count == len(rows)
            first = table.get_row_at(0)
            best = min(rows, key=lambda r: r.position)
            assert str(first[1]) == best.name
            # export: e, confirm the path, files written, a toast says where
            assert app.report.error is None, app.report.error
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen.query(Input), 5,
                           f"the export dialog (screen {app.screen}, focus {app.focused})")
            app.screen.query_one(Input).value = str(tmp_path / "out.json")
            await pilot.press("enter")
            json_path, npz_path = export_paths(str(tmp_path / "out.json"))
            await wait_for(pilot, lambda: Path(npz_path).exists() and Path(json_path).exists(), 30, "the export")
            svg = Path(json_path).with_suffix(".svg")  # the screen, beside the report
            assert svg.read_text().lstrip().startswith("<svg")
            await wait_for(pilot, lambda: any("Wrote" in str(n.message) for n in app._notifications), 5,
                           "the export toast")
            import json

            assert json.loads(Path(json_path).read_text())["G"]["rank"] == g.rank

    asyncio.run(main())


@pytest.mark.slow
def test_cancel_mid_training_stops_the_engine_and_drops_its_messages():
    """x during a run of 10 million steps ends the engine process; the wait's timeout only guards
    against a hang (no duration is asserted: a loaded machine may take seconds)."""
    async def main():
        app = BasinApp(tiny(steps=10_000_000))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("r")
            pane = app.screen_stack[0].query_one(TrainingPane)
            await wait_for(pilot, lambda: pane.step > 0, what="training progress")
            engine = app.bridge.running_process
            assert engine is not None and engine.process.is_alive()
            await pilot.press("x")
            assert not app.bridge.busy
            await wait_for(pilot, lambda: not engine.process.is_alive(), 60, "the engine to stop")
            step = pane.step
            await pilot.pause(0.5)
            assert pane.state == "cancelled" and pane.step == step, "a cancelled run's messages must be dropped"
            assert app.report is None

    asyncio.run(main())


@pytest.mark.slow
def test_quit_mid_run_exits_promptly():
    """q during a run of 10 million steps exits the app (code 0) without waiting for the run, and the
    busy engine process ends with it. The timeouts only guard against a hang; no duration is asserted."""
    async def main():
        app = BasinApp(tiny(steps=10_000_000))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("r")
            pane = app.screen_stack[0].query_one(TrainingPane)
            await wait_for(pilot, lambda: pane.step > 0, what="training progress")
            engines = [p for p in app.bridge._procs if p.process.is_alive()]
            assert engines, "no engine process runs the training"
            await pilot.press("q")
            assert app.return_code == 0
        return app, engines

    app, engines = asyncio.run(asyncio.wait_for(main(), timeout=120))
    assert not app.is_running
    for proc in {*engines, *app.bridge._procs}:  # the busy one and any spare (60 s: only a hang guard)
        assert proc.wait(60), f"the engine process {proc.process.pid} outlived the app"


def test_bad_field_shows_its_message_and_starts_nothing():
    async def main():
        app = BasinApp(tiny())
        async with app.run_test(size=(120, 40)) as pilot:
            row = app.screen_stack[0].query_one("#f-train-lr", FieldRow)
            editor = row.editor
            assert isinstance(editor, Input)
            editor.focus()
            editor.value = "-1"
            await pilot.pause()
            msg = str(row.query_one(".msg", Static).render())
            assert "-1.0" in msg and "a number > 0" in msg
            assert row.has_class("invalid")
            await pilot.press("ctrl+r")  # from inside the field
            await pilot.pause()
            assert app.bridge.run_id == 0 and not app.bridge.busy
            assert "train.lr" in text_of(app, "#setup-status")
            # text that is not a value at all
            editor.value = "fast"
            await pilot.pause()
            assert "is not a value" in str(row.query_one(".msg", Static).render())
            editor.value = "0.02"
            await pilot.pause()
            assert not row.has_class("invalid")

    asyncio.run(main())


@pytest.mark.slow
def test_engine_failure_opens_the_modal_and_the_app_lives_on(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\nx,y\n")
    preset = make_preset(data={"kind": "file", "path": str(bad)}, train={"steps": 5})

    async def main():
        app = BasinApp(preset)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("r")
            # push_screen switches app.screen at once and composes the modal on a later tick
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen) and app.screen.query("#error-message"),
                           what="the error modal")
            screen = app.screen
            assert str(bad) in str(screen.query_one("#error-message", Static).render()) or screen.message
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, ErrorScreen) and app.is_running
            assert not app.bridge.busy

    asyncio.run(main())


def test_help_lists_every_key_from_the_binding_table():
    async def main():
        app = BasinApp(tiny())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            assert app.screen.keys is KEYS
            assert [b.key for b in BasinApp.BINDINGS] == [k.key for k in KEYS]
            table = keys_table(app.screen.keys)
            assert list(table.columns[0]._cells) == [k.display or k.key for k in KEYS]
            assert list(table.columns[1]._cells) == [k.help for k in KEYS]
            console = Console(width=200, record=True, file=io.StringIO())
            console.print(table)
            lines = console.export_text().splitlines()
            for k in KEYS:
                assert any(line.split()[:1] == [k.display or k.key] and k.help in line for line in lines), k

    asyncio.run(main())


@pytest.mark.parametrize("name, sets", [
    ("default", {}), ("digits", {}), ("deep-linear", {}), ("xor-relu", {}), ("underparam", {}), ("collapse", {}),
])
def test_sizes_before_the_run_match_the_engines_plan(name, sets):
    """The Setup pane's plan (the planner from the preset, no torch) equals the engine's own Plan."""
    from basintui.config import load_preset
    from basintui.planner import plan_preset

    preset = load_preset(name)
    plan = engine_plan(preset)
    est = plan_preset(preset, plan.available_bytes)  # the same memory: the same decisions
    assert est.known and (est.n_params, est.n_train, est.out_dim) == (plan.n_params, plan.n_train, plan.out_dim)
    assert est.g_bytes == plan.g_bytes
    assert (est.route, est.peak_bytes) == (plan.route, plan.peak_bytes)  # same route, same estimate
    assert (est.hessian_mode, est.hessian_bytes) == (plan.hessian_mode, plan.hessian_bytes)


def test_tui_imports_the_engine_only_through_the_bridge():
    offenders = []
    for path in TUI.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:  # relative: resolve against the file's package
                    pkg = path.relative_to(ROOT / "src").with_suffix("").parts[:-1]
                    base = list(pkg[: len(pkg) - (node.level - 1)])
                    mod = ".".join(base + ([mod] if mod else []))
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for n in names:
                if n.startswith(("basintui.engine", "torch")) and path.name != "bridge.py":
                    offenders.append(f"{path.relative_to(ROOT)}: {n}")
    assert not offenders, offenders
    # and the rule has teeth: the bridge itself does import the engine
    assert "from ..engine" in (TUI / "bridge.py").read_text()


def test_serve_binds_localhost_only(monkeypatch):
    import textual_serve.server

    from basintui.tui import serve as serve_mod

    seen = {}

    class FakeServer:
        def __init__(self, command, host, port, title):
            seen.update(command=command, host=host, port=port)

        def serve(self):
            seen["served"] = True

    monkeypatch.setattr(textual_serve.server, "Server", FakeServer)
    assert serve_mod.serve("default", 8123) == 0
    assert seen["host"] == "localhost" and seen["port"] == 8123 and seen["served"]
    assert seen["command"].endswith("-m basintui.cli default")
    assert serve_mod.serve("no-such-preset", 8123) == 2
