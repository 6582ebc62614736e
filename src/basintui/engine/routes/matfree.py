"""The top of G's singular spectrum without forming G or any Gram matrix (matrix-free).

For when N (parameters) and kd (inputs × outputs) are both too large for G = Jᵀ (N × kd), GᵀG or
GGᵀ to fit in memory. G is only ever applied to vectors:

- G u  = Jᵀ u  (u ∈ R^kd): one reverse-mode product (`torch.func.vjp` of θ ↦ F(θ)), and
- Gᵀ v = J v   (v ∈ R^N):  one forward-mode product (`torch.func.jvp`; where an operator has no
  forward-mode rule, the double-vjp trick J v = ∂/∂u ⟨Jᵀ u, v⟩ instead),

over the k inputs in chunks, so the working set is one forward/backward pass of a chunk plus a
few vectors of length N and kd. `top_singular_values` hands this operator to
`scipy.sparse.linalg.svds` (ARPACK: implicitly restarted Lanczos on the smaller of GᵀG / GGᵀ,
then the singular values of G·V from a small dense SVD, which keeps them accurate relative to
σ₁ rather than σ₁²). ARPACK rather than svds' other solvers, measured on a 2203 × 600 G (tanh MLP,
200 inputs, 50 duplicated: rank 450):
PROPACK took fewer products (403 vs 606 for the top 100, same accuracy) but keeps ~10s Lanczos
vectors on *both* sides (N and kd) and raised LinAlgError ("invariant subspace") when s
exceeded the rank (top 460 of rank 450), the very case that makes the rank exact; LOBPCG
needed 3-8× the products and was only ~2e-9 relative.

Limits (say them beside any number this produces):
- Only the top s singular values are found, never the whole spectrum (s < min(N, kd)).
- The numerical rank is exact only when the tolerance falls inside the top s (some found σ lies
  at or below it: every further σ is ≤ σ_s ≤ τ); otherwise it is only a lower bound
  (`rank_from_top`). That argument assumes the s values found are the true top s, which holds
  when the solver converged (`TopSpectrum.converged`).
- Accuracy, measured against a dense SVD (G 2203 × 600, rank 450, top 460): ≤ 6e-16·σ₁
  absolute, ≤ 2e-13 relative for σ ≥ 1e-4·σ₁; the tests hold 1e-8 relative there. Values from a
  solve that did not converge are √ of Gram eigenvalues, good only to ~ε·σ₁²/σ.
- Each product costs a forward plus a backward (or forward-mode) pass over all k inputs; ARPACK
  took 136 products for the top 20 and 606 for the top 100 of that G (tol 1e-10).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, svds
from torch import nn

from ...limits import forward_pass_bytes, matfree_route_bytes
from ..cancel import CancelToken
from .jacobian import Transform, outputs_at
from ..problem.models import Layout, activation_numel, flat_params

BYTES = 8  # float64


@dataclass(frozen=True)
class TopSpectrum:
    singular_values: np.ndarray  # the top `s` found, descending, float64
    n_params: int  # N
    n_outputs: int  # kd
    products: int  # number of J·v plus Jᵀ·u products used
    converged: bool
    method: str  # human-readable, e.g. "matrix-free svds (top 32 of min(N, kd), 412 products)"


class JacobianOperator(LinearOperator):
    """G (N × kd) as a LinearOperator: `matvec(u) = G u = Jᵀ u`, `rmatvec(v) = Gᵀ v = J v`.

    `products` counts every J·v and Jᵀ·u (a matmat of c columns counts c). `cancel.check()` runs
    before each product. When the inputs fit in one chunk the reverse-mode graph is built once and
    kept (memory: one forward pass); with several chunks it is rebuilt per chunk and product, so
    only one chunk's pass is alive at a time.
    """

    def __init__(self, model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                 cancel: CancelToken | None = None, chunk: int | None = None) -> None:
        self.model = model
        self.layout = layout
        self.x = x if x.dtype == torch.float64 else x.to(torch.float64)
        self.device = self.x.device
        self.transform = transform
        self.cancel = cancel
        self.theta = flat_params(model).detach().to(device=self.device, dtype=torch.float64)
        k = self.x.shape[0]
        if k < 1:
            raise ValueError("jacobian_operator needs at least one input")
        self.chunk = k if chunk is None else max(1, min(k, int(chunk)))
        with torch.no_grad():
            self.d = int(outputs_at(model, layout, self.theta, self.x[:1], transform)[0].numel())
        self.k = k
        self.products = 0
        self.forward_ad = True  # set False (or found False) to use the double-vjp route for J v
        self._vjp_cache = None
        n = layout.n_params
        if n != self.theta.numel():
            raise ValueError(f"layout has {n} parameters but the model has {self.theta.numel()}")
        super().__init__(dtype=np.dtype(np.float64), shape=(n, k * self.d))

    # -- helpers ---------------------------------------------------------------------------
    def _f(self, i0: int, i1: int):
        xc = self.x[i0:i1]
        return lambda th: outputs_at(self.model, self.layout, th, xc, self.transform).reshape(-1)

    def _chunks(self):
        return [(i0, min(self.k, i0 + self.chunk)) for i0 in range(0, self.k, self.chunk)]

    def _tick(self) -> None:
        if self.cancel is not None:
            self.cancel.check()
        self.products += 1

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(-1)),
                               device=self.device)

    def _vjp_fn(self, i0: int, i1: int):
        if (i0, i1) == (0, self.k):
            if self._vjp_cache is None:
                self._vjp_cache = torch.func.vjp(self._f(0, self.k), self.theta)[1]
            return self._vjp_cache
        return torch.func.vjp(self._f(i0, i1), self.theta)[1]

    def _jvp_chunk(self, i0: int, i1: int, v: torch.Tensor) -> torch.Tensor:
        if self.forward_ad:
            try:
                return torch.func.jvp(self._f(i0, i1), (self.theta,), (v,))[1]
            except NotImplementedError:  # torch's type for an operator or autograd.Function without a
                self.forward_ad = False  # forward-mode (jvp) rule: J v by the double-vjp route from now on
        vjp_fn = self._vjp_fn(i0, i1)
        u0 = torch.zeros((i1 - i0) * self.d, dtype=torch.float64, device=self.device)
        return torch.func.vjp(lambda u: vjp_fn(u)[0], u0)[1](v)[0]

    # -- LinearOperator ----------------------------------------------------------------------
    def _matvec(self, u: np.ndarray) -> np.ndarray:
        """G u = Jᵀ u, u ∈ R^kd (column i·d + c belongs to output c of input i)."""
        self._tick()
        ut = self._tensor(u)
        out = torch.zeros(self.shape[0], dtype=torch.float64, device=self.device)
        for i0, i1 in self._chunks():
            out += self._vjp_fn(i0, i1)(ut[i0 * self.d: i1 * self.d])[0]
        return out.cpu().numpy()

    def _rmatvec(self, v: np.ndarray) -> np.ndarray:
        """Gᵀ v = J v, v ∈ R^N."""
        self._tick()
        vt = self._tensor(v)
        parts = [self._jvp_chunk(i0, i1, vt) for i0, i1 in self._chunks()]
        return torch.cat(parts).cpu().numpy()

    def _matmat(self, U: np.ndarray) -> np.ndarray:
        return np.column_stack([self._matvec(U[:, j]) for j in range(U.shape[1])]) if U.shape[1] else \
            np.zeros((self.shape[0], 0))

    def _rmatmat(self, V: np.ndarray) -> np.ndarray:
        return np.column_stack([self._rmatvec(V[:, j]) for j in range(V.shape[1])]) if V.shape[1] else \
            np.zeros((self.shape[1], 0))


def chunk_for_budget(model: nn.Module, x: torch.Tensor, chunk_bytes: int) -> int:
    """Inputs per chunk so that one chunk's forward/backward pass stays within `chunk_bytes`
    (limits.forward_pass_bytes of the activation numbers per input, from a forward pass on two inputs)."""
    per_input = forward_pass_bytes(1, activation_numel(model, x[:2]), BYTES)
    return max(1, min(x.shape[0], int(chunk_bytes) // per_input))


def jacobian_operator(model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                      cancel: CancelToken | None = None, chunk: int | None = None,
                      chunk_bytes: int | None = None) -> JacobianOperator:
    """The LinearOperator for G (shape (N, kd), float64); see `JacobianOperator`.

    `chunk` inputs per pass (default: all of them); or give `chunk_bytes` instead and the chunk is
    chosen so one pass fits in it. `model` should be float64 on x's device; vectors go in and come
    out as CPU numpy arrays, whatever the device.
    """
    if chunk is None and chunk_bytes is not None:
        chunk = chunk_for_budget(model, x, chunk_bytes)
    return JacobianOperator(model, layout, x, transform=transform, cancel=cancel, chunk=chunk)


def _solve(op: JacobianOperator, s: int, tol: float, maxiter: int | None) -> tuple[np.ndarray, bool]:
    m = min(op.shape)
    v0 = np.random.default_rng(0).standard_normal(m)  # deterministic start: the same run gives the same numbers
    try:
        sv = svds(op, k=s, which="LM", tol=tol, maxiter=maxiter, v0=v0, solver="arpack",
                  return_singular_vectors=False)
        return np.asarray(sv, dtype=np.float64), True
    except ArpackNoConvergence as exc:  # keep what did converge (eigenvalues of the Gram: σ²)
        lam = np.asarray(getattr(exc, "eigenvalues", np.zeros(0)), dtype=np.float64).real
        return np.sqrt(np.maximum(lam, 0.0)), False


def top_singular_values(model: nn.Module, layout: Layout, x: torch.Tensor, s: int, *, transform: Transform = None,
                        cancel: CancelToken | None = None, tol: float = 1e-10, maxiter: int | None = None,
                        chunk: int | None = None) -> TopSpectrum:
    """The s largest singular values of G, descending, by ARPACK (`svds`) on the matrix-free operator.

    s is clipped to min(N, kd) − 1 (ARPACK needs s < min(N, kd)); when min(N, kd) = 1, G is a
    single vector and its one singular value is its norm (one product). `tol` is svds' relative
    tolerance on the singular values (eigsh gets tol², as svds does). Not converged within
    `maxiter` restarts: `converged` is False and only the values that did converge are returned.
    """
    op = jacobian_operator(model, layout, x, transform=transform, cancel=cancel, chunk=chunk)
    n, kd = op.shape
    m = min(n, kd)
    if m == 1:
        g = op.matvec(np.ones(kd)) if kd == 1 else op.rmatvec(np.ones(n))
        sv = np.array([float(np.linalg.norm(g))])
        return TopSpectrum(sv, n, kd, op.products, True,
                           f"matrix-free norm (min(N, kd) = 1, {op.products} products)")
    s = max(1, min(int(s), m - 1))
    sv, converged = _solve(op, s, tol, maxiter)
    sv = np.sort(sv)[::-1].copy()
    note = "" if converged else f", NOT converged: {len(sv)} of {s} values"
    method = (f"matrix-free svds arpack (top {s} of min(N, kd) = {m}, {op.products} products{note})")
    return TopSpectrum(sv, n, kd, op.products, converged, method)


def matfree_bytes(n_params: int, kd: int, s: int, forward_bytes: int) -> int:
    """Working set of `top_singular_values` in bytes: limits.matfree_route_bytes, where the formula
    lives so that the app's estimate (which never imports torch) is the same."""
    return matfree_route_bytes(n_params, kd, s, forward_bytes)
