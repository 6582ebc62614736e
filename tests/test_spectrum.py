"""Singular values, ranks at tolerances, gaps and effective rank against constructed matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.engine.session.report import interpret
from basintui.engine.numerics.tolerances import EPS
from basintui.engine.numerics.spectrum import DenseRows, analyse, singular_values, spectrum_of, streamed_singular_values


def _with_singular_values(n: int, m: int, sv: np.ndarray, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, len(sv))))[0]
    V = np.linalg.qr(rng.standard_normal((m, len(sv))))[0]
    return torch.as_tensor((U * sv) @ V.T)


def test_rank_deficient_tall_G_gets_the_true_rank_not_the_gram_count():
    # 2000 × 200 of rank 17: √λ of the Gram alone over-counts (FIELD-NOTES); the Ritz tail must not.
    rng = np.random.default_rng(0)
    G = torch.as_tensor(rng.standard_normal((2000, 17)) @ rng.standard_normal((17, 200)))
    sv, method = singular_values(G)
    assert "Ritz" in method or "svd" in method
    lam_only = np.sqrt(np.maximum(np.linalg.eigvalsh(G.numpy().T @ G.numpy()), 0))
    s = analyse(sv, 2000, 200, method=method)
    assert np.count_nonzero(lam_only > s.tolerance) > 17  # the trap the route avoids
    assert s.rank == 17
    assert len(s.singular_values) == 200
    assert s.rank_deficiency == 200 - 17
    assert s.largest_gap.after == 17 and s.largest_gap.decades > 10
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    assert np.max(np.abs(sv - ref)) <= 1e-13 * ref[0]


TAILS = {
    "rank-deficient": lambda r: np.concatenate([np.geomspace(1, 1e-2, 30), np.zeros(50)]),
    "clustered-tiny": lambda r: np.concatenate([np.geomspace(1, 2e-3, 40), 1e-9 * (1 + r.random(40))]),
    "slow-decay": lambda r: np.geomspace(1, 1e-10, 80),
    "near-tolerance": lambda r: np.concatenate([np.ones(40), np.full(40, 1.5 * 600 * EPS)]),  # 1.5× τ: near, no tie
}


@pytest.mark.parametrize("name", sorted(TAILS))
def test_every_gram_outcome_matches_the_dense_svd(name):
    rng = np.random.default_rng(1)
    G = _with_singular_values(600, 80, TAILS[name](rng), seed=2)
    sv, method = singular_values(G, "gram")
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    s, s_ref = analyse(sv, 600, 80, method=method), analyse(ref, 600, 80)
    assert s.rank == s_ref.rank
    assert s.rank_at_rtol == s_ref.rank_at_rtol
    assert np.max(np.abs(sv - ref)) <= 1e-12 * ref[0]  # Gram values just above the Ritz tail carry ~ε·σ₁²/σ_b
    big = ref >= 1e-4 * ref[0]
    assert np.max(np.abs(sv[big] - ref[big]) / ref[big]) <= 1e-8
    if name == "near-tolerance":  # values within 2× of the tolerance: an exact method must decide
        assert method.startswith("svd") and "exact method decided" in method
        assert s.near_threshold == 40 and s.rank == 80


def test_gram_route_agrees_with_svd_when_well_conditioned():
    sv_true = np.geomspace(10.0, 0.5, 60)
    G = _with_singular_values(600, 60, sv_true)
    sv_gram, method = singular_values(G, "gram")
    sv_svd, _ = singular_values(G, "svd")
    assert method == "gram-eigh"
    assert np.allclose(sv_gram, sv_true, rtol=1e-12)
    assert np.allclose(sv_svd, sv_true, rtol=1e-12)


def test_wide_G_uses_the_tall_orientation_and_returns_min_side_values():
    sv_true = np.array([5.0, 4.0, 3.0, 1e-3, 1e-7])
    G = _with_singular_values(5, 40, sv_true)  # N = 5 < kd = 40
    s = spectrum_of(G)
    assert np.allclose(s.singular_values, sv_true, rtol=1e-9)
    assert s.regime == "under" and s.generic_dim is None and s.rank == 5 and not s.submersion


def test_default_tolerance_is_the_numpy_rule_and_rtol_replaces_it():
    sv = np.array([1.0, 1e-4, 1e-8, 1e-11, 1e-15])
    s = analyse(sv, 100, 5)
    assert s.tolerance == pytest.approx(100 * EPS)
    assert s.rank == 4  # 1e-11 > 2.2e-14 > 1e-15
    assert s.rank_at_rtol == {"1e-3": 1, "1e-6": 2, "1e-9": 3}
    assert analyse(sv, 100, 5, rtol=1e-6).rank == 2
    assert "depends on the tolerance" in " ".join(interpret(s))


def test_effective_rank_and_gap_of_known_values():
    s = analyse(np.array([2.0, 2.0, 2.0, 2.0]), 10, 4)
    assert s.effective_rank == pytest.approx(4.0)
    s = analyse(np.array([3.0, 1.0, 1e-3, 5e-4]), 10, 4)
    p = np.array([3.0, 1.0, 1e-3, 5e-4]) / 4.0015
    assert s.effective_rank == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert s.largest_gap.after == 2 and s.largest_gap.decades == pytest.approx(3.0)


def test_zero_G_has_rank_zero_and_full_kernel():
    s = spectrum_of(torch.zeros(2, 1, dtype=torch.float64))
    assert s.rank == 0 and s.kernel_dim == 2 and s.effective_rank == 0.0 and s.largest_gap is None


def test_exact_zero_singular_values_do_not_break_the_gap():
    s = analyse(np.array([1.0, 0.5, 0.0, 0.0]), 4, 4)
    assert s.rank == 2 and s.largest_gap.after == 2 and np.isfinite(s.largest_gap.decades)


def test_nested_ritz_levels_resolve_a_tail_that_is_itself_ill_conditioned():
    # Structure under the Gram's trust line: one Ritz level leaves 1e-10 and the exact zeros under its
    # own trust line, so a second level must refine them. Every value sits a clear factor (≥ 5×) from
    # the tolerance (6.7e-13) and from the rtol thresholds 1e-3, 1e-6, 1e-9: no tie decides anything.
    sv_true = np.concatenate([np.geomspace(1, 1e-2, 40), np.full(20, 1e-5), np.full(10, 1e-10), np.zeros(10)])
    G = _with_singular_values(3000, 80, sv_true, seed=4)
    sv, method = singular_values(G, "gram")
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    assert "2 levels" in method or "3 levels" in method
    s, s_ref = analyse(sv, 3000, 80, method=method), analyse(ref, 3000, 80)
    assert s.rank == s_ref.rank == 70
    assert s.rank_at_rtol == s_ref.rank_at_rtol == {"1e-3": 40, "1e-6": 60, "1e-9": 60}
    assert s.near_threshold == 0
    assert np.max(np.abs(sv - ref)) <= 1e-13 * ref[0]
    big = ref >= 1e-4 * ref[0]
    assert np.max(np.abs(sv[big] - ref[big]) / ref[big]) <= 1e-8


@pytest.mark.parametrize("budget", [8 * 80 * 7, 2**30])  # 7 rows per block, or all at once
def test_streamed_route_never_holds_G_and_matches_the_dense_svd(budget):
    rng = np.random.default_rng(5)
    G = torch.as_tensor(rng.standard_normal((700, 13)) @ rng.standard_normal((13, 80)))  # rank 13
    sv, method = streamed_singular_values(DenseRows(G, budget_bytes=budget))
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    assert method.startswith("streamed gram-eigh + Ritz tail")
    assert analyse(sv, 700, 80).rank == analyse(ref, 700, 80).rank == 13
    assert np.max(np.abs(sv - ref)) <= 1e-13 * ref[0]


def test_a_streamed_G_near_the_tolerance_is_decided_by_its_R_factor():
    # A streamed G is never whole, so no full SVD: the R factor folded over its row blocks decides.
    sv_true = np.concatenate([np.ones(40), np.full(40, 1.5 * 600 * EPS)])
    G = _with_singular_values(600, 80, sv_true, seed=2)
    sv, method = streamed_singular_values(DenseRows(G, budget_bytes=8 * 80 * 50))  # 50 rows a block
    assert "R factor" in method and "exact method decided" in method
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    assert np.max(np.abs(sv - ref)) <= 1e-14 * ref[0]
    assert analyse(sv, 600, 80).rank == analyse(ref, 600, 80).rank == 80


def test_when_no_exact_method_fits_the_ritz_values_decide_and_say_so(monkeypatch):
    from basintui.engine.numerics import spectrum as sp
    sv_true = np.concatenate([np.ones(40), np.full(40, 1.5 * 600 * EPS)])
    G = _with_singular_values(600, 80, sv_true, seed=2)
    monkeypatch.setattr(sp, "_tsqr_bytes", lambda n: 2**62)  # R cannot fit anywhere
    sv, method = streamed_singular_values(DenseRows(G))
    assert "Ritz values (upper bounds on the small singular values) decided the rank" in method
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    assert np.all(sv[40:] >= ref[40:] - 10 * EPS * ref[0])  # Ritz values are upper bounds (up to rounding)


def test_streamed_r_has_the_singular_values_of_G_to_machine_precision():
    from basintui.engine.numerics.spectrum import streamed_r

    sv_true = np.concatenate([np.geomspace(1, 1e-14, 30), np.zeros(10)])
    G = _with_singular_values(500, 40, sv_true, seed=3)
    R = streamed_r(DenseRows(G, budget_bytes=8 * 40 * 7))  # 7-row blocks: many folds
    ref = np.linalg.svd(G.numpy(), compute_uv=False)
    assert R.shape == (40, 40) and torch.allclose(torch.triu(R), R)
    assert np.max(np.abs(np.linalg.svd(R.numpy(), compute_uv=False) - ref)) <= 50 * EPS * ref[0]


def test_values_at_the_threshold_are_counted_as_near_and_the_rank_is_said_to_depend_on_rounding():
    # On purpose: five values exactly at τ (a tie), five at 1.9τ and five at τ/1.9 (near, either side).
    tau = 100 * EPS
    sv = np.concatenate([[1.0], np.full(5, 1.9 * tau), np.full(5, tau), np.full(5, tau / 1.9), [tau / 10]])
    s = analyse(sv, 100, 17)
    assert s.tolerance == pytest.approx(tau)
    assert s.near_threshold == 15
    assert 6 <= s.rank <= 11  # the tie may go either way; the report must say so, not hide it
    words = " ".join(interpret(s))
    assert "15 singular values lie within a factor 2 of the tolerance" in words
    assert s.rule.count(sv) == s.rank and s.rule.near(sv) == 15


def test_one_rank_rule_rescales_exactly():
    sv = np.array([3.0, 1e-3, 1e-9, 1e-14, 1e-17])
    s = analyse(sv, 50, 5, rtol=1e-6)
    rule = s.rule
    assert rule.rtol == 1e-6 and rule.scale == 3.0 and rule.threshold == pytest.approx(3e-6)
    assert rule.count(sv) == s.rank == 2
    r2 = rule.rescaled(np.sqrt(2.0))
    assert r2.count(np.sqrt(2.0) * sv) == 2 and r2.threshold == pytest.approx(np.sqrt(2.0) * 3e-6)
