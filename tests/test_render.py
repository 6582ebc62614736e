"""The CLI summary and each pane render real reports (tests/fixtures/reports/, written by the engine;
tests/fixtures/report1/, written by the engine of basintui.report/1) and show their numbers: the rank of
G, rank(H) and Claim 3's verdict, every block's name, the level set's dimension, the training status."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from rich.console import Console

from basintui.render.summary import summary
from basintui.schema import load_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPORTS = sorted((FIXTURES / "reports").glob("*.json"))
REPORT1 = sorted((FIXTURES / "report1").glob("*.json"))


def text(renderable, width: int = 250) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, color_system=None).print(renderable)
    return buf.getvalue()


def rank_g(report) -> str:
    return f"rank(G) {'=' if report.G.rank_exact else '≥'} {report.G.rank}"


def test_the_stored_reports_cover_the_cases_the_panes_distinguish():
    reports = [load_report(p) for p in REPORTS]
    assert len(reports) >= 6
    assert any(r.G is not None and r.G.rank == 0 for r in reports)  # a degenerate point
    assert any(r.G is not None and not r.G.rank_exact for r in reports)  # only the top of the spectrum
    assert any(r.hessian is not None and r.hessian.method == "lanczos" for r in reports)
    assert any(r.hessian is None and r.config.analysis.hessian == "off" for r in reports)
    assert any(r.training.status == "cancelled" for r in reports)
    assert any(r.levelset is not None for r in reports)
    assert any(r.layers and any(b.dependence_guaranteed for b in r.layers) for r in reports)


@pytest.mark.parametrize("path", REPORTS + REPORT1, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_summary_states_the_reports_numbers(path):
    r = load_report(path)
    out = text(summary(r))
    assert f"{r.training.status}: {r.training.steps} steps" in out
    if r.G is not None:
        assert rank_g(r) in out
    if r.hessian is not None:
        h = r.hessian
        assert (f"rank(H) = {h.rank}" if h.rank is not None else "rank(H) not measured") in out
        assert f"Claim 3 (rank H = rank G): {h.claim3.verdict}" in out
    for block in r.layers or []:
        assert block.name in out
    if r.dependent_inputs is not None:
        assert f"null space of GᵀG has dimension {r.dependent_inputs.null_dim}" in out
    if r.levelset is not None and not r.levelset.radius_dependent and r.levelset.estimated_dim is not None:
        assert f"dimension {r.levelset.estimated_dim}" in " ".join(out.split())


def _static_text(pane, selector: str) -> str:
    from textual.widgets import Static

    return " ".join(text(pane.query_one(selector, Static).content).split())


async def _show_all(reports):
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from basintui.tui.widgets.hessian import HessianPane
    from basintui.tui.widgets.layers import LayersPane
    from basintui.tui.widgets.levelset import LevelSetPane
    from basintui.tui.widgets.spectrum import SpectrumPane
    from basintui.tui.widgets.training import StageLog, TrainingPane

    class Panes(App):
        def compose(self) -> ComposeResult:
            yield TrainingPane()
            yield SpectrumPane()
            yield LayersPane()
            yield HessianPane()
            yield LevelSetPane()

    seen = {}
    async with Panes().run_test(size=(160, 60)) as pilot:
        app = pilot.app
        for name, r in reports:
            training = app.query_one(TrainingPane)
            training.reset(r.config.name, r.config.train.steps)
            training.finished(r)
            for pane in (SpectrumPane, LayersPane, HessianPane, LevelSetPane):
                app.query_one(pane).show(r)
            await pilot.pause()
            layers = app.query_one(LayersPane)
            table = layers.query_one(DataTable)
            seen[name] = {
                "log": " ".join(line.plain for line in training.query_one(StageLog).lines),
                "spectrum": _static_text(app.query_one(SpectrumPane), "#spec-head"),
                "hessian": _static_text(app.query_one(HessianPane), "#hess-head"),
                "hessian_facts": _static_text(app.query_one(HessianPane), "#hess-facts-text"),
                "layers": _static_text(layers, "#layers-head"),
                "layer_rows": [str(table.get_row_at(i)[1]) for i in range(table.row_count)],
                "layer_detail": _static_text(layers, "#layer-detail-text"),
                "levelset": _static_text(app.query_one(LevelSetPane), "#ls-head"),
            }
    return seen


def test_each_pane_shows_the_values_of_every_stored_report():
    from basintui.tui.widgets.plotting import num

    reports = [(p.stem, load_report(p)) for p in REPORTS]
    seen = asyncio.run(_show_all(reports))
    for name, r in reports:
        s = seen[name]
        tr = r.training
        assert f"finished: {tr.status} after {tr.steps} steps, final loss {num(tr.final_loss)}" in s["log"], name
        if r.G is not None:
            assert rank_g(r) in s["spectrum"], name
            assert f"N = {r.G.n_params:,}" in s["spectrum"] and f"kd = {r.G.n_outputs:,}" in s["spectrum"], name
        elif tr.status == "cancelled":
            assert "cancelled" in s["spectrum"], name
        h = r.hessian
        if h is not None:
            assert f"rank(H) = {num(h.rank)}" in s["hessian"] and f"rank(GGN) = {h.rank_ggn}" in s["hessian"], name
            assert f"Claim 3: {h.claim3.verdict.replace('_', ' ')}" in s["hessian"], name
            if h.weyl is not None:
                assert f"{h.weyl.outside_band} outside" in s["hessian"], name
            assert h.claim3.why.split(":")[0] in s["hessian_facts"], name
        elif r.config.analysis.hessian == "off":
            assert "analysis.hessian = off" in s["hessian"], name
        if r.layers:
            ranked = sorted(r.layers, key=lambda b: b.position)
            assert s["layer_rows"] == [b.name for b in ranked], name
            assert f"{len(r.layers)} blocks" in s["layers"] and f"Block {ranked[0].name}" in s["layer_detail"], name
            groups = r.dependent_inputs.groups if r.dependent_inputs is not None else []
            hits = [g for g in groups if g.collided_at == ranked[0].index]
            for g in hits:
                assert "inputs " + ", ".join(str(i) for i in g.indices[:24]) in s["layer_detail"], name
        ls = r.levelset
        if ls is not None and not ls.radius_dependent:
            assert f"dimension = {num(ls.estimated_dim) if ls.estimated_dim is not None else 'not measured'}" \
                in s["levelset"], name
            assert f"kernel dim N − r = {ls.kernel_dim}" in s["levelset"], name
