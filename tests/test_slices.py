"""The flat-direction loss slice (engine/analyses/slices.py) on models whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.engine.analyses.slices import DATA, RANDOM, SYMMETRY, TOP, loss_slice


def _duplicated(seed: int = 0, k: int = 40, n: int = 4):
    """Linear regression y = X w with the last feature duplicated: G = Xᵀ, one exact flat direction
    (e_{n-1} − e_n)/√2 along which the level set {L = L(θ)} is a line."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(k, n, generator=gen, dtype=torch.float64)
    X = torch.cat([X, X[:, -1:]], dim=1)
    theta = torch.randn(n + 1, generator=gen, dtype=torch.float64)
    y = X @ theta + 0.1 * torch.randn(k, generator=gen, dtype=torch.float64)  # a residual: L(θ) > 0

    def loss(t):
        return ((X @ t - y) ** 2).mean()

    U, S, _ = torch.linalg.svd(X.T, full_matrices=True)  # G = Xᵀ (N × k)
    rank = int((S > S[0] * 1e-12).sum())
    return loss, theta, U[:, rank:], U[:, 0]


def test_flat_direction_is_flat_and_top_direction_rises():
    loss, theta, null, top = _duplicated()
    assert null.shape[1] == 1
    r = loss_slice(loss, theta, null, top, size=11)
    assert r.u_kind == DATA and r.v_kind == TOP and not r.cancelled
    flat = np.array([0, 0, 0, 1, -1]) / np.sqrt(2)
    assert abs(abs(float(r.u @ flat)) - 1) < 1e-12
    c = 5
    L0 = float(loss(theta))
    assert r.center_loss == pytest.approx(L0, rel=1e-13)  # the centre is θ itself
    # constant along u (to rounding) over the whole extent, for every b
    for j in range(11):
        col = r.loss[:, j]
        assert np.max(np.abs(col - col[c])) <= 1e-12 * max(abs(col[c]), L0)
    # rises along v, quadratically: both ends above the centre, symmetric to first order
    assert r.rise_v > 0 and r.loss[c, 0] > L0 and r.loss[c, -1] > L0
    assert r.rise_u <= 1e-12 * L0
    assert r.loss_min <= L0 <= r.loss_max and r.loss_max == np.max(r.loss)
    assert r.extent == pytest.approx(0.1 * max(1.0, float(torch.linalg.norm(theta))))
    assert r.a[c] == 0.0 and r.b[c] == 0.0 and r.a[0] == -r.extent and r.b[-1] == r.extent


def test_symmetry_projected_out_and_requested():
    loss, theta, null, top = _duplicated(seed=1)
    # pretend the only flat direction is a symmetry: nothing data-dependent remains
    r = loss_slice(loss, theta, null, top, symmetry=3.0 * null, size=5)
    assert r.u_kind == SYMMETRY and "symmetry" in r.note
    # a two-dimensional null space with one symmetry: u is the other direction
    gen = torch.Generator().manual_seed(2)
    B = torch.linalg.qr(torch.randn(6, 2, generator=gen, dtype=torch.float64))[0]
    top2 = torch.linalg.qr(torch.cat([B, torch.randn(6, 1, generator=gen, dtype=torch.float64)], 1))[0][:, 2]
    r2 = loss_slice(lambda t: (t ** 2).sum(), torch.zeros(6, dtype=torch.float64), B, top2,
                    symmetry=B[:, :1], size=3)
    assert r2.u_kind == DATA and abs(float(torch.as_tensor(r2.u) @ B[:, 0])) < 1e-12
    assert abs(float(torch.as_tensor(r2.u) @ B[:, 1])) == pytest.approx(1.0, abs=1e-12)
    r3 = loss_slice(lambda t: (t ** 2).sum(), torch.zeros(6, dtype=torch.float64), B, top2,
                    symmetry=B[:, :1], size=3, along="symmetry")
    assert r3.u_kind == SYMMETRY and abs(float(torch.as_tensor(r3.u) @ B[:, 0])) == pytest.approx(1.0, abs=1e-12)


def test_empty_kernel_says_so_and_cancel_and_progress():
    theta = torch.zeros(3, dtype=torch.float64)
    top = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    seen = []
    r = loss_slice(lambda t: (t ** 2).sum(), theta, torch.zeros(3, 0, dtype=torch.float64), top, size=3,
                   progress=lambda d, t: seen.append((d, t)))
    assert r.u_kind == RANDOM and "no flat direction" in r.note and abs(float(r.u @ r.v)) < 1e-15
    assert seen[-1] == (9, 9)
    # bowl x² + y² + z² in the (u, v) plane: L = a² + b² exactly
    A, Bm = np.meshgrid(r.a, r.b, indexing="ij")
    assert np.allclose(r.loss, A ** 2 + Bm ** 2, rtol=1e-13, atol=0)
    calls = iter([False, True])
    rc = loss_slice(lambda t: (t ** 2).sum(), torch.zeros(50000, dtype=torch.float64),
                    None, torch.ones(50000, dtype=torch.float64), size=21, cancel=lambda: next(calls))
    assert rc.cancelled and np.isnan(rc.loss).any() and np.isfinite(rc.loss).any()


def test_bad_input_is_named():
    theta = torch.zeros(3, dtype=torch.float64)
    top = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="size = 4"):
        loss_slice(lambda t: t.sum(), theta, None, top, size=4)
    with pytest.raises(ValueError, match="along"):
        loss_slice(lambda t: t.sum(), theta, None, top, along="x")
    with pytest.raises(ValueError, match="top"):
        loss_slice(lambda t: t.sum(), theta, None, torch.zeros(3, dtype=torch.float64))


def test_through_a_model_the_centre_is_the_training_loss():
    """The engine's loss of a flat parameter vector (llc.model_loss on an nn.Module), vmapped over the grid."""
    from torch import nn

    from basintui.engine.analyses.llc import model_loss
    from basintui.engine.problem.models import flat_params, layout_of

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    L = model_loss(model, layout_of(model), x, y, "mse")
    theta = flat_params(model)
    top = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
    r = loss_slice(lambda t: L(t, None), theta, None, top, size=5)
    with torch.no_grad():
        direct = float(((model(x) - y) ** 2).sum(dim=1).mean())
    assert r.center_loss == pytest.approx(direct, rel=1e-12)
    assert r.parallel in ("vmap", "loop") and np.isfinite(r.loss).all()
