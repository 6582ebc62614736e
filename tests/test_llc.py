"""The SGLD local learning coefficient (engine/analyses/llc.py) against exact answers.

λ = N/2 at the minimum of a regular model, (N − 1)/2 with one input feature duplicated (one exactly flat
direction), and ¼ per direction at the quartic zero L = Σ wᵢ⁴ (the SLT example): each checked within the
estimator's own error bars (3 standard errors across 16 or 32 chains). The settings make the estimator's biases
small beside those bars: γ = 0.1 against curvatures nβ·h ≈ 75 (the factor nβh/(nβh + γ) is 0.999), the
automatic step's Euler bias εc/4 ≤ 1 % (checked: on the regular model 16 × 6000 draws gave 2.0148 ± 0.034
against the discretised chain's exact 2.0145), and for the quartic a fixed step 1e-4 and γ = 0.1 at
nβ = 1086 (the exact localised answer is 0.24974 per direction, 0.1 % low). The fast oracle's settings
(32 chains × 400 draws) put seeds 0–7 all within 1.7 SE of N/2 with no warning; the test runs seed 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from basintui.engine.analyses.llc import (
    LLCSettings,
    estimate_llc,
    model_loss,
    settings_error,
)
from basintui.engine.problem.models import flat_params, layout_of

BARS = 3.0  # standard errors


def _orthogonal_regression(k: int = 200, n: int = 4, seed: int = 0):
    """L(w) = mean((Xw − y)²) with XᵀX = k·I (every direction equally stiff, so the chains mix fast), at its
    minimum w = θ: λ = N/2."""
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(k, n, generator=gen, dtype=torch.float64))[0]
    X = math.sqrt(k) * Q
    theta = torch.randn(n, generator=gen, dtype=torch.float64)
    y = X @ theta

    def loss(t, idx=None):
        Xb, yb = (X, y) if idx is None else (X[idx], y[idx])
        return ((Xb @ t - yb) ** 2).mean()

    return loss, theta, k


def _within(r, truth: float) -> None:
    assert r.draws_done == r.draws and not r.cancelled and not r.diverged and not r.warnings, r.warnings
    assert abs(r.estimate - truth) <= BARS * r.se, (r.estimate, r.se, truth)
    assert r.se < 0.1 * truth  # the bars are tight enough to tell N/2 from (N − 1)/2


def test_regular_model_gives_half_the_parameters():
    loss, theta, k = _orthogonal_regression()
    r = estimate_llc(loss, theta, k, LLCSettings(chains=32, draws=400, burnin=100, gamma=0.1, seed=0),
                     parallel="loop")  # 4 parameters: one pass per chain is the faster way here
    _within(r, 2.0)
    assert r.traces.shape == (32, 400) and len(r.chain_estimates) == 32
    assert r.estimate == pytest.approx(float(np.mean(r.chain_estimates)), rel=1e-12)
    assert r.beta == pytest.approx(1 / math.log(k)) and r.nbeta == pytest.approx(k / math.log(k))
    assert r.init_loss == pytest.approx(0.0, abs=1e-25) and r.step_auto
    # the top curvature: H = 2 XᵀX / k = 2 I
    assert r.curvature_top == pytest.approx(2 * r.nbeta, rel=1e-9)
    assert r.std == pytest.approx(float(np.std(r.chain_estimates, ddof=1)), rel=1e-12)
    assert r.se == pytest.approx(r.std / math.sqrt(32), rel=1e-12)


def _linear_model(dup: bool, seed: int):
    gen = torch.Generator().manual_seed(seed)
    k, n = 200, 4
    X = torch.randn(k, n, generator=gen, dtype=torch.float64)
    if dup:
        X = torch.cat([X, X[:, -1:]], dim=1)
    model = nn.Sequential(nn.Linear(X.shape[1], 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(1, X.shape[1], generator=gen, dtype=torch.float64))
        y = model(X)
    return model_loss(model, layout_of(model), X, y, "mse"), flat_params(model), k


@pytest.mark.slow
@pytest.mark.parametrize("dup, truth", [(False, 2.0), (True, 2.0)], ids=["regular N=4", "duplicated N=5"])
def test_linear_model_through_the_engine_loss(dup, truth):
    """nn.Linear through model_loss (the engine's per-sample loss of a flat float64 vector): N = 4 gives
    4/2; the same four features plus a copy of the last (N = 5, one flat direction) gives (5 − 1)/2."""
    loss, theta, k = _linear_model(dup, seed=1)
    r = estimate_llc(loss, theta, k, LLCSettings(chains=16, draws=2500, burnin=500, gamma=0.1, seed=2))
    _within(r, truth)
    assert r.n_params == (5 if dup else 4)
    if dup:
        assert abs(r.estimate - r.n_params / 2) > BARS * r.se  # N/2 = 2.5 itself is excluded


@pytest.mark.slow
def test_quartic_zero_gives_a_quarter_per_direction():
    """L = Σ wᵢ⁴ over d = 4 directions at w = 0: λ = d/4 = 1 (rank(H) = 0, so rank(H)/2 = 0 and N/2 = 2 are
    both wrong). The automatic step cannot be used there (the curvature at θ is 0), so the step is fixed."""
    d, n = 4, 10000

    def loss(t, idx=None):
        return (t ** 4).sum()

    r = estimate_llc(loss, torch.zeros(d, dtype=torch.float64), n,
                     LLCSettings(chains=16, draws=8000, burnin=500, gamma=0.1, step=1e-4, seed=3))
    assert r.curvature_top == 0.0
    _within(r, 1.0)


def test_diverging_chains_are_caught_and_left_out():
    loss, theta, k = _orthogonal_regression(seed=1)
    r = estimate_llc(loss, theta, k, LLCSettings(chains=4, draws=50, burnin=0, step=1.0, gamma=0.1, seed=0))
    assert r.diverged == (0, 1, 2, 3) and math.isnan(r.estimate)
    assert any("diverged" in w for w in r.warnings)


def test_too_large_a_step_is_warned_about():
    """ε·c = 2 (below the Euler blow-up at 4): the chains stay finite but their stationary variance is
    1/(c(1 − εc/4)) = 2/c, so λ̂ ≈ N (twice N/2)."""
    loss, theta, k = _orthogonal_regression(seed=2)
    nbeta = k / math.log(k)
    r = estimate_llc(loss, theta, k, LLCSettings(chains=4, draws=200, burnin=50, step=2 / (2 * nbeta), gamma=0.0))
    assert not r.diverged and r.step_too_large and r.estimate > 3.0
    assert any("step size is too large" in w for w in r.warnings)


def test_not_a_minimum_is_warned_about():
    loss, theta, k = _orthogonal_regression(seed=3)
    r = estimate_llc(loss, theta + 0.5, k, LLCSettings(chains=4, draws=100, burnin=0, gamma=0.1))
    assert r.below_init and r.estimate < 0
    assert any("not a local minimum" in w for w in r.warnings)


def test_cancel_returns_the_chains_so_far_and_progress_counts_steps():
    loss, theta, k = _orthogonal_regression(seed=4)
    seen = []
    stop_at = 130

    def cancel():
        return len(seen) >= stop_at

    r = estimate_llc(loss, theta, k, LLCSettings(chains=3, draws=200, burnin=100, gamma=0.1), cancel=cancel,
                     progress=lambda d, t: seen.append((d, t)))
    assert r.cancelled and r.draws_done == 30 and r.traces.shape == (3, 30) and np.isfinite(r.estimate)
    assert seen[0] == (1, 300) and seen[-1] == (130, 300)
    assert any("cancelled" in w for w in r.warnings)


def test_vmap_and_loop_give_the_same_chains():
    loss, theta, k = _orthogonal_regression(seed=5)
    s = LLCSettings(chains=3, draws=20, burnin=5, gamma=0.1, seed=7, batch_size=50)
    a = estimate_llc(loss, theta, k, s, parallel="vmap")
    b = estimate_llc(loss, theta, k, s, parallel="loop")
    assert a.parallel == "vmap" and b.parallel == "loop"
    np.testing.assert_allclose(a.traces, b.traces, rtol=1e-10)


@pytest.mark.parametrize("kw, key", [({"chains": 0}, "llc.chains = 0"), ({"draws": 1.5}, "llc.draws"),
                                     ({"step": -1.0}, "llc.step = -1.0"), ({"gamma": float("nan")}, "llc.gamma"),
                                     ({"beta": 0}, "llc.beta = 0"), ({"batch_size": 0}, "llc.batch_size = 0")])
def test_bad_settings_are_named(kw, key):
    msg = settings_error(LLCSettings(**kw))
    assert msg is not None and msg.startswith(key)
    loss, theta, k = _orthogonal_regression()
    with pytest.raises(ValueError, match="llc"):
        estimate_llc(loss, theta, k, LLCSettings(**kw))
    assert settings_error(LLCSettings()) is None


def test_auto_step_at_a_degenerate_point_is_warned_about():
    r = estimate_llc(lambda t, idx=None: (t ** 4).sum(), torch.zeros(2, dtype=torch.float64), 1000,
                     LLCSettings(chains=2, draws=10, burnin=0, gamma=1.0))
    assert r.curvature_top == 0.0 and r.step == pytest.approx(0.04)
    assert any("automatic step" in w for w in r.warnings)


def test_meaning_places_the_estimate_between_rank_h_and_n():
    from dataclasses import replace

    from basintui.engine.analyses.llc import meaning

    loss, theta, k = _orthogonal_regression(seed=6)
    base = estimate_llc(loss, theta, k, LLCSettings(chains=2, draws=10, burnin=0, gamma=0.1))  # N = 4
    assert "regular minimum" in meaning(replace(base, estimate=2.02, se=0.05), rank_h=4)
    assert "minimally singular" in meaning(replace(base, estimate=1.48, se=0.05), rank_h=3)
    assert "not flat at higher order" in meaning(replace(base, estimate=1.75, se=0.05), rank_h=3)
    assert "below rank(H)/2" in meaning(replace(base, estimate=1.0, se=0.05), rank_h=3)
    assert "above N/2" in meaning(replace(base, estimate=2.5, se=0.05), rank_h=4)
    assert "could not be estimated" in meaning(replace(base, estimate=float("nan")))
