"""Every spectrum route through a whole run, against the explicit route on the same preset: the
streamed Grams (over parameter chunks, over input chunks) and the factored Gram give the same rank
and singular values; the matrix-free route gives the top of the spectrum and a rank that is exact
or an honest lower bound."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from basintui.config import load_preset
from basintui.engine.session.run import run
from conftest import run_cli

QUICK = {"train.steps": 60, "analysis.layers": False, "analysis.hessian": "off", "analysis.rank_every": -1}


def _run(name: str, **overrides):
    return run(load_preset(name, [f"{k}={json.dumps(v)}" for k, v in {**QUICK, **overrides}.items()]))


@pytest.mark.parametrize("name,route,expect", [
    ("default", "streamed", "streamed over"),        # kd ≤ N: blocks of parameters by vmap(jacrev)
    pytest.param("collapse", "streamed", "streamed over", marks=pytest.mark.slow),
    ("underparam", "streamed", "streamed over input chunks"),  # N < kd: blocks of inputs
    # kd = 2000 ≤ N = 2410, past the N/4 rule (test_gram runs the factored route in the default set)
    pytest.param("digits", "factored", "factored linear", marks=pytest.mark.slow),
])
def test_each_route_gives_the_explicit_routes_rank_and_values(name, route, expect):
    ref = _run(name, **{"analysis.route": "explicit"})
    got = _run(name, **{"analysis.route": route})
    assert got.G_route.startswith(expect), got.G_route
    assert got.G.rank == ref.G.rank and got.G.rank_at_rtol == ref.G.rank_at_rtol
    sv, sv_ref = got.G.singular_values, ref.G.singular_values
    assert len(sv) == len(sv_ref) and got.G.complete
    assert np.max(np.abs(sv - sv_ref)) <= 1e-12 * sv_ref[0]


@pytest.mark.slow  # two whole runs of collapse; test_matfree checks the exact rank from the top values
def test_matrix_free_route_finds_the_rank_exactly_when_the_tolerance_falls_inside_the_top():
    ref = _run("collapse", **{"analysis.route": "explicit"})  # rank 44 of kd = 56
    got = _run("collapse", **{"analysis.route": "matfree", "analysis.top_k": 50})
    assert got.G_route == "J and Jᵀ products" and "svds" in got.G.method and not got.G.complete
    assert got.to_schema().G.route == "matfree" and ref.to_schema().G.route == "explicit"
    assert got.G.rank == ref.G.rank == 44 and got.G.rank_exact
    top = ref.G.singular_values[:50]
    big = top >= 1e-4 * top[0]
    assert np.max(np.abs(got.G.singular_values[big] - top[big]) / top[big]) <= 1e-8


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_matrix_free_route_says_the_rank_is_only_bounded_below_when_every_value_found_is_above_it(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("run", "default", "--set", "analysis.route=matfree", "--set", "analysis.top_k=20",
                   "--set", "train.steps=30", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "rank(G) ≥ 20" in proc.stdout
    g = json.loads(out.read_text())["G"]
    assert g["complete"] is False and g["rank_exact"] is False and g["rank"] == 20
    assert len(g["singular_values"]) == 20 and g["submersion"] is None
    assert any("rank(G) ≥ 20" in line for line in g["meaning"])


def test_a_forced_route_that_cannot_serve_the_preset_exits_2_naming_the_key():
    proc = run_cli("run", "deep-linear", "--set", "analysis.route=factored", timeout=120)  # kd = 96 > N = 93
    assert proc.returncode == 2
    assert "analysis.route" in proc.stderr and "kd ≤ N" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("run", "default", "--set", "analysis.route=svds", timeout=120)
    assert proc.returncode == 2 and "analysis.route" in proc.stderr and "matfree" in proc.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("name,route", [("default", "factored"), ("default", "streamed"), ("digits", "explicit"),
                                        ("underparam", "streamed"), ("collapse", "matfree")])
def test_every_route_on_cuda_gives_the_cpu_rank_and_values(name, route):
    extra = {"analysis.top_k": 50} if route == "matfree" else {}
    cpu = _run(name, **{"analysis.route": "explicit", "device": "cpu"})
    gpu = _run(name, **{"analysis.route": route, "device": "cuda", **extra})
    assert gpu.device.startswith("cuda") and gpu.G.rank == cpu.G.rank
    n = len(gpu.G.singular_values)
    ref = cpu.G.singular_values[:n]
    big = ref >= 1e-4 * ref[0]
    assert np.max(np.abs(gpu.G.singular_values[big] - ref[big]) / ref[big]) <= 1e-8
