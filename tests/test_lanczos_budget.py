"""Lanczos stops within its product budget on the spectrum a Hessian has near a minimum (a few separated
eigenvalues above a cluster of thousands near zero), keeps what converged and says so; the Weyl count made
from it is exact only when a found eigenvalue lies inside the band at each end."""

from __future__ import annotations

import numpy as np

from basintui.engine.analyses.claim3 import weyl_extremes
from basintui.engine.numerics import lanczos


def _operator(n: int, seed: int = 0):
    g = np.random.default_rng(seed)
    lam = np.concatenate([[40.0, 31.0, 17.0, 9.0, 5.0], g.uniform(-1e-4, 1e-4, n - 6), [-0.5]])
    count = [0]

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        return lam * v

    return mv, lam, count


def test_the_bottom_cluster_costs_at_most_the_budget_and_the_top_is_exact(monkeypatch):
    monkeypatch.setattr(lanczos, "LANCZOS_PRODUCT_BUDGET", 150)
    n = 3000
    mv, lam, count = _operator(n)
    notes: list[str] = []
    top, bottom = lanczos.lanczos_extremes(mv, n, 20, seed=0, notes=notes)
    # three calls (‖A‖, top, bottom), each within its budget plus one restart's worth of products
    assert count[0] <= 3 * (150 + 41)
    assert np.allclose(np.sort(top)[::-1][:5], [40.0, 31.0, 17.0, 9.0, 5.0], rtol=0, atol=1e-9)
    assert bottom.size == 0 or np.isclose(bottom.min(), -0.5, rtol=0, atol=1e-9)
    assert bottom.size < 20 and any("SA): " in t and "converged within" in t for t in notes)
    w = weyl_extremes(top, bottom, n, np.sort(lam[lam > 1])[::-1], r_norm=1e-3, resolution=1e-9, rank_ggn=5)
    assert w.above_band == 5
    found_inside = top.size and bottom.size and top.min() <= 1e-3 + 1e-9 and bottom.max() >= -1e-3 - 1e-9
    assert w.outside_band_exact == bool(found_inside)
    assert w.below_band == (1 if bottom.size else 0)
