"""Ranks of G against exact answers (DESIGN §2): deep linear nets, linear models, duplicates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.engine.session.run import run
from conftest import make_preset


def singh_rank_G(r: int, d: int, hidden: list[int]) -> int:
    q = min([r, d, *hidden])
    return q * (r + d - q)


DEEP_LINEAR = [
    # (dim, data rank r, d, hidden widths, n)
    (8, 4, 3, [6, 5], 32),  # d > 1, data rank below the input dimension
    (6, 6, 1, [4, 4, 4], 24),  # scalar output: rank r whatever the depth
    (10, 5, 4, [3], 30),  # a hidden width is the bottleneck
    (5, 5, 5, [8, 2, 8], 20),  # a narrow middle layer
    (7, 3, 2, [], 25),  # depth 1: the linear model W x, rank r·d
]


@pytest.mark.parametrize("dim,r,d,hidden,n", DEEP_LINEAR)
@pytest.mark.parametrize("steps", [0, 25])
def test_deep_linear_rank_matches_singh_formula(dim, r, d, hidden, n, steps):
    p = make_preset(
        data={"kind": "gaussian", "n": n, "dim": dim, "rank": r, "out_dim": d, "targets": "random"},
        model={"hidden": hidden, "activation": "linear", "bias": False},
        train={"steps": steps, "lr": 0.01},
        analysis={"hessian": "off", "layers": False},
    )
    report = run(p)
    assert report.G.rank == singh_rank_G(r, d, hidden)
    N = report.model.n_params
    assert report.G.kernel_dim == N - report.G.rank
    # The rank is robust here: the three relative tolerances agree with the default rule.
    assert set(report.G.rank_at_rtol.values()) == {report.G.rank}


def test_linear_model_rank_is_rank_of_inputs_with_ones():
    p = make_preset(
        data={"kind": "gaussian", "n": 20, "dim": 6, "rank": 3, "out_dim": 1},
        model={"hidden": [], "bias": True},
        train={"steps": 0},
        analysis={"hessian": "off", "layers": False},
    )
    report = run(p)
    x = np.asarray(report.theta)  # parameters are w (6) and b (1)
    assert x.shape == (7,)
    from basintui.engine.problem.data import make_inputs

    X = make_inputs(p.data, p.seed).x
    expected = np.linalg.matrix_rank(np.hstack([X, np.ones((len(X), 1))]))
    assert expected == 4
    assert report.G.rank == expected
    assert report.G.regime == "under" and report.G.generic_dim is None and not report.G.submersion


def test_linear_model_with_d_outputs_has_d_times_the_rank():
    p = make_preset(
        data={"kind": "gaussian", "n": 20, "dim": 6, "rank": 3, "out_dim": 3},
        model={"hidden": [], "bias": True},
        train={"steps": 0},
        analysis={"hessian": "off", "layers": False},
    )
    assert run(p).G.rank == 3 * 4


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_duplicated_inputs_add_no_rank(activation):
    base = {"kind": "gaussian", "n": 12, "dim": 5, "out_dim": 2}
    common = dict(model={"hidden": [16], "activation": activation}, train={"steps": 0},
                  analysis={"hessian": "off", "layers": False})
    plain = run(make_preset(data=base, **common))
    dup = run(make_preset(data={**base, "duplicates": 7}, **common))
    assert plain.G.n_outputs == 24 and dup.G.n_outputs == 24 + 14
    assert plain.G.rank == 24  # generic: full column rank
    assert dup.G.rank == plain.G.rank
    # The non-zero singular values of the duplicated set bound those of the plain set from above.
    assert dup.G.singular_values[0] >= plain.G.singular_values[0]
    assert len(dup.data.duplicate_of) == 7


@pytest.mark.parametrize("loss,extra", [("mse", {}), ("bce", {}), ("ce", {"out_dim": 3})])
def test_self_targets_give_a_zero_residual(loss, extra):
    p = make_preset(
        data={"kind": "gaussian", "n": 10, "dim": 4, "targets": "self", **extra},
        model={"hidden": [8], "activation": "tanh"},
        train={"loss": loss, "steps": 0},
        analysis={"hessian": "off", "layers": False},
    )
    from basintui.engine.problem import data as data_mod
    from basintui.engine.problem.models import make_model, set_flat_params
    from basintui.engine.problem.train import per_sample_loss

    report = run(p)
    inputs = data_mod.make_inputs(p.data, p.seed)
    d = report.data.out_dim
    model = make_model(p.model, inputs.x.shape[1], d, "").double()
    set_flat_params(model, torch.as_tensor(report.theta))
    x = torch.as_tensor(inputs.x)
    out = model(x).detach().requires_grad_(True)
    with torch.no_grad():
        y = model(x)
    y = {"mse": y, "bce": torch.sigmoid(y), "ce": torch.softmax(y, dim=1)}[loss]
    per_sample_loss(out, y, loss).sum().backward()
    # ∂ℓ/∂F = 0 exactly up to rounding: the point is a zero-residual one.
    assert out.grad.abs().max().item() < 1e-14
    if loss == "mse":
        assert report.training.final_loss == 0.0
