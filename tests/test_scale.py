"""The Gram routes at scale: only the untrusted tail is refined, and the result stays the dense SVD's.

The trust line is λ = GRAM_TRUST_FACTOR·m·ε·λ₁ (σ ≈ 4.2e-6·σ₁ at m = 80); the wide line is WIDE_TAIL_FACTOR
times it (σ ≈ 4.2e-5·σ₁). Values between the two lines are kept from the Gram (relative error ≤ 5e-4 by the
bound); values below the trust line are refined by Rayleigh-Ritz on G·V, and the wide tail is refined only
when the narrow one leaves a Ritz value near a threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.engine.numerics import spectrum as sp
from basintui.engine.numerics.spectrum import analyse, factored_singular_values, singular_values
from basintui.engine.numerics.tolerances import EPS
from basintui.engine.problem.models import build_mlp, layout_of
from basintui.engine.routes.gram import linear_factors

M = 80
TRUST = np.sqrt(sp.GRAM_TRUST_FACTOR * M * EPS)  # σ/σ₁ of the trust line at m = 80: 4.2e-6
WIDE = np.sqrt(sp.WIDE_TAIL_FACTOR) * TRUST  # 4.2e-5


def _with_singular_values(n: int, m: int, sv: np.ndarray, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, len(sv))))[0]
    V = np.linalg.qr(rng.standard_normal((m, len(sv))))[0]
    return torch.as_tensor((U * sv) @ V.T)


def _check_against_svd(G: torch.Tensor, sv: np.ndarray, method: str) -> tuple:
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    n, m = G.shape
    s, s_ref = analyse(sv, n, m, method=method), analyse(ref, n, m)
    assert s.rank == s_ref.rank and s.rank_at_rtol == s_ref.rank_at_rtol
    assert np.max(np.abs(sv - ref)) <= 1e-12 * ref[0]
    return s, ref


def test_only_the_values_below_the_trust_line_are_refined_and_the_band_above_is_kept_from_the_gram():
    band = np.geomspace(3e-5, 6e-6, 45)  # between the trust line and the wide line: the old tail refined these
    assert np.all((band > TRUST) & (band < WIDE))
    # 1e-7 is below the trust line and clear of every threshold's window even with the narrow tail's
    # contamination (m·ε·λ₁/σ_h ≈ 3e-9 for σ_h = 6e-6): the rank windows are (5e-7, 2e-6 + 3e-8),
    # (5e-10, 2e-9 + 3e-8) and (τ/2, 2τ + 3e-8) with τ = 6.7e-13
    sv_true = np.concatenate([np.geomspace(1, 1e-2, 30), band, np.full(5, 1e-7)])
    G = _with_singular_values(3000, M, sv_true, seed=3)
    sv, method = singular_values(G, "gram")
    assert "Ritz tail (5 smallest σ refined" in method and "after" not in method, method
    s, ref = _check_against_svd(G, sv, method)
    assert s.rank == 80 and s.rank_at_rtol == {"1e-3": 30, "1e-6": 75, "1e-9": 80} and s.near_threshold == 0
    in_band = (ref > TRUST) & (ref < WIDE)
    assert np.count_nonzero(in_band) == 45
    assert np.max(np.abs(sv[in_band] - ref[in_band]) / ref[in_band]) <= 1 / (2 * sp.GRAM_TRUST_FACTOR)  # the bound
    big = ref >= 1e-4 * ref[0]
    assert np.max(np.abs(sv[big] - ref[big]) / ref[big]) <= 1e-8


def test_a_narrow_tail_near_a_threshold_is_refined_again_with_the_wide_tail_before_an_exact_method():
    # Narrow tail (the 5 at 1e-8): σ_h = 1e-5, contamination m·ε·λ₁/σ_h = 1.8e-9, so the Ritz values lie
    # inside the rtol = 1e-9 window (5e-10, 2e-9 + 10 × 1.8e-9). The wide tail (20 values) keeps σ_h = 1e-2
    # (contamination 1.8e-12): 1e-8 is then clear of every threshold, and no exact method runs.
    sv_true = np.concatenate([np.geomspace(1, 1e-2, 60), np.full(15, 1e-5), np.full(5, 1e-8)])
    G = _with_singular_values(3000, M, sv_true, seed=5)
    sv, method = singular_values(G, "gram")
    assert "Ritz tail (20 smallest σ refined" in method and "after the narrow tail of 5" in method, method
    s, _ = _check_against_svd(G, sv, method)
    assert s.rank == 80 and s.rank_at_rtol == {"1e-3": 60, "1e-6": 75, "1e-9": 80}


def test_a_rank_deficient_tail_whose_wide_tail_is_barely_larger_is_refined_wide_at_once():
    # 10 at 1e-7 and 30 exact zeros below the trust line, 10 more in the band: the wide tail (50) is at most
    # WIDE_DIRECTLY × the narrow one (40), so it is refined at once (the narrow tail's Ritz values for the
    # zeros would sit near τ under its contamination)
    band = np.geomspace(3e-5, 6e-6, 10)
    sv_true = np.concatenate([np.geomspace(1, 1e-2, 30), band, np.full(10, 1e-7), np.zeros(30)])
    G = _with_singular_values(3000, M, sv_true, seed=3)
    sv, method = singular_values(G, "gram")
    assert "Ritz tail (50 smallest σ refined" in method and "after" not in method, method
    s, _ = _check_against_svd(G, sv, method)
    assert s.rank == 50


def test_a_tie_free_value_near_the_tolerance_is_still_decided_by_an_exact_method():
    tau = 3000 * EPS  # the numpy rule's τ/σ₁ for a 3000 × 80 G
    sv_true = np.concatenate([np.ones(40), np.full(40, 1.5 * tau)])
    G = _with_singular_values(3000, M, sv_true, seed=2)
    sv, method = singular_values(G, "gram")
    assert method.startswith("svd") and "exact method decided" in method
    s, _ = _check_against_svd(G, sv, method)
    assert s.rank == 80 and s.near_threshold == 40


def test_rank_zero_on_the_factored_route():
    # no biases, first and last weights 0: every hidden activation is tanh(0) = 0 and no gradient reaches
    # the first two layers, so G = 0 exactly
    torch.manual_seed(0)
    model = build_mlp(3, (16, 16), 2, "tanh", False).double()
    with torch.no_grad():
        model[0].weight.zero_()
        model[-1].weight.zero_()
    layout = layout_of(model)
    f = linear_factors(model, layout, torch.randn(10, 3, dtype=torch.float64))
    assert float(f.materialize().abs().max()) == 0.0
    sv, method = factored_singular_values(f)
    s = analyse(sv, layout.n_params, 20, method=method)
    assert s.rank == 0 and s.kernel_dim == layout.n_params and np.all(sv == 0) and len(sv) == 20


@pytest.mark.parametrize("hidden", [(40, 40), (24, 30, 24)])
def test_factored_route_on_a_tanh_net_with_repeated_inputs_matches_the_dense_svd(hidden):
    # 45 distinct inputs, 15 of them given twice: the repeated columns of G make rank ≤ 45·d = 90 < kd = 120
    torch.manual_seed(1)
    model = build_mlp(6, hidden, 2, "tanh", True).double()
    layout = layout_of(model)
    base = torch.randn(45, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.cat([base, base[:15]])
    f = linear_factors(model, layout, x)
    assert 4 * 120 <= layout.n_params  # the factored route's domain: kd ≤ N/4
    sv, method = factored_singular_values(f)
    s, _ = _check_against_svd(f.materialize(), sv, method)
    assert s.rank == 90 and "Ritz" in method or "svd" in method
