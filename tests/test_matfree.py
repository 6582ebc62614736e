"""The matrix-free operator for G and the top of its spectrum, against the dense G and its SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from basintui.engine.cancel import CancelToken
from basintui.engine.errors import Cancelled
from basintui.engine.routes.jacobian import compute_G
from basintui.engine.numerics.spectrum import rank_from_top
from basintui.engine.routes.matfree import TopSpectrum, jacobian_operator, matfree_bytes, top_singular_values
from basintui.engine.problem.models import activation_numel, layout_of


class Residual(nn.Module):
    """Not an nn.Sequential and not Linear-only: Conv1d, a skip connection, then a Linear read-out."""

    def __init__(self, length: int = 6, d: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 3, padding=1)
        self.mix = nn.Conv1d(3, 3, 1)
        self.head = nn.Linear(3 * length, d)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        h = h + torch.tanh(self.mix(h))
        return self.head(h.flatten(1))


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def _case(name: str, device: str = "cpu"):
    g = torch.Generator().manual_seed(1)
    if name == "mlp":
        model, x = _mlp(), torch.randn(12, 3, dtype=torch.float64, generator=g)
    else:
        torch.manual_seed(2)
        model, x = Residual().double(), torch.randn(12, 1, 6, dtype=torch.float64, generator=g)
    return model.to(device), x.to(device)


def _dense(model, x, transform=None) -> np.ndarray:
    G, _ = compute_G(model, layout_of(model), x, transform=transform)
    return G.cpu().numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _check_top(model, x, s: int, transform=None) -> TopSpectrum:
    G = _dense(model, x, transform)
    ref = np.linalg.svd(G, compute_uv=False)
    top = top_singular_values(model, layout_of(model), x, s, transform=transform)
    assert top.converged and (top.n_params, top.n_outputs) == G.shape
    assert top.singular_values.dtype == np.float64 and len(top.singular_values) == s
    assert np.all(np.diff(top.singular_values) <= 0)  # descending
    r = ref[:s]
    big = r >= 1e-4 * r[0]
    assert big.sum() >= 3
    assert np.max(np.abs(top.singular_values[big] - r[big]) / r[big]) <= 1e-8
    assert np.max(np.abs(top.singular_values - r)) <= 1e-10 * r[0]
    return top


@pytest.mark.parametrize("name", ["mlp", "residual"])
@pytest.mark.parametrize("chunk", [None, 5])
def test_products_match_the_dense_G(name, chunk):
    model, x = _case(name)
    G = _dense(model, x)
    op = jacobian_operator(model, layout_of(model), x, chunk=chunk)
    assert op.shape == G.shape == (layout_of(model).n_params, 24) and op.dtype == np.float64
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal(G.shape[1]), rng.standard_normal(G.shape[0])
    assert _rel(op.matvec(u), G @ u) <= 1e-12
    assert _rel(op.rmatvec(v), G.T @ v) <= 1e-12
    U, V = rng.standard_normal((G.shape[1], 3)), rng.standard_normal((G.shape[0], 2))
    assert _rel(op.matmat(U), G @ U) <= 1e-12
    assert _rel(op.rmatmat(V), G.T @ V) <= 1e-12
    assert op.products == 2 + 3 + 2  # every column of a matmat is one product
    op.forward_ad = False  # the double-vjp route for J v, used where an op has no forward-mode rule
    assert _rel(op.rmatvec(v), G.T @ v) <= 1e-12


@pytest.mark.parametrize("name", ["mlp", "residual"])
def test_top_values_match_the_dense_svd(name):
    model, x = _case(name)
    top = _check_top(model, x, 10)
    assert "arpack" in top.method and f"{top.products} products" in top.method
    assert top.products >= 2 * 10  # at least a J and a Jᵀ product per value


def test_the_softmax_transform_is_honoured():
    # Softmax over d = 2: each input's two probabilities sum to 1, so g_{i,0} = −g_{i,1} and rank ≤ k = 12.
    model, x = _case("mlp")
    softmax = lambda out: torch.softmax(out, dim=-1)  # noqa: E731
    G_soft, G_raw = _dense(model, x, softmax), _dense(model, x)
    assert not np.allclose(G_soft, G_raw)
    top = _check_top(model, x, 16, transform=softmax)
    tol = 1e-9 * top.singular_values[0]
    rank, exact = rank_from_top(top.singular_values, tol, min(G_soft.shape))
    assert exact and rank == np.linalg.matrix_rank(G_soft, tol=tol) == 12


def _affine_inputs(k: int, dim: int, sub: int, seed: int = 0) -> torch.Tensor:
    """k inputs in R^dim lying in an affine subspace of dimension `sub`, the last third duplicates."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((k, sub)) @ rng.standard_normal((sub, dim)) + rng.standard_normal(dim)
    X[-(k // 3):] = X[: k // 3]
    return torch.as_tensor(X)


def test_rank_is_exact_when_the_tolerance_lies_inside_the_top_s():
    # Linear model: G's columns are [x_i; 1], so rank(G) = rank([X, 1]) = 5 + 1 (DESIGN §2).
    torch.manual_seed(0)
    model = nn.Linear(20, 1).double()
    x = _affine_inputs(30, 20, 5)
    assert np.linalg.matrix_rank(np.column_stack([x.numpy(), np.ones(30)])) == 6
    top = top_singular_values(model, layout_of(model), x, 9)
    assert top.converged and len(top.singular_values) == 9
    tol = 1e-9 * top.singular_values[0]
    assert top.singular_values[5] > 1e3 * tol and top.singular_values[6] < 1e-3 * tol
    assert rank_from_top(top.singular_values, tol, 21) == (6, True)
    # The tolerance above the top s: only a lower bound, and a correct one.
    top4 = top_singular_values(model, layout_of(model), x, 4)
    rank, exact = rank_from_top(top4.singular_values, tol, 21)
    assert (rank, exact) == (4, False) and rank <= 6


def test_rank_of_a_nonlinear_net_with_duplicated_inputs_matches_the_dense_rank():
    model, x = _case("mlp")
    x[6:] = x[:6]  # six duplicates add no rank
    G = _dense(model, x)
    top = top_singular_values(model, layout_of(model), x, 16)
    tol = 1e-9 * top.singular_values[0]
    dense_rank = np.linalg.matrix_rank(G, tol=tol)
    assert dense_rank <= 12
    assert rank_from_top(top.singular_values, tol, min(G.shape)) == (dense_rank, True)


def test_rank_from_top_cases():
    sv = np.array([3.0, 2.0, 1e-3, 1e-12])
    assert rank_from_top(sv, 1e-6, 100) == (3, True)  # σ₄ ≤ τ: every later σ is too
    assert rank_from_top(sv, 1e-13, 100) == (4, False)  # all exceed τ: rank ≥ 4 only
    assert rank_from_top(sv, 1e-13, 4) == (4, True)  # the whole spectrum
    assert rank_from_top(np.array([]), 1.0, 5) == (0, False)


def test_one_sided_G_is_its_norm():
    # k = 1 input, d = 1 output: G = [x; 1] (kd = 1, ARPACK cannot run), σ = ‖[x; 1]‖.
    model = nn.Linear(3, 1).double()
    x = torch.tensor([[1.0, -2.0, 2.0]], dtype=torch.float64)
    top = top_singular_values(model, layout_of(model), x, 5)
    assert top.singular_values.tolist() == pytest.approx([np.sqrt(10.0)], rel=1e-14)
    assert top.products == 1 and top.converged
    assert rank_from_top(top.singular_values, 1e-9, 1) == (1, True)


def test_cancel_stops_it():
    model, x = _case("mlp")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        top_singular_values(model, layout_of(model), x, 5, cancel=token)

    class After(CancelToken):  # cancels itself on its 7th check: mid-solve
        def __init__(self):
            super().__init__()
            self.calls = 0

        def check(self):
            self.calls += 1
            if self.calls >= 7:
                self.cancel()
            super().check()

    late = After()
    op = jacobian_operator(model, layout_of(model), x, cancel=late)
    with pytest.raises(Cancelled):
        for _ in range(20):
            op.rmatvec(op.matvec(np.ones(24)))
    assert late.calls == 7 and op.products == 6  # checked before every product, none after


def test_not_converged_is_reported():
    # 60 inputs: min(N, kd) = 80, so one ARPACK restart (maxiter=1) is not enough for the top 10.
    model = _mlp()
    x = torch.randn(60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    top = top_singular_values(model, layout_of(model), x, 10, maxiter=1)
    assert not top.converged and "NOT converged" in top.method
    assert 0 < len(top.singular_values) < 10
    ref = np.linalg.svd(_dense(model, x), compute_uv=False)
    nearest = np.min(np.abs(top.singular_values[:, None] - ref[None, :]) / ref[None, :], axis=1)
    assert np.all(nearest <= 1e-8)  # what is returned did converge
    assert top_singular_values(model, layout_of(model), x, 10, maxiter=2).converged


def test_chunk_bytes_and_memory_estimate():
    model, x = _case("mlp")
    per_input = 3 * 8 * activation_numel(model, x[:2])
    op = jacobian_operator(model, layout_of(model), x, chunk_bytes=4 * per_input + 1)
    assert op.chunk == 4
    # The formula in the docstring, at N = 80, kd = 24, s = 10: ncv = 21.
    assert matfree_bytes(80, 24, 10, 1000) == 8 * ((21 + 20) * 24 + 10 * 80 + 21 * 21 + 8 * 21 + 4 * 104) + 2 * 1000
    # Nothing grows like N·kd: ten million parameters, 100k outputs, top 32.
    n, kd = 10**7, 10**5
    assert matfree_bytes(n, kd, 32, 0) < 8 * n * kd / 1000
    assert matfree_bytes(n, kd, 64, 0) > matfree_bytes(n, kd, 32, 0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("name", ["mlp", "residual"])
def test_on_cuda_matches_the_dense_svd(name):
    model, x = _case(name, "cuda")
    G = _dense(model, x)
    op = jacobian_operator(model, layout_of(model), x)
    u = np.random.default_rng(4).standard_normal(24)
    assert _rel(op.matvec(u), G @ u) <= 1e-12
    _check_top(model, x, 10)
