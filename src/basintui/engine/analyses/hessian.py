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
from typing import Any

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from ..numerics import spectrum
from ..numerics.lanczos import LANCZOS_TOL, N_EXTREME, Density, lanczos_extremes, lanczos_norm, slq_density
from ..numerics.tolerances import EPS, NEAR_FACTOR, RTOLS
from ..cancel import CancelToken, run_cancellable
from ...schema.events import Note
from ..routes.jacobian import outputs_at
from ..problem.models import flat_params
from ..problem.train import per_sample_loss

ZERO_RTOL = 1e-8  # ‖∇_Fℓ‖ ≤ ZERO_RTOL · S counts as zero residual (S below)
CRITICAL_RTOL = 1e-8  # ‖∇_θL‖ ≤ CRITICAL_RTOL · σ₁(G) · S counts as a critical point
Q_PD_RTOL = 1e-12  # Q counts as positive definite when its smallest eigenvalue > 1e-12 · q_max
LANCZOS_RESIDUAL_RTOL = 1e-8  # lanczos: H = GGN taken as measured when ‖H − GGN‖₂ ≤ 1e-8 ‖H‖₂
SMALL_RESIDUAL_REL = 1e-6  # below this ‖H − GGN‖/‖H‖ the why-text calls the residual term small
HVP_CHUNK_BYTES = 128 * 2**20

THRESHOLD_RULES = {
    "critical_point": "‖∇θL‖ ≤ 1e-8 · σ₁(G) · S",
    "zero_residual": "‖∇_Fℓ‖ ≤ 1e-8 · S, with S = √(kd) · max(1, max|F|, max|y|)",
    "loss_hessian_positive": "min eig(Q_i) > 1e-12 · max eig(Q_i)",
}


# --------------------------------------------------------------------------- the loss in output space


@dataclass
class OutputCurvature:
    """∂ℓ/∂F and Q = ∇²_F ℓ per input, on what G differentiates."""

    on: str  # outputs | logits | probabilities
    grad_F: torch.Tensor  # (k, d) ∂ℓ/∂F
    grad_F_effective: torch.Tensor  # the part that can reach H (probabilities: tangent to the simplex)
    Q: torch.Tensor  # (k, d, d)
    kind: str  # identity | diagonal | full
    formula: str
    F: torch.Tensor  # (k, d) the outputs F
    Y: torch.Tensor  # (k, d) targets as a dense array (one-hot for hard classes)


def _dense_targets(y: torch.Tensor, d: int) -> torch.Tensor:
    if y.dtype in (torch.int64, torch.int32):
        return torch.nn.functional.one_hot(y.long(), d).to(torch.float64)
    return y.to(torch.float64).reshape(y.shape[0], -1)


def output_curvature(model, layout, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss: str,
                     transform=None) -> OutputCurvature:
    with torch.no_grad():
        z = outputs_at(model, layout, theta, x)
    k, d = z.shape
    Y = _dense_targets(y, d)
    eye = torch.eye(d, dtype=torch.float64, device=z.device)
    if loss == "mse":
        g = 2.0 * (z - Y)
        Q = 2.0 * eye.expand(k, d, d).clone()
        return OutputCurvature("outputs", g, g, Q, "identity", "ℓ = ‖f − y‖², Q = 2I", z, Y)
    if loss == "bce":
        s = torch.sigmoid(z)
        g = s - Y
        Q = torch.diag_embed(s * (1 - s))
        return OutputCurvature("logits", g, g, Q, "diagonal", "bce on logits z, Q = diag(σ(z)(1 − σ(z)))", z, Y)
    if loss != "ce":
        raise ValueError(f"unknown loss {loss!r}")
    p = torch.softmax(z, dim=1)
    if transform is None:
        g = p - Y
        Q = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        return OutputCurvature("logits", g, g, Q, "full", "ce on logits z, Q = diag(p) − ppᵀ (rank d − 1)", z, Y)
    # ce on probabilities: ℓ(p) = −Σ_c y_c log p_c. Since Σ_c p_c ≡ 1, Σ_c ∇²_θ p_c = 0, so only the part of
    # ∂ℓ/∂p tangent to the simplex (each row minus its mean) reaches the residual term.
    g = -Y / p
    geff = g - g.mean(dim=1, keepdim=True)
    Q = torch.diag_embed(Y / p**2)
    return OutputCurvature("probabilities", g, geff, Q, "diagonal",
                           "ce on probabilities p = softmax(z): ℓ = −Σ y log p, Q = diag(y/p²)", p, Y)


def total_loss_fn(model, layout, x: torch.Tensor, y: torch.Tensor, loss: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """θ ↦ L(θ) = Σ_i ℓ(f(θ, x_i), y_i): the SUM over inputs (the training loss is this divided by k)."""

    def L(theta: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(outputs_at(model, layout, theta, x), y, loss).sum()

    return L


def hvp_fn(L, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ H v by forward-over-reverse (jvp of grad): the memory-lean Hessian-vector product."""
    g = grad(L)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(g, (theta,), (v,))[1]

    return hvp


def dense_hessian(L, theta: torch.Tensor, cancel: CancelToken | None = None, chunk: int | None = None,
                  per_column_bytes: int | None = None, notes: list[str] | None = None) -> torch.Tensor:
    """∇²L as an N × N float64 matrix, a block of columns (vmapped HVPs on unit vectors) at a time.

    Where vmap cannot batch the products (an operator without a batching rule, an autograd.Function
    without vmap support: torch raises RuntimeError or its subclass NotImplementedError), the columns
    are computed one at a time and `notes` says so. Running out of memory is not such a case: it
    propagates (torch.OutOfMemoryError), as does any error of the one-column product itself."""
    n = theta.numel()
    hvp = hvp_fn(L, theta)
    if chunk is None:
        per = per_column_bytes or 64 * n
        chunk = int(max(1, min(n, 256, HVP_CHUNK_BYTES // max(per, 1))))
    H = torch.empty((n, n), dtype=torch.float64, device=theta.device)
    batched = vmap(hvp)
    use_vmap = True
    for i0 in range(0, n, chunk):
        if cancel is not None:
            cancel.check()
        b = min(chunk, n - i0)
        E = torch.zeros((b, n), dtype=torch.float64, device=theta.device)
        E[torch.arange(b), torch.arange(i0, i0 + b)] = 1.0
        if use_vmap:
            try:
                H[i0: i0 + b] = batched(E)
                continue
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as exc:  # vmap cannot batch these products: one column at a time
                use_vmap = False
                if notes is not None:
                    notes.append(f"Hessian columns one at a time: vmap could not batch the Hessian-vector "
                                 f"products ({type(exc).__name__}: {_first_line(exc)})")
        for j in range(b):
            H[i0 + j] = hvp(E[j])
    return 0.5 * (H + H.T)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else ""


def eigvalsh_cancellable(A: torch.Tensor, cancel: CancelToken | None = None, poll_s: float = 0.2) -> np.ndarray:
    """Eigenvalues of a symmetric matrix, descending, answering a cancel while LAPACK runs."""
    a = A.detach().cpu().numpy()
    if cancel is None or a.shape[0] <= 500:
        return np.linalg.eigvalsh(a)[::-1].copy()
    return run_cancellable(lambda: np.linalg.eigvalsh(a), cancel, poll_s)[::-1].copy()


def sqrt_Q(Q: torch.Tensor, kind: str | None = None) -> torch.Tensor:
    """A square root of each Q_i (k × d × d), so that G·Q^½ has GGN's eigenvalues as its squared singular
    values. Diagonal Q: the exact square root of the diagonal. Otherwise by eigh, with eigenvalues at or below
    d·ε·max eig(Q_i) (what eigh cannot tell from zero) set to zero: the square root would turn a rounding
    error of 1e-17 into 3e-9 and give softmax's null direction a singular value far above G's tolerance."""
    if kind in ("identity", "diagonal"):
        return torch.diag_embed(torch.sqrt(torch.clamp(torch.diagonal(Q, dim1=1, dim2=2), min=0.0)))
    w, V = torch.linalg.eigh(Q)
    floor = Q.shape[-1] * EPS * torch.clamp(w.abs().amax(dim=1, keepdim=True), min=0.0)
    w = torch.where(w > floor, w, torch.zeros_like(w))
    return V @ torch.diag_embed(torch.sqrt(w)) @ V.transpose(1, 2)


def times_Q(G: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """G · blockdiag(Q) for G of shape (N, k·d) with columns i·d + c."""
    n = G.shape[0]
    k, d, _ = Q.shape
    return torch.einsum("nkc,kce->nke", G.reshape(n, k, d), Q).reshape(n, k * d)


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


def resolution_floor(sigma1: float, q_max: float, n_params: int) -> float:
    """The smallest |λ| a float64 dense Hessian resolves: σ₁(G)²·q_max (≥ ‖GGN‖₂) times N·ε; N·ε when G = 0."""
    scale = sigma1 * sigma1 * max(q_max, 0.0)
    return scale * n_params * EPS if scale > 0 else n_params * EPS


@dataclass(frozen=True)
class HessianRule:
    """H's threshold under G's rule: τ_H = max(q_max·τ_G², floor), σ ↔ λ = q·σ² (DESIGN §1)."""

    rtol: float
    scale: float  # σ₁(G)²·q_max: the λ that corresponds to σ₁(G)
    from_G: float  # q_max·τ_G²: the λ that corresponds to G's threshold
    floor: float  # σ₁(G)²·q_max·N·ε: what a float64 dense Hessian resolves
    n_params: int

    @property
    def threshold(self) -> float:
        return max(self.from_G, self.floor)

    @property
    def floor_applied(self) -> bool:
        return self.floor > self.from_G

    def count(self, eigenvalues: np.ndarray) -> int:
        return int(np.count_nonzero(np.abs(np.asarray(eigenvalues, dtype=np.float64)) > self.threshold))

    def near(self, eigenvalues: np.ndarray) -> int:
        """|λ| within NEAR_FACTOR of the threshold on the σ scale (√|λ| against √τ_H)."""
        return spectrum.near_threshold(np.sqrt(np.abs(np.asarray(eigenvalues, dtype=np.float64))),
                                       math.sqrt(self.threshold))

    @property
    def why(self) -> str:
        if self.floor_applied:
            return (f"the resolution floor governs: q_max·τ_G² = {self.from_G:.3g} lies below what a float64 "
                    f"Hessian resolves (its eigenvalues carry absolute errors ~ N·ε·‖H‖), so H is counted at "
                    f"σ₁(G)²·q_max·N·ε = {self.floor:.3g}; rank(G) is compared with rank_G_resolvable, the "
                    "singular values of G whose q_max·σ² clear it")
        return (f"G's threshold governs: q_max·τ_G² = {self.from_G:.3g} lies above the resolution floor "
                f"σ₁(G)²·q_max·N·ε = {self.floor:.3g}, so H is counted where G is")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "|λ| > max(q_max · τ_G², σ₁(G)² · q_max · N · ε)  (σ ↔ λ = q·σ²)", "rtol": self.rtol,
                "scale": self.scale, "threshold": self.threshold, "from_G": self.from_G, "floor": self.floor,
                "floor_applied": self.floor_applied,
                "governed_by": "resolution floor" if self.floor_applied else "G's threshold", "why": self.why}


def hessian_rule(rule_G: spectrum.RankRule, q_max: float, n_params: int) -> HessianRule:
    q = max(q_max, 0.0)
    return HessianRule(rtol=rule_G.rtol, scale=rule_G.scale**2 * q, from_G=q * rule_G.threshold**2,
                       floor=resolution_floor(rule_G.scale, q, n_params), n_params=n_params)


@dataclass(frozen=True)
class Weyl:
    """Claim 3 up to the residual: H's eigenvalues against the band [−b, b], b = max(‖R‖₂, resolution)."""

    residual_norm: float  # ‖R‖₂ = ‖H − GGN‖₂
    band: float  # b: ‖R‖₂, or the resolution when ‖R‖₂ is below it
    resolution: float
    above_band: int  # #{λ(H) > b}
    below_band: int  # #{λ(H) < −b}
    outside_band_exact: bool  # False: Lanczos saw only the extremes and the count is a lower bound
    ggn_above_2r: int  # #{λ(GGN) > 2b}
    rank_ggn: int
    n_eigenvalues_H: int  # how many of H's eigenvalues the counts come from
    n_eigenvalues_H_total: int  # N
    n_eigenvalues_GGN: int
    residual_from: str

    @property
    def outside_band(self) -> int:
        return self.above_band + self.below_band

    @property
    def band_widened(self) -> bool:
        return self.band > self.residual_norm

    @property
    def agrees(self) -> bool:
        """Both Weyl counts equal rank(GGN), on an exact count: H has exactly rank(GGN) eigenvalues that the
        residual cannot explain."""
        return self.outside_band_exact and self.outside_band == self.ggn_above_2r == self.rank_ggn

    @property
    def hidden(self) -> int:
        """GGN's eigenvalues (counted in its rank) at or below 2b: the residual's scale can hide them."""
        return max(self.rank_ggn - self.ggn_above_2r, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"residual_norm": self.residual_norm, "band": self.band, "band_widened": self.band_widened,
                "resolution": self.resolution, "outside_band": self.outside_band,
                "outside_band_exact": self.outside_band_exact, "above_band": self.above_band,
                "below_band": self.below_band, "ggn_above_2r": self.ggn_above_2r, "rank_ggn": self.rank_ggn,
                "hidden_by_residual": self.hidden, "agrees": self.agrees,
                "n_eigenvalues_H": self.n_eigenvalues_H, "n_eigenvalues_H_total": self.n_eigenvalues_H_total,
                "n_eigenvalues_GGN": self.n_eigenvalues_GGN, "residual_norm_from": self.residual_from,
                "rule": ("Weyl: |λ_i(H) − λ_i(GGN)| ≤ ‖R‖₂, so at most rank(GGN) eigenvalues of H lie outside "
                         "[−b, b] and at least #{λ(GGN) > 2b} lie above b, b = ‖R‖₂ (or the resolution floor "
                         "when ‖R‖₂ is below it); both counted with a margin of one resolution δ (|λ(H)| > b + δ, "
                         "λ(GGN) > 2b + δ), so an eigenvalue that rounding puts at the band's edge is not "
                         "counted outside it"),
                "statement": self.statement}

    @property
    def statement(self) -> str:
        band = (f"b = ‖R‖₂ = {self.residual_norm:.3g}" if not self.band_widened else
                f"b = {self.band:.3g} (‖R‖₂ = {self.residual_norm:.3g} is below what the eigenvalues resolve, "
                "so the band is widened to that)")
        out = (f"{self.outside_band}" if self.outside_band_exact else
               f"at least {self.outside_band} (a lower bound: only the extreme eigenvalues are known and the "
               "last found at one end still lies outside the band)")
        return (f"With {band}: {out} of H's eigenvalues lie outside [−b, b] (Weyl allows at most rank(GGN) = "
                f"{self.rank_ggn}), and {self.ggn_above_2r} of GGN's lie above 2b (so at least that many of H's "
                "lie above b).")


def weyl_dense(ev: np.ndarray, ev_ggn: np.ndarray, r_norm: float, resolution: float, rank_ggn: int) -> Weyl:
    """Counts with a margin of one resolution: H's computed eigenvalues carry errors of about that size, so one
    within it of ±b (e.g. where H = R in GGN's null space, λ(H) = ±‖R‖₂ exactly) is not counted outside."""
    b = max(r_norm, resolution)
    edge = b + resolution
    return Weyl(residual_norm=r_norm, band=b, resolution=resolution,
                above_band=int(np.count_nonzero(ev > edge)), below_band=int(np.count_nonzero(ev < -edge)),
                outside_band_exact=True, ggn_above_2r=int(np.count_nonzero(ev_ggn > 2 * b + resolution)),
                rank_ggn=rank_ggn,
                n_eigenvalues_H=int(ev.size), n_eigenvalues_H_total=int(ev.size),
                n_eigenvalues_GGN=int(ev_ggn.size), residual_from="eigvalsh of the dense H − GGN")


def weyl_extremes(top: np.ndarray, bottom: np.ndarray, n: int, ev_ggn: np.ndarray, r_norm: float,
                  resolution: float, rank_ggn: int) -> Weyl:
    """The counts from the largest (`top`) and smallest (`bottom`) eigenvalues Lanczos found. Every
    eigenvalue not found lies between max(bottom) and min(top): the count is exact when that interval is
    inside the band (a found eigenvalue inside it at each end), and a lower bound otherwise."""
    b = max(r_norm, resolution)
    edge = b + resolution  # the same margin as weyl_dense
    found = np.unique(np.concatenate([top, bottom]))
    exact = found.size >= n or (top.size > 0 and bottom.size > 0 and float(top.min()) <= edge
                                and float(bottom.max()) >= -edge)
    return Weyl(residual_norm=r_norm, band=b, resolution=resolution,
                above_band=int(np.count_nonzero(found > edge)), below_band=int(np.count_nonzero(found < -edge)),
                outside_band_exact=bool(exact), ggn_above_2r=int(np.count_nonzero(ev_ggn > 2 * b + resolution)),
                rank_ggn=rank_ggn, n_eigenvalues_H=int(found.size), n_eigenvalues_H_total=n,
                n_eigenvalues_GGN=int(ev_ggn.size), residual_from="Lanczos (eigsh) on H − GGN as an operator")


# --------------------------------------------------------------------------- the stage


def analyse(ctx, report=None, *, mode: str, n_extreme: int = N_EXTREME,
            slq_vectors: int = 4, slq_steps: int = 64) -> HessianResult:
    """The Hessian stage, dense or Lanczos: `mode` is the planner's decision (the session passes
    plan.hessian_mode); this stage never re-chooses it."""
    preset = ctx.preset
    model, layout, x, y = ctx.model, ctx.layout, ctx.x, ctx.y
    theta = flat_params(model).to(torch.float64)
    n = theta.numel()
    k, d = x.shape[0], ctx.out_dim
    kd = k * d
    notes: list[str] = []
    if mode not in ("dense", "lanczos"):
        raise ValueError(f"hessian mode {mode!r}")

    G = ctx.G
    if G is None:  # pragma: no cover - the session always computes G first
        from ..routes.jacobian import compute_G

        G, _ = compute_G(model, layout, x, transform=ctx.transform, cancel=ctx.cancel)
    spec = ctx.spectrum if ctx.spectrum is not None else spectrum.spectrum_of(G, rtol=preset.analysis.rtol)
    sv = spec.singular_values
    sigma1 = float(sv[0]) if len(sv) else 0.0
    rtol = spec.rtol
    rule_G = spec.rule

    oc = output_curvature(model, layout, theta, x, y, ctx.loss, ctx.transform)
    qeig = torch.linalg.eigvalsh(oc.Q)
    q_min, q_max = float(qeig.min()), float(qeig.max())
    q_pos = q_max > 0 and q_min > Q_PD_RTOL * q_max
    rule_H = hessian_rule(rule_G, q_max, n)
    tol = rule_H.threshold

    # Gradients: by autograd on L, and through G (∇θL = G ∇_Fℓ) as a check.
    L = total_loss_fn(model, layout, x, y, ctx.loss)
    g_theta = grad(L)(theta)
    grad_norm = float(torch.linalg.norm(g_theta))
    grad_via_G = float(torch.linalg.norm(G @ oc.grad_F.reshape(-1)))
    res_norm_eff = float(torch.linalg.norm(oc.grad_F_effective))
    res_norm_raw = float(torch.linalg.norm(oc.grad_F))
    S = math.sqrt(kd) * max(1.0, float(oc.F.abs().max()), float(oc.Y.abs().max()))
    zero_res = res_norm_eff <= ZERO_RTOL * S
    critical = grad_norm <= CRITICAL_RTOL * sigma1 * S if sigma1 > 0 else grad_norm <= CRITICAL_RTOL * S
    ctx.cancel.check()

    # rank(GGN): the singular values of G·Q^½ under G's rule. Q = c·I: they are √c·σ(G) exactly, so the
    # spectrum's values and its rule rescaled by √c decide, and rank(GGN) = rank(G) by construction on every
    # route (the same comparisons σ > τ_G). Otherwise a float64 SVD of G·Q^½ (the Gram route with its
    # refinement when the Hessian is Lanczos and G·Q^½ is long) and RankRule.for_matrix with the same rtol.
    if oc.kind == "identity" and q_max > 0:
        root = math.sqrt(q_max)
        rule_ggn = rule_G.rescaled(root)
        rank_ggn, rank_ggn_exact = spec.rank, spec.rank_exact
        near_ggn = spec.near_threshold
        ggn_at_rtol = dict(spec.rank_at_rtol)
        sv_full = sv if spec.complete else run_cancellable(lambda: spectrum.svdvals(G), ctx.cancel)
        sv_ggn = root * sv_full
        ggn_from = (f"√{q_max:g}·σ(G): Q = {q_max:g}·I, so the singular values of G·Q^½ are the spectrum's own, and "
                    f"τ_GGN = √{q_max:g}·τ_G (rank(GGN) = rank(G) by construction)")
        if not spec.complete:
            ggn_from += ("; the spectrum was found only at its top, so GGN's whole spectrum (for the Weyl counts "
                         "and the plot) comes from a float64 SVD of G")
    else:
        GS = times_Q(G, sqrt_Q(oc.Q, oc.kind))
        how_sv = "svd" if mode == "dense" else "auto"
        sv_ggn, sv_route = run_cancellable(lambda: spectrum.singular_values(GS, how_sv, None, rtol=rtol), ctx.cancel)
        del GS
        rule_ggn = spectrum.RankRule.for_matrix(float(sv_ggn[0]) if sv_ggn.size else 0.0, (n, kd), rtol)
        rank_ggn, rank_ggn_exact = rule_ggn.count(sv_ggn), True
        near_ggn = rule_ggn.near(sv_ggn)
        s1g = float(sv_ggn[0]) if sv_ggn.size else 0.0
        ggn_at_rtol = {key: spectrum.count_above(sv_ggn, float(key) * s1g) for key in RTOLS}
        ggn_from = f"float64 singular values of G·Q^½ ({sv_route}), the same rule with rtol = {rtol:g}"
    ev_ggn = np.zeros(n)
    m_ggn = min(n, sv_ggn.size)
    ev_ggn[:m_ggn] = np.sort(np.asarray(sv_ggn, dtype=np.float64) ** 2)[::-1][:m_ggn]
    if oc.kind == "identity" and q_max > 0:
        ev_ggn[:m_ggn] = np.sort(q_max * np.asarray(sv_full, dtype=np.float64) ** 2)[::-1][:m_ggn]
    if rule_H.floor_applied:
        rank_G_res = int(np.count_nonzero(sv**2 * max(q_max, 0.0) > tol)) if q_max > 0 else 0
    else:
        rank_G_res = spec.rank  # q_max·σ² > q_max·τ_G² ⇔ σ > τ_G: the same comparisons as rank(G)
    ctx.cancel.check()

    Qfull = oc.Q

    def ggn_vec(v: torch.Tensor) -> torch.Tensor:
        w = (G.T @ v).reshape(k, d)
        return G @ torch.einsum("kce,ke->kc", Qfull, w).reshape(-1)

    def rules_at(key: str) -> HessianRule:
        return hessian_rule(spectrum.RankRule.for_matrix(sigma1, (n, kd), float(key)), q_max, n)

    density = None
    matvecs = 0
    if mode == "dense":
        H = dense_hessian(L, theta, ctx.cancel, per_column_bytes=8 * (4 * n + 8 * kd), notes=notes)
        ctx.cancel.check()
        GQ = times_Q(G, oc.Q)
        GGN = GQ @ G.T
        GGN = 0.5 * (GGN + GGN.T)
        del GQ
        R = H - GGN
        del GGN
        ev = eigvalsh_cancellable(H, ctx.cancel)
        ev_res = eigvalsh_cancellable(R, ctx.cancel)
        del H, R
        rank_at_rtol: dict[str, dict[str, Any]] | None = {}
        for key in RTOLS:
            rk = rules_at(key)
            rank_at_rtol[key] = {"G": spec.rank_at_rtol[key], "GGN": ggn_at_rtol[key], "H": rk.count(ev),
                                 "residual": rk.count(ev_res), "H_threshold": rk.threshold,
                                 "floor_applied": rk.floor_applied}
        rank: int | None = rule_H.count(ev)
        rank_res: int | None = rule_H.count(ev_res)
        n_neg: int | None = int(np.count_nonzero(ev < -tol))
        h_norm = float(np.abs(ev).max()) if ev.size else 0.0
        r_norm = float(np.abs(ev_res).max()) if ev_res.size else 0.0
        lam_max, lam_min = float(ev[0]), float(ev[-1])
        rank_method = "eigenvalues of the dense Hessian (eigvalsh), |λ| > τ_H"
        eigenvalues, res_eigs = ev, ev_res
        weyl = weyl_dense(ev, ev_ggn, r_norm, rule_H.floor, rank_ggn)
    else:
        hvp = hvp_fn(L, theta)
        count = [0]

        def mv(v: np.ndarray) -> np.ndarray:
            ctx.cancel.check()
            count[0] += 1
            return hvp(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(theta.device)).cpu().numpy()

        def mv_res(v: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(theta.device)
            return mv(v) - ggn_vec(t).cpu().numpy()

        top, bottom = lanczos_extremes(mv, n, n_extreme, seed=preset.seed, notes=notes)
        lam_max = float(top[0]) if top.size else float("nan")
        lam_min = float(bottom[0]) if bottom.size else float("nan")
        h_norm = float(np.nanmax(np.abs([lam_max, lam_min])))
        r_norm = lanczos_norm(mv_res, n, seed=preset.seed, tol=1e-6, notes=notes)
        if r_norm is None:
            r_norm = float("nan")
        density = slq_density(mv, n, steps=slq_steps, n_vectors=slq_vectors, seed=preset.seed, cancel=ctx.cancel)
        matvecs = count[0]
        eigenvalues = np.unique(np.concatenate([top, bottom]))[::-1].copy()
        res_eigs = None
        n_neg = None
        rank_at_rtol = {key: {"G": spec.rank_at_rtol[key], "GGN": ggn_at_rtol[key], "H": None, "residual": None,
                              "H_threshold": rules_at(key).threshold, "floor_applied": rules_at(key).floor_applied}
                        for key in RTOLS}
        if (zero_res and h_norm > 0 and r_norm <= LANCZOS_RESIDUAL_RTOL * h_norm) or (h_norm == 0 and r_norm == 0):
            rank, rank_res = rank_ggn, 0
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
            resolution = max(rule_H.floor, LANCZOS_TOL * (h_norm if math.isfinite(h_norm) else 0.0))
            weyl = weyl_extremes(top, bottom, n, ev_ggn, r_norm, resolution, rank_ggn)

    if math.isnan(r_norm) or math.isnan(h_norm):
        residual_rel = None
    else:
        residual_rel = (r_norm / h_norm) if h_norm > 0 else (0.0 if r_norm == 0 else None)
    hypotheses = {
        "critical_point": {"holds": bool(critical), "value": grad_norm,
                           "threshold": CRITICAL_RTOL * (sigma1 if sigma1 > 0 else 1.0) * S,
                           "rule": THRESHOLD_RULES["critical_point"]},
        "zero_residual": {"holds": bool(zero_res), "value": res_norm_eff, "threshold": ZERO_RTOL * S,
                          "rule": THRESHOLD_RULES["zero_residual"]},
        "loss_hessian_positive": {"holds": bool(q_pos), "value": q_min, "threshold": Q_PD_RTOL * q_max,
                                  "rule": THRESHOLD_RULES["loss_hessian_positive"], "kind": oc.kind},
    }
    if spec.regime == "under":
        notes.append(f"Under-parameterised (N = {n} < kd = {kd}): F is never a submersion; rank(G) = {spec.rank} is "
                     f"the local dimension of the image of parameter space in behaviour space R^{kd} (seed 003).")
    if oc.on == "probabilities":
        notes.append("ce on probabilities: ∂ℓ/∂p = −y/p; only its part tangent to the simplex (each row minus its "
                     "mean) reaches the Hessian, since Σ_c p_c ≡ 1. output_residual_norm is that part; the raw "
                     "norm is output_residual_raw_norm.")
    near_H = rule_H.near(eigenvalues) if rank is not None and mode == "dense" else None
    near_G = spec.near_threshold
    if near_G or near_ggn or near_H:
        notes.append(f"Near the threshold (within {NEAR_FACTOR:g}× on the σ scale), so rounding decides them: "
                     f"{near_G} singular values of G, {near_ggn} of G·Q^½"
                     + (f", {near_H} eigenvalues of H" if near_H is not None else "") + ".")
    rank_rule = {
        "statement": ("One rule decides every rank: G counts σ(G) > τ_G; GGN counts σ(G·Q^½) > τ_GGN under the "
                      "same rule; H and H − GGN count |λ| > τ_H = max(q_max·τ_G², σ₁(G)²·q_max·N·ε), the λ "
                      "threshold that corresponds to G's (σ ↔ λ = q·σ²), floored at what a float64 dense Hessian "
                      "resolves. " + rule_H.why[0].upper() + rule_H.why[1:] + "."),
        "G": {**rule_G.to_dict(), "near": near_G, "rank": spec.rank, "rank_exact": spec.rank_exact},
        "GGN": {**rule_ggn.to_dict(), "near": near_ggn, "rank": rank_ggn, "rank_exact": rank_ggn_exact,
                "from": ggn_from},
        "H": {**rule_H.to_dict(), "near": near_H, "rank": rank},
        "rank_at_rtol": ("at each rtol r: G counts σ > r·σ₁(G), GGN σ(G·Q^½) > r·σ₁(G·Q^½), H and H − GGN "
                         "|λ| > max(q_max·(r·σ₁(G))², σ₁(G)²·q_max·N·ε)"),
    }
    tolerance_rule = (f"τ_H = max(q_max·τ_G², σ₁(G)²·q_max·N·ε) = max({rule_H.from_G:.3g}, {rule_H.floor:.3g}): "
                      + ("the resolution floor" if rule_H.floor_applied else "G's threshold")
                      + f" governs (τ_G = {rule_G.threshold:.3g}: {rule_G.rule}; q_max = {q_max:.3g})")

    verdict, why = claim3_verdict(rank=rank, rank_G=spec.rank, rank_ggn=rank_ggn, rank_res=rank_res,
                                  rank_G_res=rank_G_res, critical=critical, zero_res=zero_res, q_pos=q_pos,
                                  oc=oc, grad_norm=grad_norm, res_norm=res_norm_eff, q_min=q_min, q_max=q_max,
                                  residual_rel=residual_rel, d=d, k=k, weyl=weyl, rank_G_exact=spec.rank_exact,
                                  rank_ggn_exact=rank_ggn_exact, floor_applied=rule_H.floor_applied)
    result = HessianResult(
        method=mode,
        reduction=(f"sum over the k = {k} training inputs of the per-input loss (training reports the mean: "
                   f"divide H, its eigenvalues and ∇θL by {k} for the training loss's)"),
        loss=ctx.loss, on=oc.on, loss_formula=oc.formula, n_params=n, n_outputs=kd,
        eigenvalues=eigenvalues, ggn_eigenvalues=ev_ggn, residual_eigenvalues=res_eigs,
        tolerance=tol, tolerance_rule=tolerance_rule, rank=rank, rank_ggn=rank_ggn, rank_residual=rank_res,
        rank_G=spec.rank, rank_G_resolvable=rank_G_res, rank_method=rank_method, n_negative=n_neg,
        lambda_max=lam_max, lambda_min=lam_min, grad_norm=grad_norm, grad_norm_via_G=grad_via_G,
        output_residual_norm=res_norm_eff, output_residual_raw_norm=res_norm_raw, residual_norm=r_norm,
        hessian_norm=h_norm, residual_rel=residual_rel, loss_hessian=oc.kind, loss_hessian_positive=bool(q_pos),
        q_min=q_min, q_max=q_max, hypotheses=hypotheses, claim3=verdict, claim3_why=why, regime=spec.regime,
        notes=notes, density=density, matvecs=matvecs, rank_at_rtol=rank_at_rtol, rank_rule=rank_rule,
        weyl=weyl, rank_ggn_exact=rank_ggn_exact,
    )
    for text in notes:
        ctx.emit(Note(text))
    return result


def claim3_verdict(*, rank, rank_G, rank_ggn, rank_res, rank_G_res, critical, zero_res, q_pos, oc, grad_norm,
                   res_norm, q_min, q_max, residual_rel, d, k, weyl: Weyl | None = None, rank_G_exact: bool = True,
                   rank_ggn_exact: bool = True, floor_applied: bool = True) -> tuple[str, str]:
    """Claim 3 (rank H = rank G at a minimum): holds | holds_up_to_residual | fails | not_applicable, and why."""
    ge = "" if rank_G_exact else "≥ "
    measured = (f"Measured: rank(H) = {rank if rank is not None else 'not measured'}, rank(G) = {ge}{rank_G}, "
                f"rank(GGN) = {'' if rank_ggn_exact else '≥ '}{rank_ggn}"
                + (f", rank(H − GGN) = {rank_res}" if rank_res is not None else "")
                + (f", ‖H − GGN‖/‖H‖ = {residual_rel:.3g}" if residual_rel is not None else "") + ".")
    missing = []
    if not critical:
        missing.append(f"θ is not a critical point (‖∇θL‖ = {grad_norm:.3g})")
    if not zero_res and residual_rel is not None and residual_rel < SMALL_RESIDUAL_REL:
        missing.append(f"the residual is not zero (‖∇_Fℓ‖ = {res_norm:.3g}), though the residual term it weights "
                       f"is small here (‖H − GGN‖/‖H‖ = {residual_rel:.2g}): ∇_Fℓ is almost orthogonal to the "
                       "second derivatives of F (e.g. the part of the targets no parameter can reach), and what is "
                       "left of the term still has rank " + (str(rank_res) if rank_res is not None else "unknown")
                       + " at the tolerance")
    elif not zero_res:
        extra = ""
        if critical:
            extra = (" — a critical point with a non-zero residual: ∇θL = G·∇_Fℓ vanishes because ∇_Fℓ lies in the "
                     "null space of G, yet the residual term Σ (∂ℓ/∂f) ∇²f stays")
        missing.append(f"the residual is not zero (‖∇_Fℓ‖ = {res_norm:.3g}), so H = GGN + a residual term that does "
                       f"not vanish{extra}")
    q_missing = []
    if not q_pos:
        if oc.kind == "full":
            q_missing.append(f"the loss Hessian in output space is not diagonal: ce on logits has Q_i = diag(p) − ppᵀ, "
                             f"singular (rank d − 1 = {d - 1} per input), so rank(GGN) = {rank_ggn} can fall below "
                             f"rank(G) = {rank_G} (bound k(d − 1) = {k * (d - 1)})")
        else:
            q_missing.append(f"the loss Hessian in output space is not positive definite (smallest eigenvalue "
                             f"{q_min:.3g} of at most {q_max:.3g}), so GGN loses rank where Q does")
    missing += q_missing
    if missing:
        head = "Claim 3's hypotheses do not hold: " + "; ".join(missing) + ". "
        if weyl is None:
            return "not_applicable", head + measured
        up_to = _weyl_words(weyl, rank_G, rank_ggn, rank, rank_ggn_exact)
        if not q_missing and weyl.agrees and rank_ggn_exact and rank_G_exact and rank_ggn == rank_G:
            head = ("Claim 3's exact hypotheses fail only because θ is not exactly a zero-residual critical point: "
                    + "; ".join(missing) + ". ")
            exact = (f" The exact rank(H) = {rank} also counts the residual's own eigenvalues above the tolerance."
                     if rank is not None and rank != rank_ggn else "")
            return "holds_up_to_residual", (head + "It holds up to the residual: w" + weyl.statement[1:]
                                            + f" So H has exactly rank(GGN) = rank(G) = {rank_G} eigenvalues that "
                                              "the residual cannot explain." + exact + " " + measured)
        return "not_applicable", head + up_to + " " + measured
    qword = {"identity": "Q = 2I", "diagonal": "Q is diagonal and positive"}.get(oc.kind, "Q is positive definite")
    hyp = (f"The hypotheses hold: a critical point (‖∇θL‖ = {grad_norm:.3g}) with zero residual "
           f"(‖∇_Fℓ‖ = {res_norm:.3g}) and {qword}, so H = GGN = G Q Gᵀ and rank(H) should equal rank(G).")
    if rank is None:
        return "not_applicable", hyp + " But rank(H) was not measured (Lanczos mode). " + measured
    if rank == rank_G:
        return "holds", hyp + f" It does: rank(H) = rank(G) = {rank_G}. " + measured
    if floor_applied and rank == rank_G_res:
        return "not_applicable", (hyp + f" rank(H) = {rank} equals the rank of G counting only the singular values "
                                  f"whose squares a float64 Hessian can resolve ({rank_G_res}); rank(G) = {rank_G} "
                                  "includes smaller ones, so the ranks cannot be compared at this precision. "
                                  + measured)
    return "fails", hyp + f" But rank(H) = {rank} ≠ rank(G) = {rank_G}. " + measured


def _weyl_words(weyl: Weyl, rank_G: int, rank_ggn: int, rank: int | None, rank_ggn_exact: bool) -> str:
    """Why Claim 3 does not hold even up to the residual, from the Weyl counts (a sentence that matches them)."""
    words = "Up to the residual (Weyl), w" + weyl.statement[1:]
    if not weyl.outside_band_exact:
        return words + " On a lower bound the counts cannot confirm Claim 3 up to the residual."
    if not rank_ggn_exact:
        return words + f" rank(GGN) ≥ {rank_ggn} is only a lower bound, so the counts cannot be compared with it."
    if weyl.outside_band > rank_ggn or weyl.ggn_above_2r > rank_ggn:
        return words + (f" rank(GGN) = {rank_ggn} at this tolerance counts fewer than the eigenvalues the residual "
                        "cannot explain: the tolerance, not the residual, decides the rank here.")
    if weyl.agrees:  # the counts agree, but rank(GGN) ≠ rank(G) or Q is not positive definite
        return words + (f" So H has exactly rank(GGN) = {rank_ggn} eigenvalues that the residual cannot explain, "
                        f"but rank(GGN) ≠ rank(G) = {rank_G}." if rank_ggn != rank_G else
                        f" So H has exactly rank(GGN) = {rank_ggn} eigenvalues that the residual cannot explain.")
    return words + (f" The residual's scale hides {weyl.hidden} of GGN's {rank_ggn} eigenvalues (they lie at or "
                    f"below 2b), so only between {weyl.ggn_above_2r} and {weyl.outside_band} of H's eigenvalues are "
                    f"beyond what the residual can explain, not rank(G) = {rank_G}.")
