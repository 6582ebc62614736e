"""The Hessian of the total loss beside its Gauss-Newton term, with Claim 3's hypotheses checked.

Definitions (DESIGN §1). L(θ) = Σ_i ℓ(f(θ, x_i), y_i), the SUM over the k training inputs (training
reports the mean, L/k). H = ∇²L = GGN + R with

    GGN = G Q Gᵀ,   Q = blockdiag_i ∇²_F ℓ(F_i, y_i),   R = Σ_{i,c} (∂ℓ/∂F_{i,c}) ∇²_θ F_{i,c},

where F is what G differentiates: the outputs (mse), the logits (bce, ce on logits) or the softmax
probabilities (ce with analysis.ce_output = "probabilities"). Q per loss:

    mse                      Q_i = 2I                       (identity)
    bce on logits            Q_i = diag(s(1 − s)), s = σ(z) (diagonal)
    ce on logits             Q_i = diag(p) − ppᵀ            (full, rank d − 1)
    ce on probabilities      Q_i = diag(y/p²)               (diagonal; ℓ = −Σ_c y_c log p_c)

One rank rule governs G, GGN and H (DESIGN §1, issue 12), stated once in the report (`rank_rule`):

    G     σ(G) > τ_G, τ_G = the spectrum's rule (rtol·σ₁, or σ₁·max(N, kd)·ε when rtol = 0)
    GGN   σ(G·Q^½) > τ_GGN, the same rule on the singular values of G·Q^½. For Q = c·I (mse, c = 2)
          these are √c·σ(G) exactly, so τ_GGN = √c·τ_G and rank(GGN) = rank(G) by construction, on
          every route; otherwise a float64 SVD of G·Q^½ and RankRule.for_matrix with the same rtol.
    H     |λ| > τ_H = max(q_max·τ_G², σ₁(G)²·q_max·N·ε): the λ threshold that corresponds to G's
          (σ ↔ λ = q·σ²), floored at what a float64 dense Hessian resolves (its eigenvalues carry
          absolute errors ~ N·ε·‖H‖, and ‖GGN‖₂ ≤ σ₁²·q_max). With the numpy rule the floor governs;
          with rtol = 1e-3 the rtol threshold does, so rtol moves rank(H) as it moves rank(G).

(q_max = the largest eigenvalue of any Q_i; when σ₁(G)²·q_max = 0 the floor falls back to N·ε.)

Claim 3 up to the residual (Weyl): H = GGN + R, |λ_i(H) − λ_i(GGN)| ≤ ‖R‖₂, so at most rank(GGN)
eigenvalues of H lie outside [−b, b] and at least #{λ(GGN) > 2b} lie above b, for any b ≥ ‖R‖₂; b is
‖R‖₂ unless that is below H's resolution floor (then b = the floor, and the report says so).

Dense route: H column-blocks by vmapped forward-over-reverse Hessian-vector products, then eigvalsh of
H, GGN and R. Lanczos route (large N): extreme eigenvalues by scipy's eigsh on a LinearOperator of
Hessian-vector products, ‖H − GGN‖₂ by eigsh on the residual operator, and a spectral density by
stochastic Lanczos quadrature. Both are checked against the dense route in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.func import grad

from ...schema.events import Note
from .. import progress
from ..cancel import run_cancellable
from ..numerics import spectrum
from ..numerics.lanczos import LANCZOS_TOL, N_EXTREME, Density, lanczos_extremes, lanczos_norm, slq_density
from ..numerics.tolerances import NEAR_FACTOR, RTOLS
from ..problem.models import flat_params
from .claim3 import HessianRule, Weyl, claim3_verdict, hessian_rule, weyl_dense, weyl_extremes
from .curvature import (OutputCurvature, dense_hessian, eigvalsh_cancellable, hvp_fn, output_curvature, sqrt_Q,
                        times_Q, total_loss_fn)

ZERO_RTOL = 1e-8  # ‖∇_Fℓ‖ ≤ ZERO_RTOL · S counts as zero residual (S below)
CRITICAL_RTOL = 1e-8  # ‖∇_θL‖ ≤ CRITICAL_RTOL · σ₁(G) · S counts as a critical point
Q_PD_RTOL = 1e-12  # Q counts as positive definite when its smallest eigenvalue > 1e-12 · q_max
LANCZOS_RESIDUAL_RTOL = 1e-8  # lanczos: H = GGN taken as measured when ‖H − GGN‖₂ ≤ 1e-8 ‖H‖₂

THRESHOLD_RULES = {
    "critical_point": "‖∇θL‖ ≤ 1e-8 · σ₁(G) · S",
    "zero_residual": "‖∇_Fℓ‖ ≤ 1e-8 · S, with S = √(kd) · max(1, max|F|, max|y|)",
    "loss_hessian_positive": "min eig(Q_i) > 1e-12 · max eig(Q_i)",
}


# --------------------------------------------------------------------------- the result


@dataclass
class HessianResult:
    method: str  # dense | lanczos
    reduction: str
    loss: str
    on: str  # what G and Q differentiate: outputs | logits | probabilities
    loss_formula: str
    n_params: int
    n_outputs: int
    eigenvalues: np.ndarray  # dense: all N, descending; lanczos: the extremes found, descending
    ggn_eigenvalues: np.ndarray | None
    residual_eigenvalues: np.ndarray | None
    tolerance: float
    tolerance_rule: str
    rank: int | None
    rank_ggn: int
    rank_residual: int | None
    rank_G: int
    rank_G_resolvable: int  # rank of G counting only σ whose square a float64 Hessian resolves
    rank_method: str
    n_negative: int | None
    lambda_max: float
    lambda_min: float
    grad_norm: float
    grad_norm_via_G: float  # ‖G ∇_Fℓ‖: the same quantity through G (a consistency check)
    output_residual_norm: float
    output_residual_raw_norm: float
    residual_norm: float  # ‖H − GGN‖₂
    hessian_norm: float  # ‖H‖₂
    residual_rel: float | None
    loss_hessian: str  # identity | diagonal | full
    loss_hessian_positive: bool
    q_min: float
    q_max: float
    hypotheses: dict[str, dict[str, Any]]
    claim3: str
    claim3_why: str
    regime: str
    notes: list[str] = field(default_factory=list)
    density: Density | None = None
    matvecs: int = 0
    rank_at_rtol: dict[str, dict[str, Any]] | None = None  # G, GGN, H, H − GGN at each rtol of G's rule
    rank_rule: dict[str, Any] | None = None  # the one rule: G, GGN and H (rule, rtol, scale, threshold, floor)
    weyl: Weyl | None = None  # Claim 3 up to the residual (None: ‖R‖₂ not measured)
    rank_ggn_exact: bool = True  # False: rank(GGN) = rank(G) is a lower bound (a spectrum known at its top)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reduction": self.reduction,
            "loss": self.loss,
            "on": self.on,
            "loss_formula": self.loss_formula,
            "n_params": self.n_params,
            "n_outputs": self.n_outputs,
            "rank": self.rank,
            "rank_ggn": self.rank_ggn,
            "rank_residual": self.rank_residual,
            "rank_G": self.rank_G,
            "rank_G_resolvable": self.rank_G_resolvable,
            "rank_method": self.rank_method,
            "tolerance": self.tolerance,
            "tolerance_rule": self.tolerance_rule,
            "rank_rule": self.rank_rule,
            "rank_ggn_exact": self.rank_ggn_exact,
            "rank_at_rtol": self.rank_at_rtol,
            "eigenvalues": self.eigenvalues,
            "eigenvalues_order": "descending" + ("" if self.method == "dense" else
                                                 " (the largest and smallest found by Lanczos, not all N)"),
            "ggn_eigenvalues": self.ggn_eigenvalues,
            "residual_eigenvalues": self.residual_eigenvalues,
            "n_negative": self.n_negative,
            "lambda_max": self.lambda_max,
            "lambda_min": self.lambda_min,
            "grad_norm": self.grad_norm,
            "grad_norm_via_G": self.grad_norm_via_G,
            "output_residual_norm": self.output_residual_norm,
            "output_residual_raw_norm": self.output_residual_raw_norm,
            "residual_norm": self.residual_norm,
            "hessian_norm": self.hessian_norm,
            "residual_rel": self.residual_rel,
            "loss_hessian": self.loss_hessian,
            "loss_hessian_positive": self.loss_hessian_positive,
            "q_range": [self.q_min, self.q_max],
            "hypotheses": self.hypotheses,
            "claim3": {"verdict": self.claim3, "why": self.claim3_why},
            "weyl": self.weyl.to_dict() if self.weyl is not None else None,
            "regime": self.regime,
            "notes": list(self.notes),
            "density": self.density.to_dict() if self.density is not None else None,
            "matvecs": self.matvecs,
        }


# --------------------------------------------------------------------------- the stage


@dataclass
class _Problem:
    """What both modes share: θ, G and its spectrum, the loss in output space and H's rank rule."""

    theta: torch.Tensor
    n: int
    k: int
    d: int
    G: torch.Tensor
    spec: spectrum.Spectrum
    sigma1: float
    oc: OutputCurvature
    q_min: float
    q_max: float
    q_pos: bool
    rule_H: HessianRule
    L: Callable[[torch.Tensor], torch.Tensor]

    @property
    def kd(self) -> int:
        return self.k * self.d

    def rules_at(self, key: str) -> HessianRule:
        """H's rule at G's rtol `key` (the rank_at_rtol table)."""
        return hessian_rule(spectrum.RankRule.for_matrix(self.sigma1, (self.n, self.kd), float(key)), self.q_max,
                            self.n)


def _problem(ctx) -> _Problem:
    model, layout, x, y = ctx.model, ctx.layout, ctx.x, ctx.y
    theta = flat_params(model).to(torch.float64)
    n = theta.numel()
    G = ctx.G
    if G is None:  # pragma: no cover - the session always computes G first
        from ..routes.jacobian import compute_G

        G, _ = compute_G(model, layout, x, transform=ctx.transform, cancel=ctx.cancel)
    spec = ctx.spectrum if ctx.spectrum is not None else spectrum.spectrum_of(G, rtol=ctx.preset.analysis.rtol)
    sv = spec.singular_values
    oc = output_curvature(model, layout, theta, x, y, ctx.loss, ctx.transform)
    qeig = torch.linalg.eigvalsh(oc.Q)
    q_min, q_max = float(qeig.min()), float(qeig.max())
    return _Problem(theta=theta, n=n, k=x.shape[0], d=ctx.out_dim, G=G, spec=spec,
                    sigma1=float(sv[0]) if len(sv) else 0.0, oc=oc, q_min=q_min, q_max=q_max,
                    q_pos=q_max > 0 and q_min > Q_PD_RTOL * q_max, rule_H=hessian_rule(spec.rule, q_max, n),
                    L=total_loss_fn(model, layout, x, y, ctx.loss))


@dataclass
class _Gradients:
    """∇θL by autograd and through G (∇θL = G ∇_Fℓ, a check), ∂ℓ/∂F, and the two hypotheses they decide."""

    grad_norm: float
    grad_via_G: float
    res_norm_eff: float
    res_norm_raw: float
    S: float  # √(kd) · max(1, max|F|, max|y|): the scale of the relative thresholds
    zero_res: bool
    critical: bool


def _gradients(p: _Problem) -> _Gradients:
    oc = p.oc
    grad_norm = float(torch.linalg.norm(grad(p.L)(p.theta)))
    res_norm_eff = float(torch.linalg.norm(oc.grad_F_effective))
    S = math.sqrt(p.kd) * max(1.0, float(oc.F.abs().max()), float(oc.Y.abs().max()))
    critical = (grad_norm <= CRITICAL_RTOL * p.sigma1 * S if p.sigma1 > 0 else grad_norm <= CRITICAL_RTOL * S)
    return _Gradients(grad_norm=grad_norm, grad_via_G=float(torch.linalg.norm(p.G @ oc.grad_F.reshape(-1))),
                      res_norm_eff=res_norm_eff, res_norm_raw=float(torch.linalg.norm(oc.grad_F)), S=S,
                      zero_res=res_norm_eff <= ZERO_RTOL * S, critical=critical)


@dataclass
class _GGN:
    """rank(GGN) under G's rule, from the singular values of G·Q^½, and GGN's eigenvalues (N, descending)."""

    rule: spectrum.RankRule
    rank: int
    exact: bool
    near: int
    at_rtol: dict[str, int]
    eigenvalues: np.ndarray
    source: str  # how the singular values of G·Q^½ were found (rank_rule.GGN.from)


def _ggn(p: _Problem, mode: str, cancel) -> _GGN:
    """Q = c·I: the singular values of G·Q^½ are √c·σ(G) exactly, so the spectrum's values and its rule
    rescaled by √c decide, and rank(GGN) = rank(G) by construction on every route (the same comparisons
    σ > τ_G). Otherwise a float64 SVD of G·Q^½ (the Gram route with its refinement when the Hessian is
    Lanczos and G·Q^½ is long) and RankRule.for_matrix with the same rtol."""
    spec, q_max, n = p.spec, p.q_max, p.n
    if p.oc.kind == "identity" and q_max > 0:
        return _ggn_scaled(p, cancel)
    GS = times_Q(p.G, sqrt_Q(p.oc.Q, p.oc.kind))
    how_sv = "svd" if mode == "dense" else "auto"
    sv_ggn, sv_route = run_cancellable(partial(spectrum.singular_values, GS, how_sv, None, rtol=spec.rtol), cancel)
    del GS
    rule = spectrum.RankRule.for_matrix(float(sv_ggn[0]) if sv_ggn.size else 0.0, (n, p.kd), spec.rtol)
    s1g = float(sv_ggn[0]) if sv_ggn.size else 0.0
    ev = np.zeros(n)
    m = min(n, sv_ggn.size)
    ev[:m] = np.sort(np.asarray(sv_ggn, dtype=np.float64) ** 2)[::-1][:m]
    return _GGN(rule=rule, rank=rule.count(sv_ggn), exact=True, near=rule.near(sv_ggn),
                at_rtol={key: spectrum.count_above(sv_ggn, float(key) * s1g) for key in RTOLS}, eigenvalues=ev,
                source=f"float64 singular values of G·Q^½ ({sv_route}), the same rule with rtol = {spec.rtol:g}")


def _ggn_scaled(p: _Problem, cancel) -> _GGN:
    """Q = q_max·I (mse): GGN's singular values and rule are G's times √q_max."""
    spec, q_max, n = p.spec, p.q_max, p.n
    sv = spec.singular_values
    sv_full = sv if spec.complete else run_cancellable(lambda: spectrum.svdvals(p.G), cancel)
    source = (f"√{q_max:g}·σ(G): Q = {q_max:g}·I, so the singular values of G·Q^½ are the spectrum's own, and "
              f"τ_GGN = √{q_max:g}·τ_G (rank(GGN) = rank(G) by construction)")
    if not spec.complete:
        source += ("; the spectrum was found only at its top, so GGN's whole spectrum (for the Weyl counts "
                   "and the plot) comes from a float64 SVD of G")
    ev = np.zeros(n)
    m = min(n, sv_full.size)
    ev[:m] = np.sort(q_max * np.asarray(sv_full, dtype=np.float64) ** 2)[::-1][:m]
    return _GGN(rule=spec.rule.rescaled(math.sqrt(q_max)), rank=spec.rank, exact=spec.rank_exact,
                near=spec.near_threshold, at_rtol=dict(spec.rank_at_rtol), eigenvalues=ev, source=source)


def _rank_G_resolvable(p: _Problem) -> int:
    """rank(G) counting only the σ whose q_max·σ² a float64 Hessian resolves."""
    if p.rule_H.floor_applied:
        sv = p.spec.singular_values
        return int(np.count_nonzero(sv**2 * max(p.q_max, 0.0) > p.rule_H.threshold)) if p.q_max > 0 else 0
    return p.spec.rank  # q_max·σ² > q_max·τ_G² ⇔ σ > τ_G: the same comparisons as rank(G)


@dataclass
class _Measured:
    """What the dense or the Lanczos mode measured of H and H − GGN."""

    eigenvalues: np.ndarray
    residual_eigenvalues: np.ndarray | None
    rank: int | None
    rank_res: int | None
    n_negative: int | None
    h_norm: float
    r_norm: float
    lam_max: float
    lam_min: float
    rank_method: str
    rank_at_rtol: dict[str, dict[str, Any]]
    weyl: Weyl | None
    density: Density | None = None
    matvecs: int = 0

    @property
    def residual_rel(self) -> float | None:
        if math.isnan(self.r_norm) or math.isnan(self.h_norm):
            return None
        return (self.r_norm / self.h_norm) if self.h_norm > 0 else (0.0 if self.r_norm == 0 else None)


def _dense(p: _Problem, ggn: _GGN, cancel, notes: list[str], parts: dict[str, tuple[float, float]]) -> _Measured:
    """H by column blocks of Hessian-vector products, GGN = G Q Gᵀ, and eigvalsh of H and H − GGN."""
    n, kd, rule_H = p.n, p.kd, p.rule_H
    meter = progress.of(cancel)
    with meter.span(*parts["columns"]):
        H = dense_hessian(p.L, p.theta, cancel, per_column_bytes=8 * (4 * n + 8 * kd), notes=notes)
    cancel.check()
    with meter.span(*parts["eig_H"]):
        GQ = times_Q(p.G, p.oc.Q)
        GGN = GQ @ p.G.T
        GGN = 0.5 * (GGN + GGN.T)
        del GQ
        R = H - GGN
        del GGN
        ev = eigvalsh_cancellable(H, cancel)
    with meter.span(*parts["eig_residual"]):
        ev_res = eigvalsh_cancellable(R, cancel)
    del H, R
    at: dict[str, dict[str, Any]] = {}
    for key in RTOLS:
        rk = p.rules_at(key)
        at[key] = {"G": p.spec.rank_at_rtol[key], "GGN": ggn.at_rtol[key], "H": rk.count(ev),
                   "residual": rk.count(ev_res), "H_threshold": rk.threshold, "floor_applied": rk.floor_applied}
    r_norm = float(np.abs(ev_res).max()) if ev_res.size else 0.0
    return _Measured(eigenvalues=ev, residual_eigenvalues=ev_res, rank=rule_H.count(ev), rank_res=rule_H.count(ev_res),
                     n_negative=int(np.count_nonzero(ev < -rule_H.threshold)),
                     h_norm=float(np.abs(ev).max()) if ev.size else 0.0, r_norm=r_norm,
                     lam_max=float(ev[0]), lam_min=float(ev[-1]),
                     rank_method="eigenvalues of the dense Hessian (eigvalsh), |λ| > τ_H", rank_at_rtol=at,
                     weyl=weyl_dense(ev, ggn.eigenvalues, r_norm, rule_H.floor, ggn.rank))


def _operators(p: _Problem, cancel) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray],
                                               list[int]]:
    """v ↦ H v and v ↦ (H − GGN) v on numpy vectors, and the count of H products made."""
    hvp = hvp_fn(p.L, p.theta)
    G, Q, k, d, device = p.G, p.oc.Q, p.k, p.d, p.theta.device
    count = [0]

    def ggn_vec(v: torch.Tensor) -> torch.Tensor:
        w = (G.T @ v).reshape(k, d)
        return G @ torch.einsum("kce,ke->kc", Q, w).reshape(-1)

    def mv(v: np.ndarray) -> np.ndarray:
        cancel.check()
        count[0] += 1
        return hvp(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(device)).cpu().numpy()

    def mv_res(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(device)
        return mv(v) - ggn_vec(t).cpu().numpy()

    return mv, mv_res, count


def _lanczos(p: _Problem, ggn: _GGN, zero_res: bool, ctx, notes: list[str], n_extreme: int, slq_vectors: int,
             slq_steps: int, parts: dict[str, tuple[float, float]]) -> _Measured:
    """The extreme eigenvalues of H and ‖H − GGN‖₂ by Lanczos on products, and H's density by SLQ."""
    n, seed = p.n, ctx.preset.seed
    mv, mv_res, count = _operators(p, ctx.cancel)
    meter = progress.of(ctx.cancel)
    with meter.span(*parts["extremes"]):
        top, bottom = lanczos_extremes(mv, n, n_extreme, seed=seed, notes=notes)
    lam_max = float(top[0]) if top.size else float("nan")
    lam_min = float(bottom[0]) if bottom.size else float("nan")
    h_norm = float(np.nanmax(np.abs([lam_max, lam_min])))
    with meter.span(*parts["residual"]):
        r_norm = lanczos_norm(mv_res, n, seed=seed, tol=1e-6, notes=notes)
    if r_norm is None:
        r_norm = float("nan")
    with meter.span(*parts["density"]):
        density = slq_density(mv, n, steps=slq_steps, n_vectors=slq_vectors, seed=seed, cancel=ctx.cancel)
    matvecs = count[0]
    at = {key: {"G": p.spec.rank_at_rtol[key], "GGN": ggn.at_rtol[key], "H": None, "residual": None,
                "H_threshold": p.rules_at(key).threshold, "floor_applied": p.rules_at(key).floor_applied}
          for key in RTOLS}
    if (zero_res and h_norm > 0 and r_norm <= LANCZOS_RESIDUAL_RTOL * h_norm) or (h_norm == 0 and r_norm == 0):
        rank, rank_res = ggn.rank, 0
        rank_method = (f"rank(GGN) (from the singular values of G·Q^{{1/2}}): H = GGN here, since the residual "
                       f"vanishes and ‖H − GGN‖₂ = {r_norm:.3g} was measured by Lanczos")
    else:
        rank, rank_res = None, None
        rank_method = ("not measured: rank(H) needs the whole spectrum (hessian = \"dense\"); Lanczos gives the "
                       "extreme eigenvalues and the density")
    notes.append(f"Lanczos: {len(top)} largest and {len(bottom)} smallest eigenvalues by eigsh on "
                 f"Hessian-vector products (forward-over-reverse), {matvecs} products in all")
    weyl = None
    if not math.isnan(r_norm):
        resolution = max(p.rule_H.floor, LANCZOS_TOL * (h_norm if math.isfinite(h_norm) else 0.0))
        weyl = weyl_extremes(top, bottom, n, ggn.eigenvalues, r_norm, resolution, ggn.rank)
    return _Measured(eigenvalues=np.unique(np.concatenate([top, bottom]))[::-1].copy(), residual_eigenvalues=None,
                     rank=rank, rank_res=rank_res, n_negative=None, h_norm=h_norm, r_norm=r_norm, lam_max=lam_max,
                     lam_min=lam_min, rank_method=rank_method, rank_at_rtol=at, weyl=weyl, density=density,
                     matvecs=matvecs)


def _hypotheses(p: _Problem, g: _Gradients) -> dict[str, dict[str, Any]]:
    return {
        "critical_point": {"holds": bool(g.critical), "value": g.grad_norm,
                           "threshold": CRITICAL_RTOL * (p.sigma1 if p.sigma1 > 0 else 1.0) * g.S,
                           "rule": THRESHOLD_RULES["critical_point"]},
        "zero_residual": {"holds": bool(g.zero_res), "value": g.res_norm_eff, "threshold": ZERO_RTOL * g.S,
                          "rule": THRESHOLD_RULES["zero_residual"]},
        "loss_hessian_positive": {"holds": bool(p.q_pos), "value": p.q_min, "threshold": Q_PD_RTOL * p.q_max,
                                  "rule": THRESHOLD_RULES["loss_hessian_positive"], "kind": p.oc.kind},
    }


def _closing_notes(p: _Problem, ggn: _GGN, near_H: int | None, notes: list[str]) -> None:
    """The regime, the probabilities' tangent residual, and the values rounding decides."""
    n, kd, spec = p.n, p.kd, p.spec
    if spec.regime == "under":
        notes.append(f"Under-parameterised (N = {n} < kd = {kd}): F is never a submersion; rank(G) = {spec.rank} is "
                     f"the local dimension of the image of parameter space in behaviour space R^{kd} (seed 003).")
    if p.oc.on == "probabilities":
        notes.append("ce on probabilities: ∂ℓ/∂p = −y/p; only its part tangent to the simplex (each row minus its "
                     "mean) reaches the Hessian, since Σ_c p_c ≡ 1. output_residual_norm is that part; the raw "
                     "norm is output_residual_raw_norm.")
    near_G = spec.near_threshold
    if near_G or ggn.near or near_H:
        notes.append(f"Near the threshold (within {NEAR_FACTOR:g}× on the σ scale), so rounding decides them: "
                     f"{near_G} singular values of G, {ggn.near} of G·Q^½"
                     + (f", {near_H} eigenvalues of H" if near_H is not None else "") + ".")


def _rank_rule(p: _Problem, ggn: _GGN, near_H: int | None, rank: int | None) -> dict[str, Any]:
    rule_G, rule_H, spec = p.spec.rule, p.rule_H, p.spec
    return {
        "statement": ("One rule decides every rank: G counts σ(G) > τ_G; GGN counts σ(G·Q^½) > τ_GGN under the "
                      "same rule; H and H − GGN count |λ| > τ_H = max(q_max·τ_G², σ₁(G)²·q_max·N·ε), the λ "
                      "threshold that corresponds to G's (σ ↔ λ = q·σ²), floored at what a float64 dense Hessian "
                      "resolves. " + rule_H.why[0].upper() + rule_H.why[1:] + "."),
        "G": {**rule_G.to_dict(), "near": spec.near_threshold, "rank": spec.rank, "rank_exact": spec.rank_exact},
        "GGN": {**ggn.rule.to_dict(), "near": ggn.near, "rank": ggn.rank, "rank_exact": ggn.exact,
                "from": ggn.source},
        "H": {**rule_H.to_dict(), "near": near_H, "rank": rank},
        "rank_at_rtol": ("at each rtol r: G counts σ > r·σ₁(G), GGN σ(G·Q^½) > r·σ₁(G·Q^½), H and H − GGN "
                         "|λ| > max(q_max·(r·σ₁(G))², σ₁(G)²·q_max·N·ε)"),
    }


def _tolerance_rule(p: _Problem) -> str:
    rule_G, rule_H = p.spec.rule, p.rule_H
    return (f"τ_H = max(q_max·τ_G², σ₁(G)²·q_max·N·ε) = max({rule_H.from_G:.3g}, {rule_H.floor:.3g}): "
            + ("the resolution floor" if rule_H.floor_applied else "G's threshold")
            + f" governs (τ_G = {rule_G.threshold:.3g}: {rule_G.rule}; q_max = {p.q_max:.3g})")


def analyse(ctx, report=None, *, mode: str, n_extreme: int = N_EXTREME,
            slq_vectors: int = 4, slq_steps: int = 64) -> HessianResult:
    """The Hessian stage, dense or Lanczos: `mode` is the planner's decision (the session passes
    plan.hessian_mode); this stage never re-chooses it."""
    if mode not in ("dense", "lanczos"):
        raise ValueError(f"hessian mode {mode!r}")
    notes: list[str] = []
    meter = progress.of(ctx.cancel)
    meter.expect(100, "%")  # of the arithmetic, each phase weighed by the planner's estimate of it
    parts = _progress_parts(ctx, mode, slq_vectors * slq_steps)
    with meter.span(*parts["ggn"]):
        p = _problem(ctx)
        g = _gradients(p)
        ctx.cancel.check()
        ggn = _ggn(p, mode, ctx.cancel)
    rank_G_res = _rank_G_resolvable(p)
    ctx.cancel.check()
    if mode == "dense":
        m = _dense(p, ggn, ctx.cancel, notes, parts)
    else:
        m = _lanczos(p, ggn, g.zero_res, ctx, notes, n_extreme, slq_vectors, slq_steps, parts)
    near_H = p.rule_H.near(m.eigenvalues) if m.rank is not None and mode == "dense" else None
    _closing_notes(p, ggn, near_H, notes)
    verdict, why = claim3_verdict(rank=m.rank, rank_G=p.spec.rank, rank_ggn=ggn.rank, rank_res=m.rank_res,
                                  rank_G_res=rank_G_res, critical=g.critical, zero_res=g.zero_res, q_pos=p.q_pos,
                                  oc=p.oc, grad_norm=g.grad_norm, res_norm=g.res_norm_eff, q_min=p.q_min,
                                  q_max=p.q_max, residual_rel=m.residual_rel, d=p.d, k=p.k, weyl=m.weyl,
                                  rank_G_exact=p.spec.rank_exact, rank_ggn_exact=ggn.exact,
                                  floor_applied=p.rule_H.floor_applied)
    result = _result(ctx, mode, p, g, ggn, m, rank_G_res, notes, near_H, verdict, why)
    for text in notes:
        ctx.emit(Note(text))
    return result


def _progress_parts(ctx, mode: str, slq_products: int) -> dict[str, tuple[float, float]]:
    """Each phase's share [lo, hi] of the stage's 100 %, in proportion to its estimated arithmetic (at least
    1 % each, so that every phase moves the bar)."""
    from ...planner import hessian_phases

    k = ctx.x.shape[0]
    cost = hessian_phases(ctx.layout.n_params, k, k * ctx.out_dim, ctx.loss, mode, slq_products)
    weights = {name: max(c, 0.01 * sum(cost.values()), 1e-300) for name, c in cost.items()}
    total, at, parts = sum(weights.values()), 0.0, {}
    for name, w in weights.items():
        parts[name] = (100.0 * at / total, 100.0 * (at + w) / total)
        at += w
    return parts


def _result(ctx, mode: str, p: _Problem, g: _Gradients, ggn: _GGN, m: _Measured, rank_G_res: int,
            notes: list[str], near_H: int | None, verdict: str, why: str) -> HessianResult:
    k, oc = p.k, p.oc
    return HessianResult(
        method=mode,
        reduction=(f"sum over the k = {k} training inputs of the per-input loss (training reports the mean: "
                   f"divide H, its eigenvalues and ∇θL by {k} for the training loss's)"),
        loss=ctx.loss, on=oc.on, loss_formula=oc.formula, n_params=p.n, n_outputs=p.kd,
        eigenvalues=m.eigenvalues, ggn_eigenvalues=ggn.eigenvalues, residual_eigenvalues=m.residual_eigenvalues,
        tolerance=p.rule_H.threshold, tolerance_rule=_tolerance_rule(p), rank=m.rank, rank_ggn=ggn.rank,
        rank_residual=m.rank_res, rank_G=p.spec.rank, rank_G_resolvable=rank_G_res, rank_method=m.rank_method,
        n_negative=m.n_negative, lambda_max=m.lam_max, lambda_min=m.lam_min, grad_norm=g.grad_norm,
        grad_norm_via_G=g.grad_via_G, output_residual_norm=g.res_norm_eff, output_residual_raw_norm=g.res_norm_raw,
        residual_norm=m.r_norm, hessian_norm=m.h_norm, residual_rel=m.residual_rel, loss_hessian=oc.kind,
        loss_hessian_positive=bool(p.q_pos), q_min=p.q_min, q_max=p.q_max, hypotheses=_hypotheses(p, g),
        claim3=verdict, claim3_why=why, regime=p.spec.regime, notes=notes, density=m.density, matvecs=m.matvecs,
        rank_at_rtol=m.rank_at_rtol, rank_rule=_rank_rule(p, ggn, near_H, m.rank), weyl=m.weyl,
        rank_ggn_exact=ggn.exact,
    )


