"""The loss in output space and the Hessian's products (DESIGN §1): ∂ℓ/∂F and Q = ∇²_F ℓ per loss, θ ↦ L(θ)
(the sum over inputs), Hessian-vector products by forward-over-reverse, the dense Hessian in column blocks,
and the products with Q (G·Q, a square root of Q)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from .. import progress
from ..cancel import CancelToken, run_cancellable
from ..numerics.tolerances import EPS
from ..problem.train import per_sample_loss
from ..routes.jacobian import outputs_at

HVP_CHUNK_BYTES = 128 * 2**20  # the dense Hessian's column block: its vmapped products' working set


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
    meter = progress.of(cancel)
    meter.expect(n, "columns")
    for i0 in range(0, n, chunk):
        if cancel is not None:
            cancel.check()
        b = min(chunk, n - i0)
        meter.update(i0, upto=i0 + b)
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
            meter.update(i0 + j, upto=i0 + j + 1)
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
