"""The kernel split (issue 18 item 1) against answers counted by hand: ReLU nets (symmetry dim = live hidden
units, dead-unit dim = the number of distinct coordinates of the dead units' weights), a deep linear net
(GL(h): h²), a LayerNorm's input shift and scale (exact with eps = 0, off by eps otherwise), the softmax
shift on probabilities, all units dead (G = 0), and a model the finder does not follow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from basintui.engine.analyses import symmetry
from basintui.engine.numerics import spectrum
from basintui.engine.problem.models import build_mlp, layout_of
from basintui.engine.routes import jacobian


def _split(model: nn.Module, x: torch.Tensor, probabilities: bool = False):
    model = model.double()
    layout = layout_of(model)
    transform = (lambda out: torch.softmax(out, dim=-1)) if probabilities else None
    G, _ = jacobian.compute_G(model, layout, x, transform=transform)
    s = spectrum.spectrum_of(G)
    sigma1 = float(s.singular_values[0]) if len(s.singular_values) else 0.0
    found = symmetry.find(model, layout, x, probabilities)
    return symmetry.split(found, G, s.tolerance, s.rank, sigma1), s, layout


def _relu_net(dead_outgoing_zero: bool = False) -> nn.Sequential:
    """3 → 4 → 3 → 1 with unit 1 of the first layer dead on every input (bias −1000) and every other unit live
    on every input (bias +5 beats |Wx| ≤ 3 for the inputs below)."""
    torch.manual_seed(0)
    m = build_mlp(3, (4, 3), 1, "relu", True).double()
    with torch.no_grad():
        m[0].bias.fill_(5.0)
        m[0].bias[1] = -1000.0
        m[2].bias.fill_(5.0)
        if dead_outgoing_zero:
            m[2].weight[:, 1] = 0.0
    return m


def _x(k: int = 30, dim: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(k, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).clamp(-1, 1)


@pytest.mark.parametrize("zero_out", [False, True])
def test_relu_symmetry_is_live_units_and_dead_dim_is_dead_coordinates(zero_out):
    out, s, layout = _split(_relu_net(zero_out), _x())
    assert out.dead_units == 1
    assert out.dim == 3 + 3  # live hidden units: 3 of the first layer, 3 of the second
    assert out.dead_dim == 3 + 1 + 3  # the dead unit's incoming weights, bias and outgoing weights
    assert out.dead_dim + out.dim + out.data_dependent_dim == out.kernel_dim == layout.n_params - s.rank
    assert out.max_residual < 1e-12
    assert out.dead_max_row == 0.0
    assert any("dead units counted with the dead-unit" in w for w in out.why)


def test_live_unit_with_zero_outgoing_weights_is_still_a_symmetry():
    m = _relu_net()
    with torch.no_grad():
        m[4].weight[:, 0] = 0.0  # unit 0 of the second layer reaches nothing
    out, _, _ = _split(m, _x())
    assert out.dim == 6 and out.dead_dim == 7


def test_all_units_dead_gives_rank_zero_and_everything_dead():
    m = build_mlp(3, (4, 3), 1, "relu", False).double()
    with torch.no_grad():
        m[0].weight.copy_(-torch.rand(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 0.1)
    x = _x().abs() + 0.1  # positive inputs: every first-layer unit negative, so the second layer sees 0
    out, s, layout = _split(m, x)
    assert s.rank == 0
    assert out.kernel_dim == layout.n_params
    assert (out.dim, out.dead_dim, out.data_dependent_dim) == (0, layout.n_params, 0)


def test_deep_linear_net_has_gl_h_symmetry():
    torch.manual_seed(3)
    out, _, _ = _split(build_mlp(3, (4,), 2, "linear", True), _x())
    assert out.tangents == 16 and out.span_rank == 16 and out.dim == 16  # dim GL(4) = 4²


def test_leaky_relu_rescales_and_has_no_dead_units():
    torch.manual_seed(4)
    m = build_mlp(3, (5,), 1, "leaky_relu", True)
    with torch.no_grad():
        m[0].bias.fill_(-1000.0)  # below zero everywhere, yet LeakyReLU's slope keeps every unit alive
    out, _, _ = _split(m, _x())
    assert out.dim == 5 and out.dead_units == 0 and out.dead_dim == 0


@pytest.mark.parametrize(("eps", "scale_flat"), [(0.0, True), (1e-5, False)])
def test_layernorm_input_shift_and_scale(eps, scale_flat):
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5, eps=eps, elementwise_affine=False), nn.Tanh(), nn.Linear(5, 2))
    out, _, _ = _split(m, _x())
    kinds = {k["kind"]: k for k in out.to_dict()["kinds"]}
    assert kinds["layernorm-shift"]["count"] == 4 and kinds["layernorm-shift"]["max_residual"] < 1e-12
    assert kinds["layernorm-scale"]["count"] == 1
    assert out.span_rank == 5
    if scale_flat:  # LayerNorm(a·z) = LayerNorm(z) exactly without eps
        assert out.dim == 5 and kinds["layernorm-scale"]["max_residual"] < 1e-12
    else:  # with eps the scale moves the output by about eps/var: not flat at G's tolerance, and said so
        assert out.dim == 4 and kinds["layernorm-scale"]["max_residual"] > 1e-9
        assert any("LayerNorm's scale" in w for w in out.why)


def test_layernorm_affine_feeding_relu_and_linear_rescales_per_feature():
    torch.manual_seed(6)
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4, eps=0.0), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        m[1].bias.fill_(5.0)  # every feature positive: no dead unit
    out, _, _ = _split(m, _x())
    kinds = {k["kind"]: k["count"] for k in out.to_dict()["kinds"]}
    assert kinds == {"rescale": 4, "layernorm-shift": 4, "layernorm-scale": 1}
    assert out.dim == 9


def test_softmax_shift_on_probabilities_only():
    torch.manual_seed(7)
    m = build_mlp(3, (5,), 3, "relu", True)
    with torch.no_grad():
        m[0].bias.fill_(5.0)
    on_probs, _, _ = _split(m, _x(), probabilities=True)
    on_logits, _, _ = _split(m, _x())
    assert on_probs.dim == 5 + (5 + 1)  # the units, and the last Linear's 5 columns and bias shifted together
    assert on_logits.dim == 5


def test_a_model_that_is_not_a_sequential_is_not_searched_and_says_why():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    out, _, _ = _split(Two(), _x())
    assert not out.complete and out.dim == 0 and out.dead_dim == 0
    assert out.data_dependent_dim == out.kernel_dim
    assert "nn.Sequential" in out.why[0]
    assert "upper bound" in out.meaning[0]


def test_a_split_that_rounding_pushes_past_the_kernel_shows_zero_and_says_why():
    out = symmetry.Split(dim=3, dead_dim=2, data_dependent_dim=-1, kernel_dim=4, max_residual=1e-17, tangents=3,
                         span_rank=3, dead_units=1, dead_params=2, dead_max_row=0.0, tolerance=1e-12, dim_range=(2, 3),
                         complete=True)
    symmetry._explain(out, symmetry.Found([], [], torch.zeros(0).numpy(), True), 3, True, 0)
    assert out.data_dependent_dim == 0
    assert any("exceed N − rank(G) = 4 by 1" in w for w in out.why)
    assert any("hangs on the tolerance: 2 at τ/2" in w for w in out.why)
