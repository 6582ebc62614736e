"""Singular values of G, numerical rank and what it means (DESIGN §1).

Every rank decision here is float64. The default tolerance is the numpy rule
τ = σ₁ · max(N, kd) · ε; `rtol > 0` replaces it with τ = rtol · σ₁. The rank at other
tolerances, the largest gap and the effective rank are always reported beside it, so the
dependence on the tolerance is visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .cancel import CancelToken
from .resources import check_fits

EPS = float(np.finfo(np.float64).eps)
RTOLS = ("1e-3", "1e-6", "1e-9")
GRAM_TRUST_FACTOR = 1e3  # trust the Gram alone when λ_min ≥ 1e3·m·ε·λ₁ (σ error ≤ 5e-4 relative, bound)
TAIL_FACTOR = 100.0  # the Ritz tail: eigenvalues below 100× the trust threshold (σ ≲ 1.5e-4·σ₁ at m = 1024)
TAIL_BAND = 30.0  # a refined σ within 30× of the tolerance sends the decision to a full SVD


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
    A = A.to(torch.float64).contiguous()  # a transposed view costs torch's LAPACK path up to 4× (measured)
    if A.is_cuda:
        sv = torch.linalg.svd(A, full_matrices=False, driver="gesvd")[1]
    else:
        sv = torch.linalg.svdvals(A)
    return sv.cpu().numpy()


def _tall(G: torch.Tensor) -> torch.Tensor:
    return G if G.shape[0] >= G.shape[1] else G.T


def gram_eigh(A: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors of AᵀA for a tall A (large × small)."""
    if A.is_cuda:
        lam, V = torch.linalg.eigh(A.T @ A)
        return lam.flip(0).cpu().numpy(), V.flip(1)
    a = A.numpy()
    K = a.T @ a  # numpy runs syrk for this product: half the flops of a general GEMM
    lam, V = torch.linalg.eigh(torch.from_numpy(K))  # torch's LAPACK (MKL) ran eigh 3.6× faster than numpy's
    return lam.flip(0).numpy(), V.flip(1)


def _from_gram(lam: np.ndarray, V: torch.Tensor, apply: Callable[[torch.Tensor], torch.Tensor],
               full_svd: Callable[[], np.ndarray], shape: tuple[int, int], rtol: float,
               cancel: CancelToken | None) -> tuple[np.ndarray, str]:
    """Singular values from the Gram's eigenpairs (λ descending), refined where they can't be trusted.

    The eigenvalues are exact enough only down to about m·ε·λ₁. When the smallest is below
    GRAM_TRUST_FACTOR·m·ε·λ₁, the tail (λ below TAIL_FACTOR times that threshold) is refined by
    Rayleigh-Ritz:
    the Gram's eigenvectors span the small singular subspace accurately even where their
    eigenvalues are noise, so the singular values of A·V_tail (`apply`, one product and a small
    SVD) recover the tail to about ε·σ₁. A refined value within TAIL_BAND of the tolerance
    sends the decision to a full SVD (`full_svd`).
    """
    small = lam.size
    if lam[0] <= 0:
        return np.zeros(small), "gram-eigh"
    if lam[-1] >= GRAM_TRUST_FACTOR * small * EPS * lam[0]:
        return np.sqrt(lam), "gram-eigh"
    if cancel is not None:
        cancel.check()
    tol = default_tolerance(float(np.sqrt(lam[0])), shape, rtol)[0]
    s = int(np.count_nonzero(lam < TAIL_FACTOR * GRAM_TRUST_FACTOR * small * EPS * lam[0]))
    check_fits("data.n", f"refining the {s} smallest singular values (a {max(shape)} × {s} matrix and its SVD)",
               3 * 8 * max(shape) * s, V.device,
               "use fewer training inputs (data.n) or a smaller model; the Gram alone cannot resolve them")
    sv_tail = svdvals(apply(V[:, small - s:]))
    if not ((sv_tail > tol / TAIL_BAND) & (sv_tail < tol * TAIL_BAND)).any():
        head = np.sqrt(np.maximum(lam[: small - s], 0.0))
        return np.concatenate([head, np.sort(sv_tail)[::-1]]), \
            f"gram-eigh + Ritz tail ({s} smallest σ refined by an SVD of G·V)"
    if cancel is not None:
        cancel.check()
    return full_svd(), "svd (a Ritz value sat near the tolerance, so a full SVD decided)"


def singular_values(G: torch.Tensor, method: str = "auto", cancel: CancelToken | None = None,
                    rtol: float = 0.0) -> tuple[np.ndarray, str]:
    """All min(N, kd) singular values of G and the route that produced them: the Gram route
    (see `_from_gram`) when G is at least 2× longer than wide (measured: an SVD of a 10,059 × 4,096
    G took 22 s, the Gram and eigh a fraction of that), else an SVD."""
    n, m = G.shape
    small, large = min(n, m), max(n, m)
    if small == 0:
        return np.zeros(0), "empty"
    if method == "auto":
        method = "gram" if large >= 2 * small else "svd"
    if method == "svd":
        return svdvals(G), "svd"
    if method != "gram":
        raise ValueError(f"unknown spectrum method {method!r}")
    A = _tall(G)
    lam, V = gram_eigh(A)
    return _from_gram(lam, V, lambda Vs: A @ Vs.to(A.device), lambda: svdvals(G), (n, m), rtol, cancel)


def factored_singular_values(factors, cancel: CancelToken | None = None, rtol: float = 0.0) -> tuple[np.ndarray, str]:
    """The same rule on K = GᵀG built from per-layer factors (engine/gram.py); G is formed only if a
    full SVD must decide. Needs kd ≤ N (the Gram is kd × kd)."""
    K = factors.gram(cancel)
    lam, V = torch.linalg.eigh(K)
    lam = lam.flip(0).cpu().numpy()
    V = V.flip(1)
    sv, route = _from_gram(lam, V, factors.g_times, lambda: svdvals(factors.materialize()),
                           (factors.n_params, factors.n_outputs), rtol, cancel)
    return sv, "factored " + route


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
    sv, used = singular_values(G, method, cancel, rtol=rtol)
    return analyse(sv, G.shape[0], G.shape[1], rtol=rtol, method=used)
