"""The level-set probe: seed 003's three examples, rank constancy, the retraction, Claim 1's exponents."""

from __future__ import annotations

import json

import pytest
import torch

from basintui.engine import levelset as lsmod
from basintui.engine.models import layout_of
from basintui.engine.session import run
from conftest import ROOT, make_preset

FIXTURES = ROOT / "tests" / "fixtures"


def critique(fn: str):
    return make_preset(data={"kind": "gaussian", "n": 1, "dim": 2, "targets": "self"},
                       model={"kind": "python", "factory": f"critique_models:{fn}"}, train={"steps": 0},
                       analysis={"hessian": "dense", "layers": False, "levelset": True}, source_dir=FIXTURES)


@pytest.mark.parametrize("fn,dim,constant", [("bowl", 0, False), ("valley", 1, False), ("flat", 2, True)])
def test_seed_003_examples_are_told_apart(fn, dim, constant):
    rep = run(critique(fn))
    assert rep.error is None, rep.error
    assert rep.model.n_params == 2 and rep.G.rank == 0
    ls = rep.levelset
    assert ls.kernel_dim == 2 and ls.rank_at_theta == 0
    assert ls.estimated_dim == dim
    assert ls.locally_constant_rank is constant
    assert ls.walk["full_kernel_basis"] and ls.walk["converged"] == 2
    # what the PCA saw: one extent ≈ h per dimension kept, the others pulled back to ≈ 0
    extents = sorted(ls.pca_extents, reverse=True)
    assert all(e > 0.99 for e in extents[:dim]) and all(e < 1e-3 for e in extents[dim:])
    d = json.loads(json.dumps(rep.to_dict()))["levelset"]
    for key in ("locally_constant_rank", "estimated_dim", "kernel_dim", "generic_dim", "walk", "claim1"):
        assert key in d
    assert d["walk"]["points"][0]["residual_after"] <= d["walk"]["tolerance"]


def test_retraction_keeps_the_b_step_and_undoes_the_a_step_for_a_squared():
    import sys

    sys.path.insert(0, str(FIXTURES))
    from critique_models import valley

    model = valley(in_dim=2, out_dim=1).double()
    layout = layout_of(model)
    x = torch.zeros(1, 2, dtype=torch.float64)
    pr = lsmod._Probe(model, layout, x, None, 0.0, None)
    target = pr.F(torch.zeros(2, dtype=torch.float64))
    end, info = pr.retract(torch.tensor([0.03, 0.04], dtype=torch.float64), target, 1e-14)
    assert info["converged"] and info["residual_before"] == pytest.approx(0.03**2)
    assert abs(float(end[0])) < 1e-6  # the a-part of the step is pulled back (a² > 0 off the b-axis)
    assert float(end[1]) == pytest.approx(0.04, rel=1e-12)  # the b-part is untouched: F does not see b


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
    # a generic over-parameterised point: rank constant, the level set has the full kernel dimension
    assert rep.G.rank == 10 and ls.kernel_dim == rep.model.n_params - 10 == ls.generic_dim
    assert ls.locally_constant_rank is True
    assert ls.estimated_dim == ls.kernel_dim
    assert ls.walk["converged"] == ls.walk["directions"] == ls.kernel_dim


def test_rank_deficient_but_constant_deep_linear_level_set_has_kernel_dimension():
    # Deep linear nets sit on rank-deficient points (rank q(r + d − q) < kd) where the rank is constant.
    rep = run(make_preset(data={"kind": "gaussian", "n": 6, "dim": 4, "rank": 2, "out_dim": 2, "targets": "random"},
                          model={"hidden": [3], "activation": "linear", "bias": False}, train={"steps": 0},
                          analysis={"hessian": "off", "layers": False, "levelset": True}))
    ls = rep.levelset
    assert rep.G.rank == 2 * (2 + 2 - 2) < 12
    assert ls.locally_constant_rank
    assert ls.kernel_dim == 18 - 4
    assert ls.estimated_dim == ls.kernel_dim


def test_subsampled_kernel_uses_retention_estimate():
    rep = run(make_preset(data={"kind": "gaussian", "n": 6, "dim": 3, "out_dim": 1, "targets": "teacher"},
                          model={"hidden": [12], "activation": "tanh"}, train={"steps": 0},
                          analysis={"hessian": "off", "layers": False}))
    from basintui.engine.data import make_inputs
    from basintui.engine.jacobian import compute_G
    from basintui.engine.models import build_mlp, set_flat_params

    model = build_mlp(3, (12,), 1, "tanh", True).double()
    set_flat_params(model, torch.as_tensor(rep.theta))
    x = torch.as_tensor(make_inputs(make_preset(data={"kind": "gaussian", "n": 6, "dim": 3}).data, 0).x)
    layout = layout_of(model)
    G, _ = compute_G(model, layout, x)
    res = lsmod.probe_level_set(model, layout, x, G=G, max_directions=10)
    K = rep.model.n_params - 6
    assert res.kernel_dim == K and res.walk["directions"] == 10 and not res.walk["full_kernel_basis"]
    assert res.pca_dim == 10  # every probed direction is tangent: a lower bound only
    assert abs(res.retention_dim - K) < 0.5 and res.estimated_dim == K


def test_under_parameterised_full_rank_level_set_is_a_point():
    rep = run(make_preset(data={"kind": "sine", "n": 30, "dim": 1, "targets": "labels"},
                          model={"hidden": [3], "activation": "tanh"}, train={"steps": 20},
                          analysis={"hessian": "off", "layers": False, "levelset": True}))
    ls = rep.levelset
    assert rep.G.regime == "under" and rep.G.rank == rep.model.n_params
    assert ls.kernel_dim == 0 and ls.estimated_dim == 0 and ls.generic_dim is None
    assert ls.claim1["null_exponent"] is None and abs(ls.claim1["row_exponent"] - 1) <= 0.1
    assert any("never a submersion" in m for m in ls.meaning)
