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

Ranks of H, GGN and R all use one tolerance tied to the scale of G, never a matrix's own maximum:

    τ_H = σ₁(G)² · q_max · N · ε     (q_max = the largest eigenvalue of any Q_i)

— an upper bound on ‖GGN‖₂ times the numpy factor N·ε. When σ₁(G)²·q_max = 0 (G = 0) the scale falls
back to 1, i.e. τ_H = N·ε absolute. rank(GGN) is read from the eigenvalues of the smaller Gram matrix of
G·Q^{1/2} (GGN's non-zero eigenvalues), never from an N × N matrix.

Dense route: H column-blocks by vmapped forward-over-reverse Hessian-vector products, then eigvalsh of
H, GGN and R. Lanczos route (large N): extreme eigenvalues by scipy's eigsh on a LinearOperator of
Hessian-vector products, ‖H − GGN‖₂ by eigsh on the residual operator, and a spectral density by
stochastic Lanczos quadrature. Both are checked against the dense route in the tests.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch.func import grad, jvp, vmap

from . import resources, spectrum
from .cancel import CancelToken
from .events import Note
from .jacobian import outputs_at
from .models import flat_params
from .train import per_sample_loss

EPS = float(np.finfo(np.float64).eps)
ZERO_RTOL = 1e-8  # ‖∇_Fℓ‖ ≤ ZERO_RTOL · S counts as zero residual (S below)
CRITICAL_RTOL = 1e-8  # ‖∇_θL‖ ≤ CRITICAL_RTOL · σ₁(G) · S counts as a critical point
Q_PD_RTOL = 1e-12  # Q counts as positive definite when its smallest eigenvalue > 1e-12 · q_max
LANCZOS_RESIDUAL_RTOL = 1e-8  # lanczos: H = GGN taken as measured when ‖H − GGN‖₂ ≤ 1e-8 ‖H‖₂
N_EXTREME = 20
SMALL_RESIDUAL_REL = 1e-6  # below this ‖H − GGN‖/‖H‖ the why-text calls the residual term small
RTOLS = ("1e-3", "1e-6", "1e-9")  # ranks also reported at these fractions of the scale σ₁(G)²·q_max
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
                  per_column_bytes: int | None = None) -> torch.Tensor:
    """∇²L as an N × N float64 matrix, a block of columns (vmapped HVPs on unit vectors) at a time."""
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
            except (RuntimeError, NotImplementedError):  # an op without a batching rule: plain loop
                use_vmap = False
        for j in range(b):
            H[i0 + j] = hvp(E[j])
    return 0.5 * (H + H.T)


def eigvalsh_cancellable(A: torch.Tensor, cancel: CancelToken | None = None, poll_s: float = 0.2) -> np.ndarray:
    """Eigenvalues of a symmetric matrix, descending. LAPACK cannot be interrupted, so it runs in a
    helper thread while this one polls the cancel token; on cancel the caller gets Cancelled at once
    (the helper finishes in the background and its result is dropped)."""
    a = A.detach().cpu().numpy()
    if cancel is None or a.shape[0] <= 500:
        return np.linalg.eigvalsh(a)[::-1].copy()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = np.linalg.eigvalsh(a)
        except BaseException as exc:  # pragma: no cover - LAPACK failure, re-raised below
            box["error"] = exc

    t = threading.Thread(target=work, name="basintui-eigvalsh", daemon=True)
    t.start()
    while t.is_alive():
        t.join(poll_s)
        cancel.check()
    if "error" in box:
        raise box["error"]
    return box["value"][::-1].copy()


def sqrt_Q(Q: torch.Tensor) -> torch.Tensor:
    w, V = torch.linalg.eigh(Q)
    return V @ torch.diag_embed(torch.sqrt(torch.clamp(w, min=0.0))) @ V.transpose(1, 2)


def times_Q(G: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """G · blockdiag(Q) for G of shape (N, k·d) with columns i·d + c."""
    n = G.shape[0]
    k, d, _ = Q.shape
    return torch.einsum("nkc,kce->nke", G.reshape(n, k, d), Q).reshape(n, k * d)


# --------------------------------------------------------------------------- Lanczos


LANCZOS_TOL = 1e-12  # ARPACK's relative tolerance, applied to the shifted operator (so ≈ absolute, × ‖H‖₂)
LANCZOS_MAXITER = 200  # ARPACK restarts per call; an unconverged call keeps what converged and says so


def _eigsh(op, k: int, which: str, tol: float, v0: np.ndarray, ncv: int, notes: list[str] | None) -> np.ndarray:
    try:
        return eigsh(op, k=k, which=which, tol=tol, v0=v0, ncv=ncv, maxiter=LANCZOS_MAXITER,
                     return_eigenvectors=False)
    except ArpackNoConvergence as exc:
        if notes is not None:
            notes.append(f"Lanczos ({which}): {len(exc.eigenvalues)} of {k} eigenvalues converged within "
                         f"{LANCZOS_MAXITER} restarts; only those are reported")
        return np.asarray(exc.eigenvalues, dtype=np.float64).real


def lanczos_norm(matvec: Callable[[np.ndarray], np.ndarray], n: int, *, seed: int = 0, tol: float = 1e-8,
                 notes: list[str] | None = None) -> float | None:
    """‖A‖₂ = the largest |eigenvalue| of a symmetric operator (None if ARPACK did not converge)."""
    if n == 1:
        return float(abs(matvec(np.ones(1))[0]))
    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed + 1).standard_normal(n)
    val = _eigsh(op, 1, "LM", tol, v0, min(n, 20), notes)
    return float(abs(val[0])) if val.size else None


def lanczos_extremes(matvec: Callable[[np.ndarray], np.ndarray], n: int, k: int = N_EXTREME, *, seed: int = 0,
                     tol: float = LANCZOS_TOL, bottom: bool = True, notes: list[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The k largest and k smallest (algebraic) eigenvalues of a symmetric operator A, by ARPACK (eigsh).

    ARPACK's stopping test is relative to each Ritz value, which never passes for the cluster of
    near-zero eigenvalues a Hessian has near a minimum. So both ends are computed on shifted operators,
    A + cI for the top and A − cI for the bottom, with c ≈ ‖A‖₂ (one cheap LM run): the eigenvalues
    sought are then of size ~c and the test becomes |error| ≲ tol·‖A‖₂.
    """
    k = int(max(1, min(k, n - 1)))
    c = lanczos_norm(matvec, n, seed=seed, tol=1e-4, notes=notes)
    c = 1.01 * c if c else 1.0
    v0 = np.random.default_rng(seed).standard_normal(n)
    ncv = min(n, max(2 * k + 1, 40))
    up = LinearOperator((n, n), matvec=lambda v: matvec(v) + c * v, dtype=np.float64)
    top = _eigsh(up, k, "LA", tol, v0, ncv, notes) - c
    if not bottom:
        return np.sort(top)[::-1], np.zeros(0)
    down = LinearOperator((n, n), matvec=lambda v: matvec(v) - c * v, dtype=np.float64)
    low = _eigsh(down, k, "SA", tol, v0, ncv, notes) + c
    return np.sort(top)[::-1], np.sort(low)


@dataclass
class Density:
    """A spectral density by stochastic Lanczos quadrature: Σ weights·δ(λ − nodes), smoothed."""

    nodes: np.ndarray
    weights: np.ndarray  # sum to 1 (an average over the probe vectors)
    grid: np.ndarray
    values: np.ndarray  # Gaussian-smoothed density on the grid (integrates to ~1)
    sigma: float  # the Gaussian's width
    n_vectors: int
    steps: int

    def to_dict(self) -> dict[str, Any]:
        return {"method": "stochastic Lanczos quadrature (Rademacher probes, full reorthogonalisation)",
                "n_vectors": self.n_vectors, "steps": self.steps, "sigma": self.sigma,
                "nodes": self.nodes, "weights": self.weights, "grid": self.grid, "values": self.values}


def lanczos_tridiagonal(matvec, v: np.ndarray, steps: int, cancel: CancelToken | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """`steps` Lanczos steps from v with full reorthogonalisation: the Ritz values and their weights
    (first components of the tridiagonal's eigenvectors, squared): vᵀ g(A) v / ‖v‖² ≈ Σ w g(θ)."""
    n = v.size
    steps = min(steps, n)
    basis = np.zeros((steps, n))
    alpha, beta = [], []
    q = v / np.linalg.norm(v)
    for j in range(steps):
        if cancel is not None:
            cancel.check()
        basis[j] = q
        w = matvec(q)
        a = float(w @ q)
        alpha.append(a)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # twice is enough
        b = float(np.linalg.norm(w))
        if j == steps - 1 or b <= 1e-12 * max(abs(a), 1e-300) or b == 0.0:
            break
        beta.append(b)
        q = w / b
    m = len(alpha)
    T = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    theta, U = np.linalg.eigh(T)
    return theta, U[0] ** 2


def slq_density(matvec, n: int, *, steps: int = 64, n_vectors: int = 8, seed: int = 0, sigma: float | None = None,
                grid_points: int = 200, cancel: CancelToken | None = None) -> Density:
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(n_vectors):
        v = rng.choice([-1.0, 1.0], size=n)
        th, w = lanczos_tridiagonal(matvec, v, steps, cancel)
        nodes.append(th)
        weights.append(w / n_vectors)
    nodes_a, weights_a = np.concatenate(nodes), np.concatenate(weights)
    lo, hi = float(nodes_a.min()), float(nodes_a.max())
    span = max(hi - lo, abs(hi), abs(lo), 1e-300)
    if sigma is None:
        sigma = 0.01 * span
    grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, grid_points)
    values = gaussian_density(nodes_a, weights_a, grid, sigma)
    order = np.argsort(nodes_a)
    return Density(nodes_a[order], weights_a[order], grid, values, float(sigma), n_vectors, int(min(steps, n)))


def gaussian_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    z = (grid[:, None] - nodes[None, :]) / sigma
    return (np.exp(-0.5 * z * z) * weights[None, :]).sum(axis=1) / (sigma * math.sqrt(2 * math.pi))


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
    rank_at_rtol: dict[str, dict[str, int]] | None = None  # rank of H, GGN, H − GGN at rtol · σ₁(G)²·q_max

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
            "regime": self.regime,
            "notes": list(self.notes),
            "density": self.density.to_dict() if self.density is not None else None,
            "matvecs": self.matvecs,
        }


def hessian_tolerance(sigma1: float, q_max: float, n_params: int) -> tuple[float, str]:
    scale = sigma1 * sigma1 * q_max
    if scale > 0:
        return scale * n_params * EPS, (f"σ₁(G)² · q_max · N · ε = {sigma1:.3g}² · {q_max:.3g} · {n_params} · 2.2e-16 "
                                        "(the scale of GGN, never the matrix's own maximum)")
    return n_params * EPS, f"N · ε = {n_params} · 2.2e-16 (absolute: G = 0, so GGN = 0 and there is no scale)"


def _count(vals: np.ndarray, tol: float) -> int:
    return int(np.count_nonzero(np.abs(vals) > tol))


# --------------------------------------------------------------------------- the stage


def analyse(ctx, report=None, *, mode: str | None = None, n_extreme: int = N_EXTREME,
            slq_vectors: int = 4, slq_steps: int = 64) -> HessianResult:
    """The Hessian stage: dense or Lanczos (mode None: the preset's choice, `auto` resolved as the plan does)."""
    preset = ctx.preset
    model, layout, x, y = ctx.model, ctx.layout, ctx.x, ctx.y
    theta = flat_params(model).to(torch.float64)
    n = theta.numel()
    k, d = x.shape[0], ctx.out_dim
    kd = k * d
    notes: list[str] = []
    if mode is None:
        mode, why = resources.choose_hessian_mode(preset.analysis.hessian, n,
                                                  resources.available_bytes(theta.device))
        if why:
            notes.append(why)
    if mode not in ("dense", "lanczos"):
        raise ValueError(f"hessian mode {mode!r}")

    G = ctx.G
    if G is None:  # pragma: no cover - the session always computes G first
        from .jacobian import compute_G

        G, _ = compute_G(model, layout, x, transform=ctx.transform, cancel=ctx.cancel)
    spec = ctx.spectrum if ctx.spectrum is not None else spectrum.spectrum_of(G, rtol=preset.analysis.rtol)
    sv = spec.singular_values
    sigma1 = float(sv[0]) if len(sv) else 0.0

    oc = output_curvature(model, layout, theta, x, y, ctx.loss, ctx.transform)
    qeig = torch.linalg.eigvalsh(oc.Q)
    q_min, q_max = float(qeig.min()), float(qeig.max())
    q_pos = q_max > 0 and q_min > Q_PD_RTOL * q_max
    tol, rule = hessian_tolerance(sigma1, max(q_max, 0.0), n)

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

    # rank(GGN) from the factor G·Q^{1/2}: its squared singular values are GGN's non-zero eigenvalues.
    # (Its smaller Gram, GSᵀGS or GS·GSᵀ, has those eigenvalues with absolute errors ~ ε·‖GGN‖, well under
    # τ_H = N·ε·σ₁²·q_max: as precise as the tolerance needs, and cheaper than an SVD.)
    GS = times_Q(G, sqrt_Q(oc.Q))
    if GS.numel():
        K = GS.T @ GS if GS.shape[0] >= GS.shape[1] else GS @ GS.T
        lam_ggn = np.clip(eigvalsh_cancellable(0.5 * (K + K.T), ctx.cancel), 0.0, None)
        del K
    else:
        lam_ggn = np.zeros(0)
    sv_ggn = np.sqrt(lam_ggn)
    rank_ggn = _count(lam_ggn, tol)
    rank_G_res = int(np.count_nonzero(sv**2 * max(q_max, 0.0) > tol)) if q_max > 0 else 0
    ctx.cancel.check()

    Qfull = oc.Q

    def ggn_vec(v: torch.Tensor) -> torch.Tensor:
        w = (G.T @ v).reshape(k, d)
        return G @ torch.einsum("kce,ke->kc", Qfull, w).reshape(-1)

    density = None
    matvecs = 0
    if mode == "dense":
        H = dense_hessian(L, theta, ctx.cancel, per_column_bytes=8 * (4 * n + 8 * kd))
        ctx.cancel.check()
        GQ = times_Q(G, oc.Q)
        GGN = GQ @ G.T
        GGN = 0.5 * (GGN + GGN.T)
        del GQ
        R = H - GGN
        del GGN
        ev = eigvalsh_cancellable(H, ctx.cancel)
        ev_res = eigvalsh_cancellable(R, ctx.cancel)
        # GGN's eigenvalues: the squared singular values of G·Q^{1/2}, then zeros (exact, and one eigh fewer)
        ev_ggn = np.zeros(n)
        m = min(n, sv_ggn.size)
        ev_ggn[:m] = np.sort(sv_ggn**2)[::-1][:m]
        del H, R
        scale_h = sigma1 * sigma1 * max(q_max, 0.0)
        rank_at_rtol = {key: {"H": _count(ev, float(key) * scale_h), "GGN": _count(sv_ggn**2, float(key) * scale_h),
                              "residual": _count(ev_res, float(key) * scale_h)} for key in RTOLS}
        rank: int | None = _count(ev, tol)
        rank_res: int | None = _count(ev_res, tol)
        n_neg: int | None = int(np.count_nonzero(ev < -tol))
        h_norm = float(np.abs(ev).max()) if ev.size else 0.0
        r_norm = float(np.abs(ev_res).max()) if ev_res.size else 0.0
        lam_max, lam_min = float(ev[0]), float(ev[-1])
        rank_method = "eigenvalues of the dense Hessian (eigvalsh), |λ| > τ_H"
        eigenvalues, ggn_eigs, res_eigs = ev, ev_ggn, ev_res
    else:
        rank_at_rtol = None
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
        ggn_eigs = np.sort(sv_ggn**2)[::-1]
        res_eigs = None
        n_neg = None
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

    verdict, why = claim3_verdict(rank=rank, rank_G=spec.rank, rank_ggn=rank_ggn, rank_res=rank_res,
                                  rank_G_res=rank_G_res, critical=critical, zero_res=zero_res, q_pos=q_pos,
                                  oc=oc, grad_norm=grad_norm, res_norm=res_norm_eff, q_min=q_min, q_max=q_max,
                                  residual_rel=residual_rel, d=d, k=k)
    result = HessianResult(
        method=mode,
        reduction=(f"sum over the k = {k} training inputs of the per-input loss (training reports the mean: "
                   f"divide H, its eigenvalues and ∇θL by {k} for the training loss's)"),
        loss=ctx.loss, on=oc.on, loss_formula=oc.formula, n_params=n, n_outputs=kd,
        eigenvalues=eigenvalues, ggn_eigenvalues=ggn_eigs, residual_eigenvalues=res_eigs,
        tolerance=tol, tolerance_rule=rule, rank=rank, rank_ggn=rank_ggn, rank_residual=rank_res,
        rank_G=spec.rank, rank_G_resolvable=rank_G_res, rank_method=rank_method, n_negative=n_neg,
        lambda_max=lam_max, lambda_min=lam_min, grad_norm=grad_norm, grad_norm_via_G=grad_via_G,
        output_residual_norm=res_norm_eff, output_residual_raw_norm=res_norm_raw, residual_norm=r_norm,
        hessian_norm=h_norm, residual_rel=residual_rel, loss_hessian=oc.kind, loss_hessian_positive=bool(q_pos),
        q_min=q_min, q_max=q_max, hypotheses=hypotheses, claim3=verdict, claim3_why=why, regime=spec.regime,
        notes=notes, density=density, matvecs=matvecs, rank_at_rtol=rank_at_rtol,
    )
    for text in notes:
        ctx.emit(Note(text))
    return result


def claim3_verdict(*, rank, rank_G, rank_ggn, rank_res, rank_G_res, critical, zero_res, q_pos, oc, grad_norm,
                   res_norm, q_min, q_max, residual_rel, d, k) -> tuple[str, str]:
    """Claim 3 (rank H = rank G at a minimum): holds | fails | not_applicable, and why in words."""
    measured = (f"Measured: rank(H) = {rank if rank is not None else 'not measured'}, rank(G) = {rank_G}, "
                f"rank(GGN) = {rank_ggn}"
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
    if not q_pos:
        if oc.kind == "full":
            missing.append(f"the loss Hessian in output space is not diagonal: ce on logits has Q_i = diag(p) − ppᵀ, "
                           f"singular (rank d − 1 = {d - 1} per input), so rank(GGN) = {rank_ggn} can fall below "
                           f"rank(G) = {rank_G} (bound k(d − 1) = {k * (d - 1)})")
        else:
            missing.append(f"the loss Hessian in output space is not positive definite (smallest eigenvalue "
                           f"{q_min:.3g} of at most {q_max:.3g}), so GGN loses rank where Q does")
    if missing:
        return "not_applicable", "Claim 3's hypotheses do not hold: " + "; ".join(missing) + ". " + measured
    qword = {"identity": "Q = 2I", "diagonal": "Q is diagonal and positive"}.get(oc.kind, "Q is positive definite")
    hyp = (f"The hypotheses hold: a critical point (‖∇θL‖ = {grad_norm:.3g}) with zero residual "
           f"(‖∇_Fℓ‖ = {res_norm:.3g}) and {qword}, so H = GGN = G Q Gᵀ and rank(H) should equal rank(G).")
    if rank is None:
        return "not_applicable", hyp + " But rank(H) was not measured (Lanczos mode). " + measured
    if rank == rank_G:
        return "holds", hyp + f" It does: rank(H) = rank(G) = {rank_G}. " + measured
    if rank == rank_G_res:
        return "not_applicable", (hyp + f" rank(H) = {rank} equals the rank of G counting only the singular values "
                                  f"whose squares a float64 Hessian can resolve ({rank_G_res}); rank(G) = {rank_G} "
                                  "includes smaller ones, so the ranks cannot be compared at this precision. "
                                  + measured)
    return "fails", hyp + f" But rank(H) = {rank} ≠ rank(G) = {rank_G}. " + measured
