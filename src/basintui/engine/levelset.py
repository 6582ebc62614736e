"""A probe of the behaviour level set {θ : F(θ) = F(θ*)} itself (DESIGN §4), instead of assuming
that its dimension is N − rank(G).

(a) Rank constancy. rank(G) re-measured (same tolerance rule as at θ*) at random points θ* + ρu,
    ‖u‖ = 1, for radii ρ ∈ RADII · max(1, ‖θ*‖). The rank is lower semicontinuous, so nearby points
    can only show a higher rank; if every probe agrees with θ*, the rank is taken as locally
    constant and the constant-rank theorem makes N − r the level set's dimension.
(b) Walk. An orthonormal set of M random directions of ker J(θ*) (all of it when the kernel has at
    most MAX_DIRECTIONS dimensions). From θ*, a step of length h = STEP · max(1, ‖θ*‖) along each,
    then a retraction onto F(θ) = F(θ*) by damped Gauss-Newton (Levenberg-Marquardt, minimum-norm
    steps δ = −G (GᵀG + λI)⁻¹ (F(θ) − F(θ*))), until ‖F(θ) − F(θ*)‖ ≤ RETRACT_RTOL · max(1, ‖F(θ*)‖).
    Local PCA of the retracted displacements D (one row per direction): along a tangent direction of
    the level set the points keep their step, σ_j(D) ≈ h; along a direction the level set does not
    contain, the retraction takes the step back, σ_j(D) ≈ 0. A principal axis counts when
    σ_j(D) > PCA_THRESHOLD · h (one half of the step). With the whole kernel probed this count is the
    estimate; with only M < dim ker directions it is a lower bound, and the estimate is the retention
    dim ker · mean over directions of (‖displacement‖/h)² (for a tangent space T ⊆ ker J it is dim T in
    expectation), read as dim ker when within two standard errors (or 0.5 %) of it.
    Where J(θ*) = 0 (seed 003's examples) ker J is everything: for f = a² a step along b keeps
    F, so the retraction leaves it; a step along a changes F by a², and Gauss-Newton (δa = −a/2 per
    iteration) pulls it back to a = 0. So f = a² + b², a², 0 give 0, 1, 2.
(c) Claim 1. ‖F(θ* + s v) − F(θ*)‖ for s = h₁/2 … h₁/256, h₁ = CLAIM1_BASE · max(1, ‖θ*‖): along
    unit v ∈ ker J it scales as s², along v in the row space of J as s; the fitted log-log slopes (median over a few directions) are reported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import spectrum as spectrum_mod
from .cancel import CancelToken
from .events import Note
from .jacobian import compute_G, outputs_at
from .models import flat_params, set_flat_params

RADII = (1e-4, 1e-3, 1e-2)  # × max(1, ‖θ*‖)
POINTS_PER_RADIUS = 2
STEP = 2e-3  # walk step h = STEP · max(1, ‖θ*‖)
CLAIM1_BASE = 1e-2  # Claim 1 steps s = CLAIM1_BASE · max(1, ‖θ*‖) · 2^-j, j = 1..8
MAX_DIRECTIONS = 96
PCA_THRESHOLD = 0.5  # a principal axis counts when σ_j(D) > 0.5 · h
RETRACT_RTOL = 1e-12
RETRACT_MAX_ITER = 60
CLAIM1_DIRECTIONS = 3
CLAIM1_STEPS = tuple(2.0 ** -j for j in range(1, 9))  # × h
CLAIM1_TOLERANCE = 0.1  # exponents within 0.1 of 2 (null) and 1 (row space)


@dataclass
class LevelSetResult:
    locally_constant_rank: bool
    rank_at_theta: int
    rank_probes: list[dict[str, Any]]
    estimated_dim: int
    estimated_dim_method: str
    pca_dim: int
    retention_dim: float | None
    retention_se: float | None
    pca_extents: list[float]  # σ_j(D)/h, largest first (at most 50 shown)
    pca_threshold: float
    kernel_dim: int
    generic_dim: int | None
    n_params: int
    n_outputs: int
    walk: dict[str, Any]
    claim1: dict[str, Any]
    meaning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "locally_constant_rank": self.locally_constant_rank,
            "rank_at_theta": self.rank_at_theta,
            "rank_probes": self.rank_probes,
            "estimated_dim": self.estimated_dim,
            "estimated_dim_method": self.estimated_dim_method,
            "pca_dim": self.pca_dim,
            "retention_dim": self.retention_dim,
            "retention_se": self.retention_se,
            "pca_extents": self.pca_extents,
            "pca_threshold": self.pca_threshold,
            "pca_rule": f"a principal axis of the retracted displacements counts when σ_j(D) > {self.pca_threshold} · h",
            "kernel_dim": self.kernel_dim,
            "generic_dim": self.generic_dim,
            "n_params": self.n_params,
            "n_outputs": self.n_outputs,
            "walk": self.walk,
            "claim1": self.claim1,
            "meaning": list(self.meaning),
        }


class _Probe:
    """F and G at arbitrary θ for one model (a private copy whose parameters are overwritten)."""

    def __init__(self, model, layout, x, transform, rtol: float, cancel: CancelToken | None):
        self.model = copy.deepcopy(model)
        self.layout = layout
        self.x = x
        self.transform = transform
        self.rtol = rtol
        self.cancel = cancel or CancelToken()

    def F(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return outputs_at(self.model, self.layout, theta, self.x, self.transform).reshape(-1)

    def G(self, theta: torch.Tensor) -> torch.Tensor:
        set_flat_params(self.model, theta)
        return compute_G(self.model, self.layout, self.x, transform=self.transform, cancel=self.cancel)[0]

    def rank(self, theta: torch.Tensor) -> tuple[int, float]:
        G = self.G(theta)
        spec = spectrum_mod.spectrum_of(G, rtol=self.rtol, cancel=self.cancel)
        sv = spec.singular_values
        return spec.rank, float(sv[0]) if len(sv) else 0.0

    def retract(self, theta: torch.Tensor, target: torch.Tensor, tol: float) -> tuple[torch.Tensor, dict[str, Any]]:
        """Damped Gauss-Newton (Levenberg-Marquardt) onto F(θ) = target, minimum-norm steps."""
        r = self.F(theta) - target
        rn = float(torch.linalg.norm(r))
        before = rn
        damp = 1e-8
        it = 0
        stalled = ""
        while rn > tol and it < RETRACT_MAX_ITER:
            self.cancel.check()
            it += 1
            G = self.G(theta)
            scale = float((G * G).sum())
            if scale == 0.0:
                stalled = "J = 0 here: no Gauss-Newton direction"
                break
            lam = damp * scale
            n, m = G.shape
            if m <= n:
                A = G.T @ G + lam * torch.eye(m, dtype=G.dtype, device=G.device)
                delta = -G @ torch.linalg.solve(A, r)
            else:
                A = G @ G.T + lam * torch.eye(n, dtype=G.dtype, device=G.device)
                delta = -torch.linalg.solve(A, G @ r)
            cand = theta + delta
            r_c = self.F(cand) - target
            rn_c = float(torch.linalg.norm(r_c))
            if rn_c < rn:
                theta, r, rn = cand, r_c, rn_c
                damp = max(damp / 10.0, 1e-14)
            else:
                damp *= 100.0
                if damp > 1e8:
                    stalled = "no decrease even with heavy damping"
                    break
        return theta, {"residual_before": before, "residual_after": rn, "iterations": it,
                       "converged": rn <= tol, **({"stalled": stalled} if stalled else {})}


def _slope(s: np.ndarray, v: np.ndarray, floor: float) -> float | None:
    keep = v > floor
    if keep.sum() < 3:
        return None
    ls, lv = np.log(s[keep]), np.log(v[keep])
    return float(np.polyfit(ls, lv, 1)[0])


def probe_level_set(model, layout, x: torch.Tensor, *, transform=None, rtol: float = 0.0, seed: int = 0,
                    G: torch.Tensor | None = None, cancel: CancelToken | None = None,
                    max_directions: int = MAX_DIRECTIONS, emit=None) -> LevelSetResult:
    """The level-set probe at the model's current parameters θ* (see the module docstring)."""
    emit = emit or (lambda e: None)
    pr = _Probe(model, layout, x, transform, rtol, cancel)
    theta0 = flat_params(model).to(torch.float64)
    n = theta0.numel()
    gen = torch.Generator(device="cpu").manual_seed(seed + 4242)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(theta0.device)

    if G is None:
        G = pr.G(theta0)
    kd = G.shape[1]
    spec = spectrum_mod.spectrum_of(G, rtol=rtol, cancel=pr.cancel)
    r = spec.rank
    K = n - r
    generic = n - kd if n >= kd else None
    F0 = pr.F(theta0)
    scale = max(1.0, float(torch.linalg.norm(theta0)))

    # (a) rank constancy
    probes = []
    for rho_rel in RADII:
        rho = rho_rel * scale
        ranks = []
        for _ in range(POINTS_PER_RADIUS):
            pr.cancel.check()
            u = randn(n)
            u = u / torch.linalg.norm(u)
            ranks.append(pr.rank(theta0 + rho * u)[0])
        probes.append({"radius": rho, "ranks": ranks})
    constant = all(rk == r for p in probes for rk in p["ranks"])

    # Row space (range of G) and an orthonormal basis of random kernel directions.
    if r > 0:
        U = torch.linalg.svd(G, full_matrices=False)[0][:, :r]
    else:
        U = torch.zeros((n, 0), dtype=torch.float64, device=theta0.device)
    M = min(K, max_directions)
    if M > 0:
        Z = randn(n, M)
        Z = Z - U @ (U.T @ Z)
        Z = Z - U @ (U.T @ Z)
        B = torch.linalg.qr(Z)[0]
    else:
        B = torch.zeros((n, 0), dtype=torch.float64, device=theta0.device)

    # (b) the walk: step h along each kernel direction, retract, PCA of the displacements
    h = STEP * scale
    tol = RETRACT_RTOL * max(1.0, float(torch.linalg.norm(F0)))
    points, displacements = [], []
    for j in range(M):
        pr.cancel.check()
        start = theta0 + h * B[:, j]
        end, info = pr.retract(start, F0, tol)
        disp = end - theta0
        dn = float(torch.linalg.norm(disp))
        info.update({"step": h, "displacement": dn, "kept": dn / h})
        points.append(info)
        if info["converged"]:
            displacements.append(disp)
    n_conv = len(displacements)
    retention_se = None
    if displacements:
        D = torch.stack(displacements)
        sv = torch.linalg.svdvals(D).cpu().numpy()
        pca_dim = int(np.count_nonzero(sv > PCA_THRESHOLD * h))
        kept2 = (D * D).sum(dim=1).cpu().numpy() / (h * h)
        retention = float(K * kept2.mean())
        retention_se = float(K * kept2.std(ddof=1) / math.sqrt(n_conv)) if n_conv > 1 else None
        extents = [float(v / h) for v in sv[:50]]
    else:
        sv = np.zeros(0)
        pca_dim, retention, extents = 0, (0.0 if K == 0 else None), []
    full = M == K and n_conv == M
    if K == 0:
        est, method = 0, "rank(G) = N: F is an immersion here, so the level set is locally the single point θ*"
    elif full:
        est, method = pca_dim, (f"local PCA of {M} retracted points, one per direction of an orthonormal basis of "
                                f"the whole kernel (σ_j(D) > {PCA_THRESHOLD}·h)")
    elif retention is not None:
        se = retention_se or 0.0
        # A few missing dimensions out of many cannot be told from the curvature of the level set at step h:
        # within two standard errors (or 0.5 % of the kernel) of dim ker, report dim ker.
        if K - retention <= max(2.0 * se, 0.005 * K, 0.5):
            est = K
        else:
            est = int(min(K, max(pca_dim, round(retention))))
        method = (f"retention dim ker · mean(kept²) = {retention:.2f} ± {se:.2g} (standard error) from {n_conv} of "
                  f"{K} kernel directions (too many to probe all; within 2 standard errors or 0.5 % of dim ker it "
                  f"is read as dim ker); PCA gives the lower bound {pca_dim}")
    else:
        est, method = 0, "no retraction converged: the estimate is unavailable (0 reported)"

    walk = {
        "step": h,
        "step_rule": f"h = {STEP} · max(1, ‖θ*‖)",
        "directions": M,
        "kernel_directions_total": K,
        "full_kernel_basis": M == K,
        "converged": n_conv,
        "retraction": (f"damped Gauss-Newton (Levenberg-Marquardt, minimum-norm steps) until "
                       f"‖F(θ) − F(θ*)‖ ≤ {RETRACT_RTOL:g} · max(1, ‖F(θ*)‖) = {tol:.3g}, at most "
                       f"{RETRACT_MAX_ITER} iterations"),
        "tolerance": tol,
        "points": points,
    }

    # (c) Claim 1: ‖ΔF‖ against s along null and row-space directions
    h1 = CLAIM1_BASE * scale
    steps = np.array([h1 * c for c in CLAIM1_STEPS])
    floor = 1e3 * spectrum_mod.EPS * max(1.0, float(torch.linalg.norm(F0)))

    def curve(v: torch.Tensor) -> np.ndarray:
        return np.array([float(torch.linalg.norm(pr.F(theta0 + s * v) - F0)) for s in steps])

    null_exp, row_exp, null_curves, row_curves = [], [], [], []
    for j in range(min(CLAIM1_DIRECTIONS, M)):
        pr.cancel.check()
        w = randn(M)
        v = B @ (w / torch.linalg.norm(w))
        c = curve(v)
        null_curves.append(c.tolist())
        null_exp.append(_slope(steps, c, floor))
    if r > 0:
        for j in range(CLAIM1_DIRECTIONS):
            pr.cancel.check()
            v = G @ randn(kd)
            v = v / torch.linalg.norm(v)
            c = curve(v)
            row_curves.append(c.tolist())
            row_exp.append(_slope(steps, c, floor))

    def med(vals):
        vals = [v for v in vals if v is not None]
        return float(np.median(vals)) if vals else None

    ne, re_ = med(null_exp), med(row_exp)
    holds = None
    if ne is not None or re_ is not None:
        holds = ((ne is None or abs(ne - 2) <= CLAIM1_TOLERANCE) and (re_ is None or abs(re_ - 1) <= CLAIM1_TOLERANCE))
    why = []
    if ne is None:
        why.append("the outputs do not change measurably along the null directions tried (above the round-off "
                   f"floor {floor:.2g})" if M else "the kernel is empty")
    if ne is not None and ne < 2 - CLAIM1_TOLERANCE:
        why.append(f"along null directions the outputs change faster than s² (exponent {ne:.2f}): F is not smooth "
                   "at this scale along them (a ReLU-type kink crossed by the step) or the rank is fragile here")
    if ne is not None and ne > 2 + CLAIM1_TOLERANCE:
        why.append(f"along null directions the outputs change slower than s² (exponent {ne:.2f}): the second-order "
                   "term is small along them at this scale and higher orders show")
    if re_ is not None and abs(re_ - 1) > CLAIM1_TOLERANCE:
        why.append(f"along the row space the exponent is {re_:.2f}, not 1: the first-order change is tiny next to "
                   "the second at these step sizes (small singular values of G)")
    if re_ is None:
        why.append("G = 0: there is no row-space direction" if r == 0 else "no row-space change above round-off")
    claim1 = {
        "null_exponent": ne, "row_exponent": re_, "null_exponents": null_exp, "row_exponents": row_exp,
        "steps": steps.tolist(), "null_changes": null_curves, "row_changes": row_curves,
        "holds": holds, "tolerance": CLAIM1_TOLERANCE,
        "rule": ("slope of log ‖F(θ* + s v) − F(θ*)‖ against log s, median over directions; Claim 1 expects 2 "
                 "along ker J and 1 along its row space"),
        "why": "; ".join(why),
    }

    meaning = [f"rank(G) = {r}; kernel dimension N − r = {K} (an upper bound on the level set's dimension)"
               + (f"; generic dimension N − kd = {generic}." if generic is not None else
                  f"; N < kd, so F is never a submersion and r is the local dimension of the image.")]
    if constant:
        meaning.append("The rank is locally constant (every probe at every radius agrees), so by the constant-rank "
                       f"theorem the level set is a manifold of dimension N − r = {K} near θ*.")
    else:
        meaning.append("The rank is NOT locally constant (nearby points have a higher rank): N − r is only an upper "
                       "bound here and the level set can be smaller (seed 003's examples).")
    if K > 0:
        rel = "equals" if est == K else ("is below" if est < K else "exceeds")
        meaning.append(f"Estimated level-set dimension {est} {rel} the kernel bound {K}.")
    for text in meaning[1:]:
        emit(Note(text))
    return LevelSetResult(
        locally_constant_rank=bool(constant), rank_at_theta=r, rank_probes=probes, estimated_dim=int(est),
        estimated_dim_method=method, pca_dim=pca_dim, retention_dim=retention, retention_se=retention_se,
        pca_extents=extents,
        pca_threshold=PCA_THRESHOLD, kernel_dim=K, generic_dim=generic, n_params=n, n_outputs=kd, walk=walk,
        claim1=claim1, meaning=meaning,
    )


def analyse(ctx, report=None) -> LevelSetResult:
    """The level-set stage (analysis.levelset = true)."""
    return probe_level_set(ctx.model, ctx.layout, ctx.x, transform=ctx.transform, rtol=ctx.preset.analysis.rtol,
                           seed=ctx.preset.seed, G=ctx.G, cancel=ctx.cancel, emit=ctx.emit)

