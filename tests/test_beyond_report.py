"""The sections beyond the rank end to end (issue 18): a small run with every stage on fills the report keys
scripts rely on (symmetry.dim, soft.n_eff, probe.rank_both, llc.estimate, …), validates against the schema,
round-trips through JSON, writes the slice and the LLC traces to the NPZ, and the CLI text names each one.
A failing stage keeps the sections before it; the stages' cost estimates come from the planner."""

from __future__ import annotations

import importlib
import io
import json

import numpy as np
import pytest
from rich.console import Console

from basintui.config import load_preset
from basintui.engine.session.report import decode_report, json_bytes, write_npz
from basintui.planner import plan, sizes_from_preset
from basintui.render.summary import summary

session = importlib.import_module("basintui.engine.session.run")
SMALL = ["data.n=10", "data.dim=3", "model.hidden=[4]", "train.steps=40", "analysis.layers=false", "analysis.rank_every=-1",
         'analysis.hessian="dense"', "analysis.probe=6", "analysis.llc=true", "analysis.slices=true",
         "llc.chains=2", "llc.draws=20", "llc.burnin=5"]


@pytest.fixture(scope="module")
def report():
    return session.run(load_preset("default", SMALL))


def test_every_key_the_issue_names_is_in_the_json(report):
    d = json.loads(json_bytes(report))
    assert d["error"] is None
    s = d["symmetry"]
    assert {"dim", "dead_dim", "data_dependent_dim", "max_residual"} <= set(s)
    assert s["dim"] + s["dead_dim"] + s["data_dependent_dim"] == s["kernel_dim"] == d["G"]["kernel_dim"]
    assert s["data_dependent_dim"] >= 0
    assert {"z", "value"} == set(d["soft"]["n_eff"][0]) and {"eps", "value"} == set(d["soft"]["logdet"][0])
    p = d["probe"]
    assert p["rank_train"] == d["G"]["rank"] and p["rank_both"] >= max(p["rank_train"], p["rank_probe"])
    assert p["flat_on_both"] == d["model"]["n_params"] - p["rank_both"]
    llc = d["llc"]
    assert {"estimate", "std", "chains", "draws"} <= set(llc) and llc["chains"] == 2 and llc["draws"] == 20
    assert llc["half_n"] == d["model"]["n_params"] / 2 and llc["rank_H"] == d["hessian"]["rank"]
    assert len(llc["diagnostics"]["traces"]) == 2 and llc["relation"]
    assert d["slice"]["shape"] == [21, 21] and len(d["slice"]["loss"]) == 21


def test_the_report_round_trips_and_the_npz_has_the_slice(report, tmp_path):
    typed = decode_report(json.loads(json_bytes(report)))
    assert typed.symmetry.dim == report.to_schema().symmetry.dim
    path = write_npz(report, tmp_path / "r.npz")
    z = np.load(path)
    assert z["slice_loss"].shape == (21, 21) and z["slice_u"].shape == (21,) and z["slice_v"].shape == (21,)
    assert z["slice_direction_u"].shape == (report.model.n_params,)
    assert z["llc_traces"].shape == (2, 20)
    c = 10
    assert z["slice_loss"][c, c] == pytest.approx(report.training.final_loss, rel=1e-6)
    from_json = write_npz(typed, tmp_path / "t.npz")  # an opened report: the grid, not the directions
    assert np.array_equal(np.load(from_json)["slice_loss"], z["slice_loss"], equal_nan=True)


def test_cli_text_names_each_section(report):
    buf = io.StringIO()
    Console(file=buf, width=160).print(summary(report.to_schema()))
    text = buf.getvalue()
    for words in ("Which flat directions are symmetries", "kernel split", "Soft dimension", "Probe set",
                  "Local learning coefficient", "rank(H)/2", "Loss slice"):
        assert words in text


def test_stages_are_timed_and_estimated_before_they_run(report):
    for name in ("symmetry", "soft", "probe", "llc", "slices"):
        assert name in report.timings
    p = load_preset("default", SMALL)
    planned = plan(p, sizes_from_preset(p), 8 << 30, gflops=10.0)
    assert {"symmetry", "soft", "probe", "llc", "slices"} <= set(planned.stage_seconds)
    assert any(n.startswith("beyond the rank: symmetry") for n in report.notes)  # said before the stages ran


def test_a_failing_stage_keeps_the_sections_before_it(monkeypatch):
    from basintui.engine.session import beyond

    def broken(ctx, report):
        raise RuntimeError("probe broke")

    monkeypatch.setattr(beyond, "probe_stage", broken)
    r = session.run(load_preset("default", [*SMALL[:-5], "analysis.probe=6"]))
    d = r.to_dict()
    assert d["symmetry"] is not None and d["soft"] is not None
    assert d["probe"] is None and "probe broke" in d["error"]["message"]


def test_the_stages_follow_the_keys():
    off = load_preset("default", ["analysis.symmetry=false", "analysis.soft=false"])
    assert [n for n, _ in session.beyond_stages(off)] == ["probe", "llc", "slices"]
    base = load_preset("xor-relu")
    assert [n for n, _ in session.beyond_stages(base)] == ["symmetry", "soft"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["collapse", "default", "digits"])
def test_the_done_when_presets_fill_every_section(name):
    """The issue's "done when", headless: each preset's own settings give the split, N_eff, the probe ranks,
    λ̂ with diagnostics beside rank(H)/2 and N/2, and a slice (training shortened, λ̂'s chains too)."""
    r = session.run(load_preset(name, ["train.steps=100", "llc.draws=40", "llc.burnin=20"]))
    d = r.to_dict()
    assert d["error"] is None
    s = d["symmetry"]
    assert s["complete"] and s["dim"] > 0 and s["data_dependent_dim"] >= 0
    assert s["dim"] + s["dead_dim"] + s["data_dependent_dim"] == d["G"]["kernel_dim"]
    assert s["max_residual"] < 1e-12
    assert d["soft"]["n_eff"] and d["probe"]["rank_both"] >= d["probe"]["rank_train"]
    assert d["llc"]["half_n"] == d["model"]["n_params"] / 2 and d["llc"]["diagnostics"]["traces"]
    assert d["slice"]["u_kind"].startswith("data-dependent") and d["slice"]["rise_v"] > d["slice"]["rise_u"]


def test_tangents_that_do_not_fit_leave_the_split_unsearched_and_say_why(monkeypatch):
    from basintui.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 << 16)  # 64 KiB: G fits, the tangents not
    r = session.run(load_preset("default", ["data.n=6", "data.dim=2", "model.hidden=[3]", "train.steps=5",
                                            "analysis.rank_every=-1", 'analysis.hessian="off"', "analysis.layers=false"]))
    s = r.to_dict()["symmetry"]
    assert s is not None and not s["complete"] and s["dim"] == 0 and s["data_dependent_dim"] == s["kernel_dim"]
    assert "do not fit in memory" in s["why"][0]
