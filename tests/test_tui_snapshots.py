"""Snapshots of the dashboard and every pane at 160×50 and 80×24, from reports the engine wrote.

The run is tests/fixtures/reports/xor-relu.json (every section on: G, the dense Hessian, the layers,
the dependent inputs and the level set), replayed through the bridge by tests/replay.py (the events
its run emitted, then the decoded report). The opened-report snapshots show critique.json (rank-0 G)
through `basintui open`. Regenerate the stored reports with `tests/fixtures/reports/regenerate.py`,
then the snapshots with `pytest tests/test_tui_snapshots.py --snapshot-update`, and look at them.
"""

from __future__ import annotations

import pytest
from replay import REPORTS, replay_session, stored_preset
from textual.widgets import TabbedContent

from basintui.schema import load_report
from basintui.tui.app import BasinApp

CASE = "xor-relu"
TABS = ["dashboard", "setup", "training", "spectrum", "layers", "hessian", "levelset", "beyond", "sweep"]
SIZES = [pytest.param((160, 50), id="160x50"), pytest.param((80, 24), id="80x24", marks=pytest.mark.slow)]
FAST = ("dashboard",)  # at 160×50 in the default set; every other snapshot runs with -m slow


def make_app() -> BasinApp:
    return BasinApp(stored_preset(CASE), session=replay_session(CASE))


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
        await pilot.press(str(TABS.index(tab)))  # 0 the dashboard, 1 … 7 the panes
        tabs = app.query_one(TabbedContent)
        for _ in range(100):
            if tabs.active == tab:
                break
            await pilot.pause(0.05)
        assert tabs.active == tab
        app.clear_notifications()
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tab", [t if t in FAST else pytest.param(t, marks=pytest.mark.slow) for t in TABS])
def test_pane_snapshot(snap_compare, tab, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=run_then_show(tab))


@pytest.mark.parametrize("size", SIZES)
def test_opened_report_snapshot(snap_compare, size):
    """`basintui open critique.json`: the rank-0 point, nothing running."""
    path = REPORTS / "critique.json"
    app = BasinApp(stored_preset("critique"), opened=(load_report(path), path))

    async def settle(pilot) -> None:
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=size, run_before=settle)
