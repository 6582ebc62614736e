"""The level-set probe (issue 12): dimension, manifold verdict and radius dependence near θ*.

Oracles: a family of polynomial maps whose zero sets are known exactly (tests/fixtures/polynomial_models.py:
products, powers, cones, sums of even powers, with and without unused parameters, vector-valued), seed 003's
three examples and held-out variants of each, and the regular cases (tanh nets, deep-linear, under-
parameterised) where the rank is locally constant and the level set has the kernel's dimension."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from basintui.engine.analyses import levelset as lsmod
from basintui.engine.analyses.retraction import Probe
from basintui.engine.problem.models import layout_of
from basintui.engine.session.run import run
from conftest import ROOT, make_preset

FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))

from polynomial_models import CASES, R_CIRCLE, RADIUS_DEPENDENT, Polynomial  # noqa: E402

SEEDS = (0, 1, 2)
X1 = torch.zeros(1, 1, dtype=torch.float64)


def probe(name: str, seed: int = 0, **kw) -> lsmod.LevelSetResult:
    model = Polynomial(name).double()
    return lsmod.probe_level_set(model, layout_of(model), X1, seed=seed, **kw)


def probe_obj(name: str) -> Probe:
    model = Polynomial(name).double()
    return Probe(model, layout_of(model), X1, None, 0.0, None)


# --- the polynomial family ------------------------------------------------------------------------------

CROSSING = {"ab", "a2_minus_b2", "abc", "cone", "ab_unused", "a2b2", "crossing_squared"}  # equal-dim branches
MIXED = {"plane_and_line": {1, 2}, "ab_bc": {1, 2}}  # branches of different dimensions
POINT = {"a2_plus_b2", "a4_plus_b4"}


@pytest.mark.parametrize("seed", [SEEDS[0], *(pytest.param(s, marks=pytest.mark.slow) for s in SEEDS[1:])])
@pytest.mark.parametrize("name", sorted(CASES))
def test_polynomial_zero_sets(name, seed):  # every case on seed 0 by default; the other seeds are slow
    case = CASES[name]
    res = probe(name, seed)
    assert res.estimated_dim == case.dim, res.manifold_why
    assert res.manifold is case.manifold, res.manifold_why
    assert res.radius_dependent is False
    assert len(res.by_radius) == len(lsmod.RADII)
    for e in res.by_radius:
        # every radius gives the answer, from (nearly) every point
        assert e["dimension"] == case.dim and e["manifold"] is case.manifold, e
        assert e["converged"] == e["points"] == lsmod.POINTS_SMALL
        assert e["unresolved_points"] == 0
        if name in POINT:
            assert e["returned"] == e["points"]  # every retraction came back to θ*
        else:
            assert e["points"] - e["returned"] >= e["points"] // 2  # most points reach a branch away from θ*
        if name in CROSSING:
            assert set(e["branch_dims"]) == {str(case.dim)}
            assert e["max_angle_deg"] > 40  # two branches, clearly different tangent spaces (threshold 30°)
            assert "cross" in e["why"]
        elif name in MIXED:
            assert {int(d) for d in e["branch_dims"]} == MIXED[name]
            assert "different dimensions" in e["why"]
        elif case.manifold and case.dim > 0:
            assert set(e["branch_dims"]) == {str(case.dim)}
            assert e["max_angle_deg"] < 5  # one tangent space (threshold 11.5°)
    if case.manifold is False:
        assert any("NOT a manifold" in m for m in res.meaning)


def test_a_squared_has_J_zero_on_the_whole_line_yet_dimension_one():
    # N − rank J is not the dimension where F vanishes to higher order: at points of the b-axis J = 0
    res = probe("a2")
    pts = [p for p in res.walk["points"] if "local" in p]
    assert pts and all(p["local"]["dim"] == 1 for p in pts)
    assert res.rank_at_theta == 0 and res.kernel_dim == 2 and res.estimated_dim == 1


def test_an_answer_that_changes_with_the_radius_is_reported_as_such():
    # {0} ∪ the circle of radius 3e-3: a point at ρ = 1e-4 and 1e-3, a curve at 1e-2
    for seed in SEEDS:
        res = probe("point_and_circle", seed)
        assert res.radius_dependent is True
        assert res.estimated_dim is None and res.manifold is None  # never one number
        dims = [e["dimension"] for e in res.by_radius]
        assert dims == [0, 0, 1]
        assert [e["radius"] for e in res.by_radius] == pytest.approx([1e-4, 1e-3, 1e-2])
        big = res.by_radius[-1]
        assert big["returned"] == 0 and big["manifold"] is False
        assert "depends on the probe radius" in res.manifold_why
        assert any("DEPENDS ON THE PROBE RADIUS" in m for m in res.meaning)
        # the retracted points at ρ = 1e-2 lie on the circle, not back at 0
        far = [p for p in res.walk["points"] if p["radius"] == pytest.approx(1e-2)]
        assert all(abs(p["distance"] * 1e-2 - R_CIRCLE) < 1e-9 for p in far)
    assert RADIUS_DEPENDENT["point_and_circle"].dim == 0


# --- the retraction -------------------------------------------------------------------------------------

def test_retraction_stopping_rule_is_relative_a6_below_1e_12():
    # f = a⁶ at ρ = 1e-2: every trial point has |f| ≤ 1e-12, which an absolute 1e-12 would accept as is
    pr = probe_obj("a6")
    start = np.array([0.006, 0.008])
    target = pr.F(np.zeros(2))
    assert float(pr.F(start)[0]) < 1e-12
    end, info = pr.retract(start, target, 1e-2)
    assert info["converged"] and info["stop"] != "exact: F(θ) = F(θ*) already"
    assert abs(end[0]) <= 1e-10  # pulled back onto a = 0 (the step criterion: ≤ XTOL · ρ · order)
    assert end[1] == pytest.approx(0.008, rel=1e-12)  # the b-part is untouched
    # the line search takes α = 6 (exact for a⁶): a handful of iterations, not the ~100 of plain Gauss-Newton
    assert info["iterations"] <= 6
    # and in the walk at ρ = 1e-2 every point of a⁶ starts below 1e-12 and is still retracted onto the b-axis
    res = probe("a6")
    big = [p for p in res.walk["points"] if p["radius"] == pytest.approx(1e-2)]
    assert all(p["converged"] and p["residual_before"] <= 1e-12 for p in big)
    assert sum(p["returned"] for p in big) <= 2  # only a start with a tiny b-part lands near θ*
    assert all(p["local"]["dim"] == 1 for p in big if not p["returned"])


def test_retraction_keeps_the_b_step_and_undoes_the_a_step_for_a_squared():
    from critique_models import valley

    model = valley(in_dim=2, out_dim=1).double()
    layout = layout_of(model)
    x = torch.zeros(1, 2, dtype=torch.float64)
    pr = Probe(model, layout, x, None, 0.0, None)
    target = pr.F(np.zeros(2))
    end, info = pr.retract(np.array([0.03, 0.04]), target, 0.05)
    assert info["converged"] and info["residual_before"] == pytest.approx(0.03**2)
    assert abs(float(end[0])) < 1e-10  # the a-part of the step is pulled back (a² > 0 off the b-axis)
    assert float(end[1]) == pytest.approx(0.04, rel=1e-12)  # the b-part is untouched: F does not see b


def test_a_retraction_that_cannot_converge_is_reported_not_used():
    pr = probe_obj("a2_plus_b2")
    end, info = pr.retract(np.array([0.01, 0.0]), np.array([-1.0]), 0.01)  # f = −1 has no solution
    assert info["converged"] is False and info["stop"]
    assert info["residual_after"] > 0.5


def test_line_search_does_not_jump_over_the_nearer_branch():
    # from radius 1e-2 on f = |θ|²(|θ|² − R²), the circle |θ| = R is crossed before 0 is reached
    pr = probe_obj("point_and_circle")
    end, info = pr.retract(np.array([0.006, -0.008]), np.zeros(1), 1e-2)
    assert info["converged"] and float(np.linalg.norm(end)) == pytest.approx(R_CIRCLE, rel=1e-9)


# --- seed 003's examples and held-out variants, end to end --------------------------------------------

def critique(fn: str, n: int = 1, out_dim: int = 1, **analysis):
    return make_preset(data={"kind": "gaussian", "n": n, "dim": 2, "out_dim": out_dim, "targets": "self"},
                       model={"kind": "python", "factory": f"critique_models:{fn}"}, train={"steps": 0},
                       analysis={"levelset": True, **analysis}, source_dir=FIXTURES)


CRITIQUE = [("bowl", 0, False), ("valley", 1, False), ("flat", 2, True),
            ("bowl_tilted", 0, False), ("bowl_shifted", 0, False), ("valley_tilted", 1, False),
            ("valley_shifted", 1, False), ("flat_shifted", 2, True)]


@pytest.mark.parametrize("fn,dim,constant,n,out_dim", [  # the held-out variants on 3 inputs × 2 outputs: slow
    pytest.param(fn, dim, constant, n, d, id=f"{fn}-{dim}-{constant}-{n}-{d}",
                 marks=pytest.mark.slow if n > 1 and fn not in ("bowl", "valley", "flat") else ())
    for n, d in [(1, 1), (3, 2)] for fn, dim, constant in CRITIQUE])
def test_seed_003_examples_and_held_out_variants(fn, dim, constant, n, out_dim):
    rep = run(critique(fn, n, out_dim))  # default settings otherwise: hessian auto, layers on
    assert rep.error is None, rep.error
    assert rep.hessian is not None and rep.layers is not None
    assert rep.model.n_params == 2 and rep.G.rank == 0
    ls = rep.levelset
    assert ls.kernel_dim == 2 and ls.rank_at_theta == 0
    assert ls.estimated_dim == dim
    assert ls.manifold is True and ls.radius_dependent is False
    assert ls.locally_constant_rank is constant
    assert all(e["dimension"] == dim and e["converged"] == e["points"] for e in ls.by_radius)
    d = json.loads(json.dumps(rep.to_dict()))["levelset"]
    for key in ("locally_constant_rank", "rank_probes", "estimated_dim", "kernel_dim", "generic_dim", "walk",
                "claim1", "meaning", "manifold", "manifold_why", "by_radius", "radius_dependent"):
        assert key in d
    assert d["walk"]["converged"] == d["walk"]["directions"] == len(d["walk"]["points"])


@pytest.mark.parametrize("fn,dim", [("bowl", 0), ("valley", 1), ("flat", 2)])
def test_seed_003_examples_with_default_settings_and_layers_off(fn, dim):
    # the probe does not depend on the other stages
    rep = run(critique(fn, layers=False, hessian="off"))
    assert rep.error is None, rep.error
    assert rep.levelset.estimated_dim == dim and rep.levelset.manifold is True


# --- regular cases: the rank is locally constant and the level set is a manifold of dimension N − r -----

def test_claim1_exponents_on_a_small_tanh_net():
    rep = run(make_preset(data={"kind": "gaussian", "n": 10, "dim": 3, "out_dim": 1, "targets": "teacher"},
                          model={"hidden": [8], "activation": "tanh"}, train={"steps": 100},
                          analysis={"hessian": "off", "layers": False, "levelset": True}))
    ls = rep.levelset
    c1 = ls.claim1
    assert abs(c1["null_exponent"] - 2) <= 0.1
    assert abs(c1["row_exponent"] - 1) <= 0.1
    assert c1["holds"] is True
    assert all(e is not None and abs(e - 2) <= 0.1 for e in c1["null_exponents"])
    # a generic over-parameterised point: rank constant, the level set a manifold of the full kernel dimension
    assert rep.G.rank == 10 and ls.kernel_dim == rep.model.n_params - 10 == ls.generic_dim
    assert ls.locally_constant_rank is True
    assert ls.estimated_dim == ls.kernel_dim and ls.manifold is True and not ls.radius_dependent
    assert ls.walk["converged"] == ls.walk["directions"] == len(lsmod.RADII) * lsmod.POINTS_LARGE
    angles = [e["max_angle_deg"] for e in ls.by_radius]
    for e in ls.by_radius:
        assert e["branch_dims"] == {str(ls.kernel_dim): lsmod.POINTS_LARGE} and e["returned"] == 0
    # a smooth manifold: the tangent spaces turn in proportion to the radius (× 10 per decade)
    assert angles[-1] < 8 and 5 < angles[-1] / angles[-2] < 20 and 5 < angles[-2] / angles[-3] < 20
    for p in ls.walk["points"]:
        assert p["local"]["mode"] == "full" and p["local"]["candidates"] == ls.kernel_dim
        ext = p["local"]["extents"]  # every candidate kept its step: σ_j(D/ε) ≈ 1
        assert min(ext) > 0.99 and max(ext) < 1.01


def test_rank_deficient_but_constant_deep_linear_level_set_has_kernel_dimension():
    # Deep linear nets sit on rank-deficient points (rank q(r + d − q) < kd) where the rank is constant.
    rep = run(make_preset(data={"kind": "gaussian", "n": 6, "dim": 4, "rank": 2, "out_dim": 2, "targets": "random"},
                          model={"hidden": [3], "activation": "linear", "bias": False}, train={"steps": 0},
                          analysis={"hessian": "off", "layers": False, "levelset": True}))
    ls = rep.levelset
    assert rep.G.rank == 2 * (2 + 2 - 2) < 12
    assert ls.locally_constant_rank
    assert ls.kernel_dim == 18 - 4
    assert ls.estimated_dim == ls.kernel_dim and ls.manifold is True and not ls.radius_dependent


def test_subsampled_local_probe_uses_retention_estimate():
    rep = run(make_preset(data={"kind": "gaussian", "n": 6, "dim": 3, "out_dim": 1, "targets": "teacher"},
                          model={"hidden": [12], "activation": "tanh"}, train={"steps": 0},
                          analysis={"hessian": "off", "layers": False}))
    from basintui.engine.problem.data import make_inputs
    from basintui.engine.routes.jacobian import compute_G
    from basintui.engine.problem.models import build_mlp, set_flat_params

    model = build_mlp(3, (12,), 1, "tanh", True).double()
    set_flat_params(model, torch.as_tensor(rep.theta))
    x = torch.as_tensor(make_inputs(make_preset(data={"kind": "gaussian", "n": 6, "dim": 3}).data, 0).x)
    layout = layout_of(model)
    G, _ = compute_G(model, layout, x)
    res = lsmod.probe_level_set(model, layout, x, G=G, max_directions=10, points=4)
    K = rep.model.n_params - 6
    assert res.kernel_dim == K and res.estimated_dim == K and res.manifold is True
    for p in res.walk["points"]:
        lo = p["local"]
        assert lo["mode"] == "sampled" and lo["directions"] == 10 and lo["candidates"] == K
        assert abs(lo["retention"] - K) < 0.5 and lo["dim"] == K  # every sampled direction tangent


def test_under_parameterised_full_rank_level_set_is_a_point():
    rep = run(make_preset(data={"kind": "sine", "n": 30, "dim": 1, "targets": "labels"},
                          model={"hidden": [3], "activation": "tanh"}, train={"steps": 20},
                          analysis={"hessian": "off", "layers": False, "levelset": True}))
    ls = rep.levelset
    assert rep.G.regime == "under" and rep.G.rank == rep.model.n_params
    assert ls.kernel_dim == 0 and ls.estimated_dim == 0 and ls.generic_dim is None
    assert ls.manifold is True and "immersion" in ls.manifold_why
    assert ls.claim1["null_exponent"] is None and abs(ls.claim1["row_exponent"] - 1) <= 0.1
    assert any("never a submersion" in m for m in ls.meaning)


def test_thresholds_leave_a_gap_and_angles_are_reported_in_degrees():
    assert lsmod.SAME_SIN < lsmod.DIFFER_SIN
    res = probe("cone")
    for e in res.by_radius:
        assert 30 < e["max_angle_deg"] <= 90 + 1e-9
    assert math.isclose(math.degrees(math.asin(lsmod.DIFFER_SIN)), 30.0)


# --- what the user sees: the CLI view and the app's Level set pane ----------------------------------------

def _typed(res: lsmod.LevelSetResult):
    """The probe's result as the report's typed section (schema.LevelSet), through its JSON form."""
    import msgspec

    from basintui.schema import LevelSet

    return msgspec.convert(json.loads(json.dumps(res.to_dict())), LevelSet)


def _text(renderable, width: int = 160) -> str:
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(renderable)
    return buf.getvalue()


def test_cli_view_shows_the_verdict_the_reason_and_the_radius_table():
    from basintui.render.levelset import levelset_view

    from basintui.render.levelset import levelset_section
    from basintui.schema import decode_report

    out = _text(levelset_section(_typed(probe("cone"))))
    assert "manifold" in out and " no" in out and "branches cross" in out
    assert "By probe radius" in out and out.count("24/24") == 3 and "2×24" in out
    out = _text(levelset_section(_typed(probe("point_and_circle"))))
    assert "depends on the probe radius" in out and "The answer depends on the probe radius" in out
    # an older report (basintui.report/1, written before the schema) still renders
    old = decode_report((Path(__file__).parent / "fixtures" / "report1" / "critique.json").read_bytes())
    out = _text(levelset_view(old))
    assert "By probe radius" in out and "branches cross" in out


def test_level_set_pane_shows_dimension_manifold_and_radius_dependence():
    import asyncio

    from textual.app import App
    from textual.widgets import Static

    from basintui.tui.widgets.levelset import LevelSetPane

    class One(App):
        def compose(self):
            yield LevelSetPane(id="levelset-pane")

    reports = {name: _typed(probe(name)) for name in ("ab", "a2_plus_b2", "point_and_circle")}

    async def main():
        app = One()
        async with app.run_test(size=(140, 50)) as pilot:
            pane = app.query_one(LevelSetPane)
            seen = {}
            for name, rep in reports.items():
                pane.show_levelset(rep)
                await pilot.pause()
                seen[name] = (_text(app.query_one("#ls-head", Static).content),
                              _text(app.query_one("#ls-text", Static).content))
            return seen

    seen = asyncio.run(main())
    head, body = seen["ab"]
    assert "dimension = 1" in head and "manifold: no" in head and "branches cross" in head
    assert "By probe radius" in body and "1×24" in body
    head, _ = seen["a2_plus_b2"]
    assert "dimension = 0" in head and "manifold: yes" in head and "single point" in head
    head, body = seen["point_and_circle"]
    assert "depends on the probe radius" in head and "⚠" in head
    assert "1e-02" in body and "1e-04" in body


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_a_kink_in_F_makes_the_verdict_cannot_tell_not_crossing():
    # relu(a) + b: the level set b = −relu(a) is a graph with a corner at θ* (tangents 45° apart); J jumps
    # along the segments to the points with a > 0, so the probe cannot call the 45° a crossing
    from polynomial_models import PIECEWISE

    assert PIECEWISE["relu_corner"].dim == 1
    for seed in SEEDS:
        res = probe("relu_corner", seed)
        assert res.estimated_dim == 1 and res.manifold is None and res.radius_dependent is False
        for e in res.by_radius:
            assert e["manifold"] is None and e["kinked_points"] > 0 and "kink" in e["why"]
            assert e["max_angle_deg"] == pytest.approx(45.0, abs=0.5)
    # and no smooth polynomial in the family is taken for a kinked one
    for name in ("abc", "cone", "a2b2", "crossing_squared", "a6"):
        assert all(e["kinked_points"] == 0 for e in probe(name).by_radius)
