"""G by the Linear fast path, by torch.func, and by a loop of autograd.grad agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from basintui.engine.routes.jacobian import compute_G, linear_path_ok, outputs_at
from basintui.engine.problem.models import build_mlp, flat_params, layout_of


def _model(activation: str, bias: bool, d: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return build_mlp(5, (7, 6), d, activation, bias).double()


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "sigmoid", "leaky_relu", "linear"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d", [1, 3])
def test_three_routes_agree(activation, bias, d):
    model = _model(activation, bias, d)
    layout = layout_of(model)
    x = torch.randn(9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G_lin, m1 = compute_G(model, layout, x, method="linear")
    G_fun, m2 = compute_G(model, layout, x, method="functorch")
    G_loop, m3 = compute_G(model, layout, x, method="loop")
    assert (m1, m2, m3) == ("linear", "functorch", "loop")
    assert G_lin.shape == (layout.n_params, 9 * d) and G_lin.dtype == torch.float64
    scale = G_loop.abs().max().item()
    assert (G_lin - G_loop).abs().max().item() <= 1e-12 * scale
    assert (G_fun - G_loop).abs().max().item() <= 1e-12 * scale


def test_columns_are_input_major_and_match_a_finite_difference():
    model = _model("tanh", True, 2)
    layout = layout_of(model)
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    G, _ = compute_G(model, layout, x)
    theta = flat_params(model)
    v = torch.randn(layout.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h = 1e-6
    fd = (outputs_at(model, layout, theta + h * v, x) - outputs_at(model, layout, theta - h * v, x)) / (2 * h)
    jv = (G.T @ v).reshape(4, 2)  # row i, output c  ==  column i·d + c
    assert torch.allclose(jv, fd, rtol=1e-7, atol=1e-9)


def test_softmax_transform_routes_agree():
    model = _model("relu", True, 4)
    layout = layout_of(model)
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def sm(out):
        return torch.softmax(out, dim=-1)

    G_lin, _ = compute_G(model, layout, x, method="linear", transform=sm)
    G_fun, _ = compute_G(model, layout, x, method="functorch", transform=sm)
    assert (G_lin - G_fun).abs().max().item() <= 1e-12 * G_fun.abs().max().item()
    # Softmax outputs sum to one, so the d columns of one input sum to zero.
    assert G_lin.reshape(layout.n_params, 6, 4).sum(dim=2).abs().max().item() < 1e-12


def test_fast_path_refuses_modules_it_cannot_handle():
    assert linear_path_ok(build_mlp(3, (4,), 1, "relu", True))
    assert not linear_path_ok(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1)))
    assert not linear_path_ok(nn.Sequential(nn.Conv1d(1, 1, 1)))


def test_functorch_route_on_a_non_sequential_model_matches_the_loop():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)) + x)

    torch.manual_seed(0)
    model = Skip().double()
    layout = layout_of(model)
    assert layout.kind == "modules" and [b.module for b in layout.blocks] == ["a", "b"]  # one block per module
    x = torch.randn(5, 3, dtype=torch.float64)
    G_fun, method = compute_G(model, layout, x)
    assert method == "functorch"
    G_loop, _ = compute_G(model, layout, x, method="loop")
    assert (G_fun - G_loop).abs().max().item() <= 1e-12 * G_loop.abs().max().item()


def test_functorch_chunks_cover_every_input():
    model = _model("tanh", True, 2)
    layout = layout_of(model)
    x = torch.randn(13, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    from basintui.engine.routes.jacobian import jacobian_functorch

    small_chunks = jacobian_functorch(model, layout, x, chunk_bytes=1)  # one input per chunk
    whole = jacobian_functorch(model, layout, x)
    assert torch.equal(small_chunks, whole) or (small_chunks - whole).abs().max().item() < 1e-14


def test_a_reused_activation_module_and_a_reused_linear_are_handled():
    torch.manual_seed(0)
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 4), act, nn.Linear(4, 2)).double()
    layout = layout_of(model)
    assert [b.modules for b in layout.blocks] == [(0, 1), (2, 3), (4,)]
    x = torch.randn(5, 3, dtype=torch.float64)
    G_lin, method = compute_G(model, layout, x)
    assert method == "linear"
    G_loop, _ = compute_G(model, layout, x, method="loop")
    assert (G_lin - G_loop).abs().max().item() <= 1e-12 * G_loop.abs().max().item()
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.Tanh(), shared).double()
    assert not linear_path_ok(tied)  # the tied weight's gradient sums two uses: torch.func handles it
    lt = layout_of(tied)
    G_fun, method = compute_G(tied, lt, x)
    assert method == "functorch"
    G_ref, _ = compute_G(tied, lt, x, method="loop")
    assert (G_fun - G_ref).abs().max().item() <= 1e-12 * G_ref.abs().max().item()
