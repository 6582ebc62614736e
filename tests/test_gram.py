"""The factored Gram route against the explicit G and a dense SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.engine.routes.gram import linear_factors
from basintui.engine.routes.jacobian import compute_G
from basintui.engine.problem.models import build_mlp, layout_of
from basintui.engine.session.run import run
from basintui.engine.numerics.spectrum import analyse, factored_singular_values
from conftest import make_preset


def _setup(activation="tanh", bias=True, d=2, hidden=(12, 9), k=7, seed=0):
    torch.manual_seed(seed)
    model = build_mlp(4, hidden, d, activation, bias).double()
    layout = layout_of(model)
    x = torch.randn(k, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return model, layout, x


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d", [1, 3])
def test_factored_gram_products_and_blocks_match_explicit_G(bias, d):
    model, layout, x = _setup(bias=bias, d=d)
    f = linear_factors(model, layout, x)
    G, _ = compute_G(model, layout, x, method="loop")
    scale = (G.T @ G).abs().max().item()
    assert (f.gram() - G.T @ G).abs().max().item() <= 1e-13 * scale
    assert (f.materialize() - G).abs().max().item() <= 1e-13 * G.abs().max().item()
    V = torch.randn(G.shape[1], 5, dtype=torch.float64)
    for budget in (2**30, 2000):  # whole layers per block, and one or two output units per block
        GV = torch.cat(list(f.blocks(V, budget_bytes=budget)))
        assert (GV - G @ V).abs().max().item() <= 1e-12 * (G @ V).abs().max().item()
        assert torch.equal(torch.cat(list(f.blocks(None, budget_bytes=budget))), f.materialize())
    assert len(list(f.blocks(V, budget_bytes=2000))) > 2 * len(f.layers)
    for b in layout.blocks:
        Gb = G[b.start: b.stop]
        assert (f.gram_rows(b.start, b.stop) - Gb.T @ Gb).abs().max().item() <= 1e-13 * scale


@pytest.mark.parametrize("hidden,r", [((6, 5), 4), ((3,), 5), ((8, 2, 8), 5)])
def test_factored_spectrum_matches_dense_svd_on_rank_deficient_deep_linear_nets(hidden, r):
    torch.manual_seed(0)
    model = build_mlp(8, hidden, 3, "linear", False).double()
    layout = layout_of(model)
    Z = torch.randn(20, r, dtype=torch.float64)
    x = Z @ torch.randn(r, 8, dtype=torch.float64)
    f = linear_factors(model, layout, x)
    sv, method = factored_singular_values(f)
    G = f.materialize()
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    s, s_ref = analyse(sv, layout.n_params, 60, method=method), analyse(ref, layout.n_params, 60)
    q = min(r, 3, *hidden)
    assert s.rank == s_ref.rank == q * (r + 3 - q)
    assert np.max(np.abs(sv - ref)) <= 1e-13 * ref[0]


def test_session_takes_the_factored_route_when_kd_is_small_and_layers_still_see_G():
    p = make_preset(data={"n": 16, "dim": 6}, model={"hidden": [32, 32]}, train={"steps": 5},
                    analysis={"hessian": "off", "layers": False})
    report = run(p)
    assert report.G_route == "factored linear"
    assert report.G.method.startswith("factored") and report.to_schema().G.route == "factored"
    assert report.G.rank == 16
