"""N_eff(z) and log det(GGᵀ + εI) (issue 18 item 2) against direct computations on dense matrices, and the
cliff/slope reading on spectra built to be one or the other."""

from __future__ import annotations

import numpy as np
import pytest

from basintui.engine.analyses import soft


def test_n_eff_equals_the_trace_of_a_over_a_plus_z():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((12, 5))
    A = B @ B.T  # rank 5, PSD, 12 × 12
    lam = np.linalg.eigvalsh(A)
    for z in (1e-3, 0.3, 7.0, 1e3):  # (the seven zero eigenvalues come out of eigvalsh at ~1e-15)
        direct = np.trace(A @ np.linalg.inv(A + z * np.eye(12)))
        assert abs(soft.n_eff(np.clip(lam, 0, None), np.array([z]))[0] - direct) < 1e-9 * max(1.0, direct)


def test_logdet_equals_slogdet_of_ggt_plus_eps():
    rng = np.random.default_rng(1)
    G = rng.standard_normal((9, 4))  # N = 9 > kd = 4: five zero eigenvalues of GGᵀ
    sv = np.linalg.svd(G, compute_uv=False)
    for eps in (1e-8, 1e-2, 5.0):
        sign, direct = np.linalg.slogdet(G @ G.T + eps * np.eye(9))
        assert sign > 0
        assert abs(soft.logdet(sv, 9, np.array([eps]))[0] - direct) < 1e-9 * abs(direct)


def test_a_gap_is_a_cliff_and_a_spread_is_a_slope():
    tol = 1e-6
    gap = np.array([1.0, 0.5, 0.2, 1e-14, 1e-15])  # σ: three far above τ, two far below
    c = soft.analyse_values(gap, tol, 5)
    assert c.primary.rank == 3 and c.primary.cliff
    spread = np.logspace(-3, -9, 13)  # σ² from 1e-6 to 1e-18: six decades of eigenvalues either side of τ²
    s = soft.analyse_values(spread, tol, 13)
    assert not s.primary.cliff
    assert "slope" in s.meaning[0]


def test_threshold_is_on_the_grid_and_n_eff_there_sits_between_the_window():
    sv = np.array([3.0, 1.0, 1e-5, 1e-9])
    out = soft.analyse_values(sv, 1e-7, 6)
    zs = [p[0] for p in out.primary.points]
    assert out.primary.threshold == pytest.approx(1e-14, rel=1e-12) and out.primary.threshold in zs
    lo, hi = out.primary.window
    at = dict(out.primary.points)[out.primary.threshold]
    assert lo <= at <= hi
    assert [p["eps"] for p in out.to_dict()["logdet"]] == zs


def test_ggn_and_hessian_curves_and_negative_eigenvalues_left_out():
    sv = np.array([2.0, 1.0])
    out = soft.analyse_values(sv, 1e-12, 4, ggn=(np.array([8.0, 2.0, 0.0, 0.0]), 1e-10),
                              h=(np.array([8.0, 2.0, -1e-3, -2.0]), 1e-10))
    d = out.to_dict()
    assert d["of"] == "GGN" and d["rank"] == 2
    assert d["n_eff_H"]["left_out"] == 2 and d["n_eff_H"]["rank"] == 2
    assert "2 negative eigenvalues" in out.meaning[1]


def test_g_equal_to_zero_has_rank_zero_and_n_eff_zero_everywhere():
    out = soft.analyse_values(np.zeros(3), 0.0, 5)
    assert out.primary.rank == 0 and out.primary.cliff
    assert all(p[1] == 0.0 for p in out.primary.points)
    assert all(np.isfinite(v) for _, v in out.logdet)


def test_only_the_top_of_the_spectrum_is_said_to_give_lower_bounds():
    out = soft.analyse_values(np.array([2.0, 1.0]), 1e-12, 10, complete=False)
    assert not out.to_dict()["complete"] and "lower bound" in out.meaning[0]
