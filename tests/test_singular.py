"""Singular points with the defaults left on (issue 12): rank-0 G, held-out variants of seed 003's
examples, routes that agree away from the threshold, float32 training on every preset, and the
batch-coupling check's own reasons."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from basintui.engine.errors import InputError
from basintui.engine.session.run import run
from conftest import ROOT, make_preset, run_cli

FIXTURES = ROOT / "tests" / "fixtures"
PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.toml"))


def _factory_preset(factory: str, n: int = 3, out_dim: int = 1, **extra):
    """A user model with every analysis default left on (layers on, hessian auto, train defaults)."""
    return make_preset(data={"kind": "gaussian", "n": n, "dim": 2, "out_dim": out_dim, "targets": "self"},
                       model={"kind": "python", "factory": factory}, source_dir=FIXTURES, **extra)


RANK0 = [("critique_models:bowl", 2), ("critique_models:valley", 2), ("critique_models:flat", 2),
         ("singular_models:quartic_bowl", 2), ("singular_models:tilted_valley", 3), ("singular_models:zero_map", 5)]


@pytest.mark.parametrize("factory,n_params,n,out_dim", [  # every model on one input; on 4 inputs one by default
    pytest.param(f, p, n, d, id=f"{n}-{d}-{f}-{p}",
                 marks=() if n == 1 or f == RANK0[0][0] else pytest.mark.slow)
    for n, d in [(1, 1), (4, 2)] for f, p in RANK0])
def test_rank_zero_G_is_handled_with_the_defaults_on(factory, n_params, n, out_dim):
    rep = run(_factory_preset(factory, n=n, out_dim=out_dim))
    assert rep.error is None, rep.error
    r = json.loads(json.dumps(rep.to_dict()))
    kd = n * out_dim
    assert r["model"]["n_params"] == n_params and r["G"]["rank"] == 0
    assert r["G"]["kernel_dim"] == n_params and r["G"]["near_threshold"] == 0
    assert any("rank(G) = 0" in line and "levelset" in line for line in r["G"]["meaning"])
    # every input is dependent: all of them have a zero gradient, the null space is all of R^{kd}
    dep = r["dependent_inputs"]
    assert dep["null_dim"] == kd
    zero = [g for g in dep["groups"] if g["kind"] == "zero"]
    assert len(zero) == 1 and zero[0]["indices"] == list(range(n)) and zero[0]["dimension"] == kd
    # the layer table is still there: one row, the whole model, ranks 0 at G's tolerance
    assert len(r["layers"]) == 1
    row = r["layers"][0]
    assert row["block_rank"] == 0 and row["cumulative_rank"] == 0 and row["classes"] == 1
    assert row["bits_lost"] == pytest.approx(np.log2(n) if n > 1 else 0.0)
    assert r["layers_info"]["whole_model"] is True
    assert r["hessian"]["rank_ggn"] == 0 and r["hessian"]["rank"] == 0


def test_rank_zero_sequential_net_has_a_per_block_table_of_zeros():
    rep = run(_factory_preset("singular_models:zero_deep_linear", n=5, out_dim=2))
    assert rep.error is None, rep.error
    r = rep.to_dict()
    assert r["G"]["rank"] == 0 and len(r["layers"]) == 3
    assert [b["block_rank"] for b in r["layers"]] == [0, 0, 0]
    assert [b["cumulative_rank"] for b in r["layers"]] == [0, 0, 0]
    assert r["dependent_inputs"]["null_dim"] == 10


@pytest.mark.parametrize("fn", ["bowl", *(pytest.param(f, marks=pytest.mark.slow) for f in ("valley", "flat"))])
def test_the_critique_examples_exit_0_from_the_command_line(tmp_path, fn):
    preset = tmp_path / "p.toml"
    preset.write_text(f'[data]\nkind = "gaussian"\nn = 3\ndim = 2\n[model]\nkind = "python"\n'
                      f'factory = "critique_models:{fn}"\n')
    (tmp_path / "critique_models.py").write_text((FIXTURES / "critique_models.py").read_text())
    out = tmp_path / "out.json"
    proc = run_cli("run", str(preset), "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    r = json.loads(out.read_text())
    assert r["G"]["rank"] == 0 and r["error"] is None and len(r["layers"]) == 1


# ----------------------------------------------------------------------------- routes agree

def _random_config(rng: random.Random) -> dict:
    dim = rng.choice([1, 2, 3])
    return dict(seed=rng.randrange(1000),
                data={"kind": "gaussian", "n": rng.choice([8, 12, 17, 24]), "dim": dim,
                      "rank": rng.choice([dim, 1]), "targets": "teacher"},
                model={"hidden": rng.choice([[3], [4], [6], [3, 3]]),
                       "activation": rng.choice(["tanh", "sigmoid", "relu"])},
                train={"steps": rng.choice([0, 150])})


@pytest.mark.slow
@pytest.mark.parametrize("case", range(12))
def test_every_route_gives_the_explicit_rank_and_the_last_cumulative_rank_equals_it(case):
    cfg = _random_config(random.Random(1000 + case))
    reports = {}
    for route in ("explicit", "streamed", "factored"):
        p = make_preset(**cfg, analysis={"hessian": "off", "route": route})
        try:
            reports[route] = run(p)
        except InputError as exc:  # factored needs kd ≤ N: the route refuses, naming the key
            assert exc.key == "analysis.route" and route == "factored"
    ref = reports["explicit"].G
    tol = ref.tolerance
    for route, rep in reports.items():
        assert rep.error is None, (route, rep.error)
        assert rep.layers[-1].cumulative_rank == rep.G.rank, route
        # the ranks agree wherever no value sits near the threshold (none may lie within 2× of it)
        if ref.near_threshold == 0:
            assert rep.G.rank == ref.rank, (route, rep.G.method)
            assert rep.G.rank_at_rtol == ref.rank_at_rtol, route
        near = (ref.singular_values > tol / 2) & (ref.singular_values < 2 * tol)
        assert rep.G.near_threshold == int(near.sum()) or rep.G.rank == ref.rank


def test_the_issue_s_small_tanh_net_on_the_streamed_route_is_decided_exactly():
    # N = k·d = 17: the streamed route had let its Ritz values decide (15 where the SVD says 12 or so)
    cfg = dict(seed=11, data={"kind": "gaussian", "n": 17, "dim": 1, "rank": 1, "targets": "teacher"},
               model={"hidden": [6], "activation": "tanh"}, train={"steps": 0})
    reps = {route: run(make_preset(**cfg, analysis={"hessian": "off", "route": route}))
            for route in ("explicit", "streamed")}
    e, s = reps["explicit"].G, reps["streamed"].G
    assert e.near_threshold == 0
    assert s.rank == e.rank < 17
    assert "R factor" in s.method or "svd" in s.method
    assert np.max(np.abs(s.singular_values - e.singular_values)) <= 1e-13 * e.singular_values[0]


# ----------------------------------------------------------------------------- float32, coupling

@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_trains_in_float32_and_decides_ranks_in_float64(tmp_path, name):
    out = tmp_path / "r.json"
    proc = run_cli("run", name, "--set", "dtype=float32", "--set", "train.steps=40", "--json", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["config"]["dtype"] == "float32" and r["error"] is None
    if name == "critique":  # θ = 0 is the singular point itself: G = 0 in any precision
        assert r["G"]["rank"] == 0 and r["G"]["singular_values"] == [0.0] * len(r["G"]["singular_values"])
    else:
        assert r["G"]["rank"] >= 1 and r["G"]["rank_rule"]["threshold"] > 0
    # every rank decision is float64: the singular values carry float64 resolution, not float32's
    sv = np.asarray(r["G"]["singular_values"])
    assert sv.dtype == np.float64 and len(sv) == min(r["model"]["n_params"], r["data"]["n_train"] * r["data"]["out_dim"])


def test_float32_plain_mlp_is_not_called_batch_coupled():
    rep = run(make_preset(dtype="float32", data={"kind": "gaussian", "n": 32, "dim": 4},
                          model={"hidden": [16, 16], "activation": "tanh"}, train={"steps": 20},
                          analysis={"hessian": "off", "layers": False}))
    assert rep.error is None and rep.G.rank == 32


def test_dropout_in_train_mode_is_refused_with_its_own_reason_and_eval_mode_runs():
    with pytest.raises(InputError) as exc:
        run(_factory_preset("singular_models:with_dropout", n=8))
    assert "Dropout in train mode" in str(exc.value) and "BatchNorm" not in str(exc.value)
    assert "eval" in str(exc.value)
    rep = run(_factory_preset("singular_models:with_dropout_in_eval", n=8, train={"steps": 10}))
    assert rep.error is None and rep.G.rank == 8


def test_batchnorm_keeps_its_own_reason():
    p = make_preset(data={"kind": "gaussian", "n": 16, "dim": 4},
                    model={"kind": "python", "factory": "infoloss_models:batchnorm_train"},
                    train={"steps": 0}, source_dir=FIXTURES)
    with pytest.raises(InputError, match="BatchNorm in train mode") as exc:
        run(p)
    assert "Dropout" not in str(exc.value) and "eval mode" in str(exc.value)


def test_near_threshold_values_are_shown_in_the_summary_and_the_spectrum_pane():
    from rich.console import Console

    from basintui.engine.session.report import spectrum_dict
    from basintui.engine.numerics.spectrum import analyse
    from basintui.engine.numerics.tolerances import EPS
    import msgspec

    from basintui.render.summary import spectrum_section
    from basintui.schema import SpectrumSection
    from basintui.tui.widgets.spectrum import facts

    tau = 50 * EPS
    s = analyse(np.array([1.0, 0.5, 1.5 * tau, tau / 1.5, tau / 100]), 50, 5)
    g = json.loads(json.dumps(spectrum_dict(s, "explicit", "outputs")))
    assert g["near_threshold"] == 2 and g["rank"] == 3
    assert g["rank_rule"]["threshold"] == pytest.approx(tau) and g["rank_rule"]["rtol"] == 0.0

    def text(renderable) -> str:
        console = Console(width=160, record=True, file=open("/dev/null", "w"))
        console.print(renderable)
        return console.export_text()

    typed = msgspec.convert(g, SpectrumSection)  # the report's G section, from its JSON form
    for out in (text(spectrum_section(typed)), text(facts(typed))):
        assert "2 within 2× of the tolerance" in out and "anywhere from 2 to 4" in out


CRITIQUE = {"bowl": (2, 0, True), "valley": (2, 1, True), "flat": (2, 2, True), "cross": (2, 1, False),
            "cone": (3, 2, False)}


@pytest.mark.parametrize("fn", sorted(CRITIQUE))
def test_the_critique_preset_at_each_singular_point(fn):
    from basintui.config import load_preset

    n_params, dim, manifold = CRITIQUE[fn]
    rep = run(load_preset("critique", [f"model.factory=critique:{fn}", "device=cpu"]))
    assert rep.error is None, rep.error
    r = json.loads(json.dumps(rep.to_dict()))
    assert r["model"]["n_params"] == n_params and r["G"]["rank"] == 0 and r["G"]["kernel_dim"] == n_params
    ls = r["levelset"]
    assert ls["estimated_dim"] == dim and ls["manifold"] is manifold
    assert r["hessian"]["rank"] == 0 and len(r["layers"]) == 1


def test_a_model_that_fails_mid_run_is_one_line_and_exit_1(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('[data]\nkind = "gaussian"\nn = 8\ndim = 2\n[model]\nkind = "python"\n'
                      'factory = "singular_models:fails_later"\n[train]\nsteps = 100\n')
    (tmp_path / "singular_models.py").write_text((FIXTURES / "singular_models.py").read_text())
    proc = run_cli("run", str(preset), timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "the run failed: RuntimeError: CUDA error: an illegal memory access" in proc.stderr
