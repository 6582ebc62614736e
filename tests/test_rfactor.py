"""The layer report's cumulative ranks (ranks of G's leading rows) from LeadingRows against numpy's SVD of
G[:s] itself, in both shapes (N < kd: one QR of Gᵀ; N > kd: the row factor), with exact zeros and rank 0;
the column factor keeps the columns' geometry; the dependent-inputs listing says why it stops when the
echelon form would be too large, and its numbers still add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.engine.analyses import dependent
from basintui.engine.analyses.rfactor import LeadingRows, column_factor
from basintui.engine.numerics.spectrum import count_above


def _low_rank(N: int, kd: int, r: int, seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    G = g.standard_normal((N, r)) @ g.standard_normal((r, kd)) if r else np.zeros((N, kd))
    G[N // 3: N // 3 + 2] = 0.0  # exact zero rows
    return torch.as_tensor(G)


def _oracle(G: torch.Tensor, s: int, tol: float) -> int:
    return count_above(torch.as_tensor(np.linalg.svd(G[:s].numpy(), compute_uv=False)), tol)


@pytest.mark.parametrize("N, kd, r", [(40, 90, 7), (90, 40, 25), (60, 60, 60), (50, 30, 0), (120, 20, 20)])
def test_leading_row_ranks_match_the_svd_of_the_rows(N, kd, r):
    G = _low_rank(N, kd, r, seed=N + kd + r)
    sigma1 = float(np.linalg.norm(G.numpy(), 2)) or 1.0
    tol = max(N, kd) * np.finfo(float).eps * sigma1
    bounds = [5, 13, N // 2, N - 3, N]
    rows = LeadingRows(G, bounds)
    got = [rows.rank(s, tol) for s in bounds]
    assert got == [_oracle(G, s, tol) for s in bounds]
    assert got[-1] == min(r, N - 2, kd)  # two rows are exact zeros
    assert got == sorted(got)  # adding rows never lowers a rank


def test_the_column_factor_keeps_every_column_subsets_singular_values():
    for N, kd in [(80, 30), (30, 80)]:
        G = _low_rank(N, kd, 12, seed=N)
        C = column_factor(G)
        assert C.shape[0] == min(N, kd)
        cols = torch.tensor([0, 3, 7, 11, 29])
        a = np.linalg.svd(G[:, cols].numpy(), compute_uv=False)
        b = np.linalg.svd(C[:, cols].numpy(), compute_uv=False)
        assert np.allclose(a, b, rtol=0, atol=1e-10 * a[0])


def test_a_large_null_space_is_counted_not_written_out(monkeypatch):
    """Past the budget the combination relations are not listed; the zero and identical groups still are,
    and null_dim = their dimensions + the directions left, which the report names."""
    g = np.random.default_rng(3)
    k, d, N = 30, 1, 12
    G = g.standard_normal((N, k))
    G[:, 4] = 0.0  # a zero gradient
    G[:, 9] = G[:, 2]  # identical gradients
    G = torch.as_tensor(G)
    tol = 1e-9 * float(np.linalg.norm(G.numpy(), 2))
    full = dependent.dependent_inputs(G, tol, d)
    assert full.unlisted is None and full.explained_dim == full.null_dim == k - N
    monkeypatch.setattr(dependent, "RREF_MAX_FLOPS", 10.0)
    cut = dependent.dependent_inputs(G, tol, d)
    kinds = sorted(gr.kind for gr in cut.groups)
    assert kinds == ["identical", "zero"]
    assert cut.null_dim == k - N and cut.explained_dim == 2
    assert f"the other {k - N - 2} null directions" in cut.unlisted
