"""The "Beyond the rank" pane (key 7), the dashboard's tile and the spectrum pane's kernel split, on the stored
collapse report (tests/fixtures/reports, regenerated with its preset's llc, probe and slice on)."""

from __future__ import annotations

import asyncio
import io

import pytest
from conftest import plain
from replay import REPORTS, stored_preset
from rich.console import Console
from textual.widgets import TabbedContent

from basintui.render import beyond as view
from basintui.schema import load_report
from basintui.tui.app import BasinApp, planned_stages


def test_key_7_shows_the_split_the_curves_lambda_and_the_slice():
    report = load_report(REPORTS / "collapse.json")
    s = report.symmetry

    async def main():
        app = BasinApp(stored_preset("collapse"), opened=(report, REPORTS / "collapse.json"))
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause(0.3)
            tile = plain(app, "#dash-beyond-text")
            assert view.split_text(s) in tile and "λ̂ =" in tile
            assert f"{s.dim} symmetry + {s.dead_dim} dead-unit" in plain(app, "#spec-facts-text")
            await pilot.press("7")
            await pilot.pause(0.2)
            assert app.query_one(TabbedContent).active == "beyond"
            assert view.split_text(s) in plain(app, "#beyond-split")
            soft = plain(app, "#beyond-soft")
            assert "N_eff of" in soft and "┆" in soft  # the curve with the threshold marked
            llc = plain(app, "#beyond-llc")
            assert "rank(H)/2" in llc and "N/2" in llc and report.llc.relation[:30] in llc.replace("\n", " ")
            sl = plain(app, "#beyond-slice")
            assert "loss min" in sl and "a along u (data-dependent" in sl

    asyncio.run(main())


@pytest.mark.slow
def test_the_pane_says_why_when_nothing_was_computed():
    report = load_report(REPORTS / "cancelled.json")

    async def main():
        app = BasinApp(stored_preset("collapse"), opened=(report, REPORTS / "cancelled.json"))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            await pilot.press("7")
            await pilot.pause(0.2)
            assert "Nothing beyond the rank" in plain(app, "#beyond-split")

    asyncio.run(main())


def test_planned_stages_include_the_stages_beyond_the_rank():
    stages = planned_stages(stored_preset("collapse"))
    assert stages[-5:] == ("symmetry", "soft", "probe", "llc", "slices")


def test_text_plots_mark_the_threshold():
    report = load_report(REPORTS / "collapse.json")
    plot = view.n_eff_plot(report.soft, 50, 8).plain
    assert "┆" in plot and "•" in plot


def test_g_equal_to_zero_renders_without_a_threshold():
    report = load_report(REPORTS / "critique.json")  # rank-0 G: τ = 0
    assert report.soft.eps_threshold == 0.0
    buf = io.StringIO()
    Console(file=buf, width=120).print(view.soft_view(report), view.n_eff_plot(report.soft), view.logdet_plot(report.soft))
    assert "N_eff of" in buf.getvalue()
