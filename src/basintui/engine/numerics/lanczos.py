"""Lanczos on a symmetric operator given only by its products v ↦ A v (numpy float64 in and out).

- `lanczos_norm`: ‖A‖₂ (ARPACK eigsh, the largest |λ|);
- `lanczos_extremes`: the k largest and k smallest eigenvalues, each end on a shifted operator so that
  ARPACK's relative stopping test becomes an absolute one (≈ tol·‖A‖₂);
- `slq_density`: a spectral density by stochastic Lanczos quadrature (Rademacher probes, full
  reorthogonalisation, `lanczos_tridiagonal`), Gaussian-smoothed (`gaussian_density`).

The Hessian's Lanczos mode (engine/analyses/hessian.py) runs these on Hessian-vector products.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .. import progress
from ..cancel import CancelToken

N_EXTREME = 20  # eigenvalues sought at each end by default
LANCZOS_TOL = 1e-12  # ARPACK's relative tolerance, applied to the shifted operator (so ≈ absolute, × ‖H‖₂)
# Operator products one ARPACK call may spend (its restarts are capped to fit): the smallest eigenvalues of a
# Hessian near a minimum sit in a cluster of thousands near zero, which ARPACK at tol 1e-12 resolves only after
# thousands of products (the bottom end of a 3,745-parameter residual MLP ran past 400 products, 7 minutes on a
# loaded 2-core box, the top end took 64). An unconverged call keeps what converged and says so; the Weyl count
# is then exact only where a found eigenvalue lies inside the band (claim3.weyl_extremes says which).
LANCZOS_PRODUCT_BUDGET = 400


def _eigsh(op, k: int, which: str, tol: float, v0: np.ndarray, ncv: int, notes: list[str] | None,
           budget: int | None = None) -> np.ndarray:
    budget = LANCZOS_PRODUCT_BUDGET if budget is None else budget
    maxiter = max(1, math.ceil(budget / max(1, ncv - k)))  # each restart makes about ncv − k products
    try:
        return eigsh(op, k=k, which=which, tol=tol, v0=v0, ncv=ncv, maxiter=maxiter, return_eigenvectors=False)
    except ArpackNoConvergence as exc:
        if notes is not None:
            notes.append(f"Lanczos ({which}): {len(exc.eigenvalues)} of {k} eigenvalues converged within "
                         f"{maxiter} restarts (about {budget} products); only those are reported")
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
    meter = progress.of(cancel)
    meter.expect(steps, "Lanczos steps")
    for j in range(steps):
        if cancel is not None:
            cancel.check()
        meter.update(j, upto=j + 1)
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
    meter = progress.of(cancel)
    meter.expect(n_vectors, "probes")
    for i in range(n_vectors):
        v = rng.choice([-1.0, 1.0], size=n)
        with meter.span(i, i + 1):
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
