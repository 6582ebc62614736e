"""The dashboard, open, compare and export in the app (Pilot), on real stored reports replayed through
the bridge (tests/replay.py)."""

from __future__ import annotations

import asyncio
import html
import re
import shutil

import pytest
from conftest import plain
from replay import REPORTS, replay_session, stored_preset
from textual.widgets import TabbedContent

from basintui.schema import load_report
from basintui.tui.app import BasinApp
from basintui.tui.screens.error import ErrorScreen
from basintui.tui.screens.path import PathScreen
from basintui.tui.widgets.dashboard import Dashboard
from basintui.tui.widgets.plots import SpectrumPlot


async def until(pilot, cond, timeout: float = 30.0, what: str = "") -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or cond}")


def run_app(name: str) -> BasinApp:
    return BasinApp(stored_preset(name), session=replay_session(name))


async def run_to_end(pilot) -> None:
    app = pilot.app
    await pilot.press("r")
    await until(pilot, lambda: app.report is not None and app.status != "running", what="the replayed run")
    await app.workers.wait_for_complete()
    await pilot.pause(0.2)


@pytest.mark.parametrize("name", ["xor-relu", pytest.param("critique", marks=pytest.mark.slow),
                                  pytest.param("collapse", marks=pytest.mark.slow)])
def test_after_r_the_wide_dashboard_shows_rank_claim3_layers_and_hessian_together(name):
    report = load_report(REPORTS / f"{name}.json")

    async def main():
        app = run_app(name)
        async with app.run_test(size=(160, 50)) as pilot:
            await run_to_end(pilot)
            assert app.query_one(TabbedContent).active == "dashboard"
            strip = plain(app, "#dash-strip")
            g = report.G
            assert f"rank(G) = {g.rank}" in strip and f"dim ker G = {g.kernel_dim:,}" in strip
            verdict = report.hessian.claim3.verdict.replace("_", " ") if report.hessian else "off"
            assert f"Claim 3 {verdict}" in strip
            assert report.training.status in strip
            layers = plain(app, "#dash-layers-text")
            top = min(report.layers, key=lambda b: b.position)
            assert top.name in layers and top.finding[:30] in " ".join(layers.split())
            hess = plain(app, "#dash-hessian-text")
            if report.hessian is not None:
                assert f"rank(H) = {report.hessian.rank}" in hess
            else:
                assert "off" in hess
            dash = app.query_one(Dashboard)
            for cell in ("#dash-train", "#dash-spectrum", "#dash-layers", "#dash-hessian", "#dash-log-box"):
                region = dash.query_one(cell).region
                assert region.width >= 30 and region.height >= 5, (cell, region)  # all visible at once
            assert "✓ spectrum" in plain(app, "#dash-log-text")
            assert f"{report.training.status} after" in plain(app, "#dash-progress")

    asyncio.run(main())


def test_each_pane_opens_full_size_on_its_key_and_esc_comes_back():
    async def main():
        app = run_app("xor-relu")
        async with app.run_test(size=(160, 50)) as pilot:
            await run_to_end(pilot)
            tabs = app.query_one(TabbedContent)
            for key, tab in (("3", "spectrum"), ("5", "hessian")):  # every key: the snapshot tests
                await pilot.press(key)
                await until(pilot, lambda tab=tab: tabs.active == tab, 5, tab)
                await pilot.press("escape")
                await until(pilot, lambda: tabs.active == "dashboard", 5, "back to the dashboard")
            await pilot.press("1")
            await until(pilot, lambda: tabs.active == "setup", 5)
            await pilot.press("0")
            await until(pilot, lambda: tabs.active == "dashboard", 5)

    asyncio.run(main())


@pytest.mark.slow  # 4-9 s: in the slow set to keep the default suite within its target
def test_narrow_terminal_keeps_tabs_and_the_dashboard_stacks_without_plots():
    async def main():
        app = run_app("xor-relu")
        async with app.run_test(size=(80, 24)) as pilot:
            await run_to_end(pilot)
            assert app.query_one(TabbedContent).active != "dashboard"  # the panes, as before
            await pilot.press("0")
            await pilot.pause(0.2)
            dash = app.query_one(Dashboard)
            assert not dash.query_one("#dash-top").display
            assert "rank(G) = 3" in plain(app, "#dash-strip")
            for key in "123456":
                await pilot.press(key)
                await pilot.pause(0.05)
                assert app.query_one(TabbedContent).active != "dashboard"

    asyncio.run(main())


def test_open_shows_a_saved_report_without_running_and_e_writes_the_screen_beside_it(tmp_path):
    path = tmp_path / "xor.json"
    shutil.copy(REPORTS / "xor-relu.json", path)
    report = load_report(path)

    async def main():
        app = BasinApp(stored_preset("xor-relu"), opened=(report, path))
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause(0.3)
            assert app.bridge.running_process is None and not app.bridge.busy
            assert app.status == "opened" and app.query_one(TabbedContent).active == "dashboard"
            assert "rank(G) = 3" in plain(app, "#dash-strip")
            assert "rank(G) = 3" in plain(app, "#spec-head")
            await pilot.press("e")
            await until(pilot, lambda: path.with_suffix(".svg").exists(), 10, "the SVG")
        svg = path.with_suffix(".svg").read_text()
        text = html.unescape("".join(re.findall(r">([^<]*)</text>", svg))).replace("\xa0", " ")
        assert svg.lstrip().startswith("<svg") and "rank(G) = 3" in text

    asyncio.run(main())


def test_c_compares_with_a_saved_report_and_a_bad_file_gets_a_modal(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")

    async def main():
        report = load_report(REPORTS / "xor-relu.json")
        app = BasinApp(stored_preset("xor-relu"), opened=(report, REPORTS / "xor-relu.json"))
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause(0.2)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, PathScreen), 5, "the path dialog")
            app.screen.query_one("#path-input").value = str(bad)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ErrorScreen), 5, "the error modal")
            assert "not JSON" in app.screen.message
            await pilot.press("escape")
            await pilot.press("c")  # a folder: a modal that says so, the app lives on
            await until(pilot, lambda: isinstance(app.screen, PathScreen), 5, "the path dialog")
            app.screen.query_one("#path-input").value = str(tmp_path)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ErrorScreen), 5, "the error modal")
            assert "directory" in app.screen.message
            await pilot.press("escape")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, PathScreen), 5, "the path dialog")
            app.screen.query_one("#path-input").value = str(REPORTS / "collapse.json")
            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "CompareScreen", 5, "the comparison")
            await pilot.pause(0.2)
            plot = app.screen.query_one(SpectrumPlot)
            assert plot.overlay is not None
            await pilot.press("escape")
            await until(pilot, lambda: type(app.screen).__name__ != "CompareScreen", 5)

    asyncio.run(main())
