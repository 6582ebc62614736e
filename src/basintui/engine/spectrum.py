"""Singular values of G, numerical rank and what it means (DESIGN §1).

Every rank decision here is float64. The default tolerance is the numpy rule
τ = σ₁ · max(N, kd) · ε; `rtol > 0` replaces it with τ = rtol · σ₁. The rank at other
tolerances, the largest gap and the effective rank are always reported beside it, so the
dependence on the tolerance is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .cancel import CancelToken

EPS = float(np.finfo(np.float64).eps)
RTOLS = ("1e-3", "1e-6", "1e-9")
GRAM_TRUST = np.sqrt(EPS)  # Gram eigenvalues below this fraction of λ₁ are not trusted


@dataclass(frozen=True)
class Gap:
    decades: float  # log10(σ_j / σ_{j+1})
    after: int  # j: the gap lies between σ_j and σ_{j+1} (1-based); cutting there gives rank j
    above: float
    below: float


@dataclass(frozen=True)
class Spectrum:
    singular_values: np.ndarray  # descending, all min(N, kd)
    tolerance: float
    tolerance_rule: str
    rank: int
    rank_at_rtol: dict[str, int]
    largest_gap: Gap | None
    effective_rank: float
    n_params: int  # N
    n_outputs: int  # kd
    method: str

    @property
    def regime(self) -> str:
        if self.n_params > self.n_outputs:
            return "over"
        return "under" if self.n_params < self.n_outputs else "square"

    @property
    def submersion(self) -> bool:
        return self.rank == self.n_outputs

    @property
    def kernel_dim(self) -> int:
        return self.n_params - self.rank

    @property
    def generic_dim(self) -> int | None:
        return self.n_params - self.n_outputs if self.n_params >= self.n_outputs else None

    @property
    def rank_deficiency(self) -> int:
        return min(self.n_params, self.n_outputs) - self.rank

    def rank_at(self, tol: float) -> int:
        return int(np.count_nonzero(self.singular_values > tol))


def default_tolerance(sigma_max: float, shape: tuple[int, int], rtol: float = 0.0) -> tuple[float, str]:
    if rtol > 0:
        return rtol * sigma_max, f"rtol · σ₁ with rtol = {rtol:g}"
    return sigma_max * max(shape) * EPS, f"σ₁ · max(N, kd) · ε = σ₁ · {max(shape)} · 2.2e-16 (numpy rule)"


def largest_gap(sv: np.ndarray) -> Gap | None:
    """The largest drop between neighbours, log10(σ_j/σ_{j+1}); zeros floored at 1e-3·ε·σ₁."""
    if len(sv) < 2 or sv[0] <= 0:
        return None
    floor = sv[0] * EPS * 1e-3
    s = np.maximum(sv, floor)
    ratios = np.log10(s[:-1] / s[1:])
    j = int(np.argmax(ratios))
    return Gap(decades=float(ratios[j]), after=j + 1, above=float(sv[j]), below=float(sv[j + 1]))


def effective_rank(sv: np.ndarray) -> float:
    total = sv.sum()
    if total <= 0:
        return 0.0
    p = sv[sv > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def svdvals(G: torch.Tensor) -> np.ndarray:
    """All singular values in float64, on the tall orientation, with a precise driver on CUDA."""
    A = G if G.shape[0] >= G.shape[1] else G.T
    A = A.to(torch.float64)
    if A.is_cuda:
        sv = torch.linalg.svd(A, full_matrices=False, driver="gesvd")[1]
    else:
        sv = torch.linalg.svdvals(A)
    return sv.cpu().numpy()


def gram_eigvals(G: torch.Tensor) -> np.ndarray:
    """Eigenvalues (descending) of the smaller Gram matrix, GᵀG or GGᵀ."""
    if G.is_cuda:
        K = G.T @ G if G.shape[0] >= G.shape[1] else G @ G.T
        return torch.linalg.eigvalsh(K).flip(0).cpu().numpy()
    A = G.numpy()
    K = A.T @ A if A.shape[0] >= A.shape[1] else A @ A.T  # numpy uses syrk here: half the flops
    return np.linalg.eigvalsh(K)[::-1].copy()


def singular_values(G: torch.Tensor, method: str = "auto", cancel: CancelToken | None = None) -> tuple[np.ndarray, str]:
    """All min(N, kd) singular values of G and the route that produced them.

    auto: the Gram route when G is at least 4× longer than wide (eigh of the small Gram runs at
    DGEMM speed); if any Gram eigenvalue falls below √ε·λ₁ it cannot be trusted to set a rank,
    so the SVD of G itself confirms (and supplies) the values.
    """
    n, m = G.shape
    small, large = min(n, m), max(n, m)
    if small == 0:
        return np.zeros(0), "empty"
    if method == "auto":
        method = "gram" if large >= 4 * small else "svd"
    if method == "gram":
        lam = gram_eigvals(G)
        if lam[0] > 0 and lam[-1] >= GRAM_TRUST * lam[0]:
            return np.sqrt(np.maximum(lam, 0.0)), "gram-eigh"
        if lam[0] <= 0:
            return np.zeros(small), "gram-eigh"
        if cancel is not None:
            cancel.check()
        return svdvals(G), "svd (gram-eigh below √ε·λ₁, confirmed by SVD)"
    if method == "svd":
        return svdvals(G), "svd"
    raise ValueError(f"unknown spectrum method {method!r}")


def analyse(sv: np.ndarray, n_params: int, n_outputs: int, *, rtol: float = 0.0, method: str = "") -> Spectrum:
    sv = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    sigma_max = float(sv[0]) if len(sv) else 0.0
    tol, rule = default_tolerance(sigma_max, (n_params, n_outputs), rtol)
    rank = int(np.count_nonzero(sv > tol))
    at = {key: int(np.count_nonzero(sv > float(key) * sigma_max)) for key in RTOLS}
    return Spectrum(
        singular_values=sv,
        tolerance=tol,
        tolerance_rule=rule,
        rank=rank,
        rank_at_rtol=at,
        largest_gap=largest_gap(sv),
        effective_rank=effective_rank(sv),
        n_params=n_params,
        n_outputs=n_outputs,
        method=method,
    )


def spectrum_of(G: torch.Tensor, *, rtol: float = 0.0, method: str = "auto",
                cancel: CancelToken | None = None) -> Spectrum:
    sv, used = singular_values(G, method, cancel)
    return analyse(sv, G.shape[0], G.shape[1], rtol=rtol, method=used)
