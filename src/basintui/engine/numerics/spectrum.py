"""Singular values of G, numerical rank and what it means (DESIGN §1).

Every rank decision here is float64. The default tolerance is the numpy rule
τ = σ₁ · max(N, kd) · ε; `rtol > 0` replaces it with τ = rtol · σ₁. The rank at other
tolerances, the largest gap and the effective rank are always reported beside it, so the
dependence on the tolerance is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .. import progress
from ..cancel import CancelToken, run_cancellable
from ...limits import STREAM_BYTES, fmt_bytes
from ..errors import ResourceError
from ..memory import check_fits
from .tolerances import EPS, NEAR_FACTOR, RTOLS

GRAM_TRUST_FACTOR = 1e3  # trust the Gram alone when λ_min ≥ 1e3·m·ε·λ₁ (σ error ≤ 5e-4 relative, bound)
# The Ritz tail: first only the untrusted eigenvalues (below the trust threshold itself); when a Ritz value
# of that narrow tail could lie on the wrong side of a threshold, a wide tail (below 100× the trust
# threshold, σ ≲ 1.5e-4·σ₁ at m = 1024) is refined before an exact method is asked: its smallest kept value
# is 10× larger, so its Ritz values carry 10× less contamination. The narrow tail keeps every Gram value the
# no-tail route keeps (relative error ≤ 5e-4 by the bound, ~1e-9 measured) and costs a fraction of the wide
# one where N ≫ kd: at N = 1e6, kd = 4,096 the wide tail held 1,529 values, the narrow one 36.
TAIL_FACTOR = 1.0
WIDE_TAIL_FACTOR = 100.0
WIDE_DIRECTLY = 2.0  # refine the wide tail at once when it holds at most this many times the narrow tail's values


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
    complete: bool = True  # False: only the top of the spectrum (the matrix-free route)
    rank_exact: bool = True  # False: every value found exceeds the tolerance, so rank ≥ `rank` only
    rank_at_rtol_exact: dict[str, bool] | None = None  # the same, per rtol (None: all exact)
    rtol: float = 0.0  # the preset's analysis.rtol (0: the numpy rule)

    @property
    def rule(self) -> RankRule:
        """The rank rule this spectrum was decided by; every other rank in the report uses it."""
        s1 = float(self.singular_values[0]) if len(self.singular_values) else 0.0
        return RankRule(self.tolerance_rule, self.rtol, s1, self.tolerance, max(self.n_params, self.n_outputs))

    @property
    def near_threshold(self) -> int:
        """Singular values within a factor 2 of the tolerance: the rank there is decided by rounding."""
        return near_threshold(self.singular_values, self.tolerance)

    @property
    def regime(self) -> str:
        if self.n_params > self.n_outputs:
            return "over"
        return "under" if self.n_params < self.n_outputs else "square"

    @property
    def submersion(self) -> bool | None:
        """rank(G) = kd; None when only a lower bound on the rank is known and it is below kd."""
        if not self.rank_exact and self.rank < self.n_outputs:
            return None
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
        return count_above(self.singular_values, tol)


@dataclass(frozen=True)
class RankRule:
    """The one rule that decides every rank in a report (DESIGN §1): σ counts when σ > threshold.

    `scale` is σ₁ of the matrix whose singular values are counted (G, or G·Q^½ for GGN);
    threshold = rtol · scale when rtol > 0, else scale · max(shape) · ε (the numpy rule). A value in
    [threshold / NEAR_FACTOR, threshold · NEAR_FACTOR] is near the threshold: the rank there is decided
    by rounding, and `near` counts such values so the report can say so."""

    rule: str
    rtol: float
    scale: float
    threshold: float
    size: int  # max(shape): the numpy rule's factor

    @classmethod
    def for_matrix(cls, sigma_max: float, shape: tuple[int, int], rtol: float = 0.0) -> "RankRule":
        tol, rule = default_tolerance(sigma_max, shape, rtol)
        return cls(rule=rule, rtol=float(rtol), scale=float(sigma_max), threshold=float(tol), size=int(max(shape)))

    def rescaled(self, factor: float) -> "RankRule":
        """The same rule for the matrix c·A (c = factor > 0): every σ and the threshold times c."""
        return RankRule(self.rule, self.rtol, self.scale * factor, self.threshold * factor, self.size)

    def count(self, sv: np.ndarray) -> int:
        return count_above(sv, self.threshold)

    def near(self, sv: np.ndarray) -> int:
        return near_threshold(sv, self.threshold)

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "rtol": self.rtol, "scale": self.scale, "threshold": self.threshold,
                "near_factor": NEAR_FACTOR}


def count_above(sv: np.ndarray, tol: float) -> int:
    """The rank rule itself: how many singular values exceed the threshold (float64)."""
    return int(np.count_nonzero(np.asarray(sv, dtype=np.float64) > tol))


def near_threshold(sv: np.ndarray, tol: float) -> int:
    """How many singular values lie within a factor NEAR_FACTOR of the threshold (either side)."""
    s = np.asarray(sv, dtype=np.float64)
    if tol <= 0:
        return 0
    return int(np.count_nonzero((s >= tol / NEAR_FACTOR) & (s <= tol * NEAR_FACTOR)))


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


MAX_RITZ_LEVELS = 8  # each level shrinks the unrefined scale by ≥ 3e-4 (σ); 5 reach below ε·σ₁


class RowBlocks(Protocol):
    """A tall matrix (here G, or Gᵀ when N < kd) read in consecutive row blocks, never whole."""

    n_rows: int
    n_cols: int

    def blocks(self, V: torch.Tensor | None = None,
               cancel: CancelToken | None = None) -> Iterator[torch.Tensor]:
        """Each block of rows in order, times V when V is given (A_c or A_c·V)."""
        ...


@dataclass(frozen=True)
class DenseRows:
    """Row blocks of a tall matrix that is already in memory."""

    A: torch.Tensor
    budget_bytes: int = STREAM_BYTES

    @property
    def n_rows(self) -> int:
        return self.A.shape[0]

    @property
    def n_cols(self) -> int:
        return self.A.shape[1]

    def blocks(self, V: torch.Tensor | None = None,
               cancel: CancelToken | None = None) -> Iterator[torch.Tensor]:
        width = self.n_cols if V is None else V.shape[1]
        rows = max(1, self.budget_bytes // (8 * max(width, 1)))
        for r0 in range(0, self.n_rows, rows):
            if cancel is not None:
                cancel.check()
            block = self.A[r0: r0 + rows]
            yield block if V is None else block @ V


def gram_of(A: torch.Tensor) -> torch.Tensor:
    """AᵀA for a tall A (large × small)."""
    if A.is_cuda:
        return A.T @ A
    a = A.numpy()
    return torch.from_numpy(a.T @ a)  # numpy runs syrk for this product: half the flops of a general GEMM


def streamed_gram(source: RowBlocks, V: torch.Tensor | None = None,
                  cancel: CancelToken | None = None) -> torch.Tensor:
    """(A·V)ᵀ(A·V) (or AᵀA when V is None), summed over row blocks: memory one block plus the result."""
    width = source.n_cols if V is None else V.shape[1]
    M = None
    meter = progress.of(cancel)
    meter.expect(source.n_rows, "rows")
    done = 0
    for Y in source.blocks(V, cancel):
        meter.update(done, upto=done + Y.shape[0])
        P = run_cancellable(lambda Y=Y: gram_of(Y), cancel)  # a block's Gram can take seconds
        M = P if M is None else M.add_(P)
        done += Y.shape[0]
    return torch.zeros(width, width, dtype=torch.float64) if M is None else M


def gram_parts(shape: tuple[int, int]) -> dict[str, tuple[float, float]]:
    """A Gram route's progress in % of its arithmetic: the Gram (small² · large), its eigenvalues (about
    4/3 · small³), then, only when the Gram cannot resolve the smallest values, the Ritz tail (another pass
    over the same blocks, thinner: 0.3 × the Gram) and rarely an exact decision (0.2 × the Gram)."""
    small, large = float(min(shape)), float(max(shape))
    gram = max(small * small * large, 1.0)
    cost = {"gram": gram, "eig": 4.0 / 3.0 * small**3, "ritz": 0.3 * gram, "exact": 0.2 * gram}
    total, at, parts = sum(cost.values()), 0.0, {}
    for name, c in cost.items():
        parts[name] = (100.0 * at / total, 100.0 * (at + c) / total)
        at += c
    return parts


SUBSET_FRACTION = 0.15  # up to this share of the eigenvectors, LAPACK's subset driver beats a full eigh


def gram_values(K: torch.Tensor) -> np.ndarray:
    """Eigenvalues of a Gram, descending, without eigenvectors: at k = 1,024 this took 0.085 s
    against 0.17 s for eigh with vectors, and 2.0 s against 10.3 s at k = 4,096 (2-core box).
    scipy's eigenvalues-only driver was faster alone at k ≤ 2,048 (0.058 s against 0.116 s) but
    slower inside the route (0.18 s against 0.15 s median): its BLAS threads and torch's contend."""
    return torch.linalg.eigvalsh(K).flip(0).cpu().numpy()


def smallest_vectors(K: torch.Tensor, s: int) -> torch.Tensor:
    """Orthonormal eigenvectors of the s smallest eigenvalues of K (m × s): LAPACK's subset driver
    (syevr) for a small share, a full eigh otherwise (measured at m = 4,096: 4.9 s for 10%, 19.5 s
    for 45%, against 10.3 s for all)."""
    m = K.shape[0]
    if not K.is_cuda and s <= SUBSET_FRACTION * m:
        import scipy.linalg

        _, W = scipy.linalg.eigh(K.numpy(), subset_by_index=[0, s - 1], driver="evr")
        return torch.from_numpy(np.ascontiguousarray(W))
    return torch.linalg.eigh(K)[1][:, :s]


def _untrusted(lam: np.ndarray, factor: float = TAIL_FACTOR) -> int:
    """How many of the smallest eigenvalues (descending λ) of a Gram need refinement: those below
    `factor` × the trust threshold GRAM_TRUST_FACTOR·m·ε·λ₁; 0 when the smallest is trusted."""
    m = lam.size
    if m == 0 or lam[0] <= 0 or lam[-1] >= GRAM_TRUST_FACTOR * m * EPS * lam[0]:
        return 0
    return int(np.count_nonzero(lam < factor * GRAM_TRUST_FACTOR * m * EPS * lam[0]))


def ritz_tail(source: RowBlocks, V: torch.Tensor, floor: float, cancel: CancelToken | None = None,
              factor: float = TAIL_FACTOR) -> tuple[np.ndarray, int]:
    """Singular values of A·V (V orthonormal, small × s) without holding A·V: the Gram of A·V summed
    over row blocks, its eigenvalues trusted down to about s·ε times its own top, and the rest
    refined again the same way (A·(V·W_tail)) until what is left lies provably below `floor`.

    A·V is formed from A's entries, so its error is about ε·σ₁(A), not ε·λ₁ as in the Gram of A:
    its own Gram resolves the tail's values to about √(s·ε)·σ_max(tail) and the next level to that
    factor again (each level shrinks the unrefined scale by ≥ 3e-4 for s ≤ 4096). Returns the
    values (descending) and how many levels ran."""
    values: list[np.ndarray] = []
    level = 0
    while V.shape[1] > 0:
        level += 1
        M = streamed_gram(source, V, cancel)
        mu = np.maximum(gram_values(M), 0.0)
        s = _untrusted(mu, factor)
        # The unrefined part is bounded by √(factor·threshold·μ₁) (plus ~ε·s·μ₁ of rounding).
        bound = float(np.sqrt(factor * GRAM_TRUST_FACTOR * mu.size * EPS * mu[0] * 1.01)) if mu.size else 0.0
        if s == 0 or bound < floor or level >= MAX_RITZ_LEVELS:
            values.append(np.sqrt(mu))
            break
        values.append(np.sqrt(mu[: mu.size - s]))
        V = V @ smallest_vectors(M, s).to(V.device)
    return np.sort(np.concatenate(values))[::-1] if values else np.zeros(0), level


def streamed_r(source: RowBlocks, cancel: CancelToken | None = None) -> torch.Tensor:
    """The R factor of A = QR (at most n_cols × n_cols), folded over A's row blocks (TSQR): R ← R of [R; A_c].

    Orthogonal transformations only, so σ(R) = σ(A) up to a backward error of about ε·‖A‖ — as exact as
    an SVD of A itself, which a Gram (squared condition number) and Ritz values (upper bounds on the
    small singular values, contaminated by an inexact subspace) are not. Memory: R plus one block."""
    R: torch.Tensor | None = None
    meter = progress.of(cancel)
    meter.expect(source.n_rows, "rows")
    done = 0
    for Y in source.blocks(None, cancel):
        meter.update(done, upto=done + Y.shape[0])
        done += Y.shape[0]
        M = Y.to(torch.float64) if R is None else torch.cat([R, Y.to(torch.float64)])
        R = torch.linalg.qr(M, mode="r")[1]
        if R.shape[0] > R.shape[1]:
            R = R[: R.shape[1]]
    if R is None:
        return torch.zeros(0, source.n_cols, dtype=torch.float64)
    return R


def _tsqr_bytes(n_cols: int) -> int:
    """R, the stacked [R; block] and LAPACK's copy of it."""
    return 8 * n_cols * n_cols + 2 * (8 * n_cols * n_cols + STREAM_BYTES)


CONTAMINATION_SAFETY = 10.0  # measured errors stayed ≤ 0.06 × the estimate (30 constructed spectra, 2 nets)


def _uncertain(sv_tail: np.ndarray, thresholds: list[float], contamination: float) -> bool:
    """Whether some Ritz value could lie on the other side of a threshold than the exact value.

    Ritz values of A·V are upper bounds on the smallest singular values (interlacing), so one below a
    threshold is certified below it. One above may be an inexact subspace's contamination: the Gram's
    eigenvectors carry errors of about ε·λ₁/λ_j towards each kept direction j, which adds about
    m·ε·λ₁/σ_h (σ_h the smallest kept value) to A·V. A value in (t / NEAR_FACTOR, NEAR_FACTOR·t +
    CONTAMINATION_SAFETY × that contamination) is not certified."""
    for t in thresholds:
        lo, hi = t / NEAR_FACTOR, t * NEAR_FACTOR + CONTAMINATION_SAFETY * contamination
        if ((sv_tail > lo) & (sv_tail < hi)).any():
            return True
    return False


def _exact_decision(source: RowBlocks, full_svd: Callable[[], np.ndarray] | None, full_svd_bytes: int,
                    small: int, device: torch.device, cancel: CancelToken | None) -> tuple[np.ndarray, str] | None:
    """All singular values by a backward-stable method: a full SVD of G when G is whole and the SVD fits,
    else the SVD of G's R factor folded over its row blocks (TSQR); None when neither fits."""
    if cancel is not None:
        cancel.check()
    if full_svd is not None:
        try:
            check_fits("data.n", "a full SVD of G", full_svd_bytes, device, "")
            return run_cancellable(full_svd, cancel), "svd"
        except ResourceError:
            pass
    try:
        check_fits("data.n", "the R factor of G folded over row blocks", _tsqr_bytes(small), device, "")
    except ResourceError:
        return None
    R = streamed_r(source, cancel)
    return run_cancellable(lambda: svdvals(R), cancel) if R.numel() else np.zeros(0), "svd of G's R factor (streamed QR over row blocks)"


def _refine_tail(K: torch.Tensor, source: RowBlocks, lam: np.ndarray, s: int, thresholds: list[float],
                 shape: tuple[int, int], factor: float,
                 cancel: CancelToken | None) -> tuple[np.ndarray, np.ndarray, float, str]:
    """The s smallest of the Gram's values refined by Rayleigh-Ritz (`ritz_tail`): all values (descending),
    the refined tail, its contamination bound m·ε·λ₁/σ_h (σ_h the smallest value kept) and a description."""
    small = lam.size
    floor = min(thresholds) / NEAR_FACTOR
    block_rows = max(1, STREAM_BYTES // (8 * s))
    check_fits("data.n", f"refining the {s} smallest singular values (their {s} × {s} Gram, eigenvectors and "
                         f"a block of {min(block_rows, max(shape))} rows of G·V)",
               4 * 8 * s * s + 8 * small * s + min(STREAM_BYTES, 8 * max(shape) * s), K.device,
               "use fewer training inputs (data.n) or a smaller model; the Gram alone cannot resolve them")
    V = run_cancellable(lambda: smallest_vectors(K, s), cancel)
    sv_tail, levels = ritz_tail(source, V, floor, cancel, factor)
    head = np.sqrt(np.maximum(lam[: small - s], 0.0))
    sigma_h = float(head[-1]) if head.size and head[-1] > 0 else float(np.sqrt(lam[0]))
    contamination = small * EPS * float(lam[0]) / sigma_h
    how = f"{s} smallest σ refined by streamed Rayleigh-Ritz on G·V, {levels} level{'s' if levels > 1 else ''}"
    return np.concatenate([head, sv_tail]), sv_tail, contamination, how


def _from_gram(K: torch.Tensor, source: RowBlocks, full_svd: Callable[[], np.ndarray] | None,
               full_svd_bytes: int, shape: tuple[int, int], rtol: float,
               cancel: CancelToken | None) -> tuple[np.ndarray, str]:
    """Singular values from the Gram K's eigenvalues, refined where they can't be trusted.

    The eigenvalues are exact enough only down to about m·ε·λ₁. When the smallest is below
    GRAM_TRUST_FACTOR·m·ε·λ₁, the tail (λ below that threshold; below WIDE_TAIL_FACTOR times it when the
    narrow tail leaves a value near a threshold) is refined by Rayleigh-Ritz (`ritz_tail`): the Gram's
    eigenvectors span the small singular subspace to about
    ε·λ₁/λ_j, so the singular values of A·V_tail recover the tail down to about m·ε·λ₁/σ_h (σ_h the
    smallest value kept from the Gram). A·V_tail is streamed in row blocks into its own small Gram, so
    the refinement needs s² + one block of memory, never the N × s product. Ritz values are upper
    bounds; where one could still lie on the wrong side of the tolerance or of an rtol threshold
    (`_uncertain`), an exact method decides (`_exact_decision`): a full SVD of G when it fits, else
    the SVD of G's R factor folded over the same row blocks. So every route gives the explicit SVD's
    rank wherever no singular value is near a threshold. Only when neither fits do the Ritz values
    decide, and the route says so.
    """
    meter = progress.of(cancel)  # the caller's gram_parts(shape): the Gram is done
    parts = gram_parts(shape)
    with meter.span(*parts["eig"]):
        lam = run_cancellable(lambda: gram_values(K), cancel)
    small = lam.size
    if lam[0] <= 0:
        return np.zeros(min(shape)), "gram-eigh"
    s = _untrusted(lam)
    if s == 0:
        return _fit(np.sqrt(lam), min(shape)), "gram-eigh"
    if cancel is not None:
        cancel.check()
    tol = default_tolerance(float(np.sqrt(lam[0])), shape, rtol)[0]
    sigma1 = float(np.sqrt(lam[0]))
    thresholds = [tol] + [float(key) * sigma1 for key in RTOLS]
    s_wide = _untrusted(lam, WIDE_TAIL_FACTOR)
    if s_wide <= WIDE_DIRECTLY * s:  # the narrow tail would save little: refine the wide one at once
        s = s_wide
    with meter.span(*parts["ritz"]):
        refined, sv_tail, contamination, how = _refine_tail(K, source, lam, s, thresholds, shape,
                                                            TAIL_FACTOR if s < s_wide else WIDE_TAIL_FACTOR, cancel)
        if _uncertain(sv_tail, thresholds, contamination) and s_wide > s:
            refined, sv_tail, contamination, how = _refine_tail(K, source, lam, s_wide, thresholds, shape,
                                                                WIDE_TAIL_FACTOR, cancel)
            how += f", after the narrow tail of {s} left a value near a threshold"
    if not _uncertain(sv_tail, thresholds, contamination):
        return _fit(refined, min(shape)), f"gram-eigh + Ritz tail ({how})"
    with meter.span(*parts["exact"]):
        exact = _exact_decision(source, full_svd, full_svd_bytes, small, K.device, cancel)
    why = (f"a Ritz value lay within {NEAR_FACTOR:g}× of a threshold or of its contamination bound "
           f"({CONTAMINATION_SAFETY:g} × {contamination:.2g})")
    if exact is None:
        return _fit(refined, min(shape)), (f"gram-eigh + Ritz tail ({how}); {why}, and neither a full SVD "
                         f"({fmt_bytes(full_svd_bytes)}) nor G's R factor ({fmt_bytes(_tsqr_bytes(small))}) fits, "
                         f"so the Ritz values (upper bounds on the small singular values) decided the rank")
    sv, method = exact
    return _fit(sv, min(shape)), f"{method} ({why}, so an exact method decided)"


def _fit(sv: np.ndarray, m: int) -> np.ndarray:
    """Exactly min(N, kd) values: a Gram wider than G has kd − N extra eigenvalues that are zero in exact
    arithmetic (the smallest, dropped); an SVD of a factor narrower than kd is padded with those zeros."""
    sv = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    return sv[:m] if sv.size >= m else np.concatenate([sv, np.zeros(m - sv.size)])


def _svd_bytes(shape: tuple[int, int]) -> int:
    """A full SVD of G: G, its tall float64 copy and LAPACK's workspace (~ the small side squared)."""
    n, m = shape
    return 2 * 8 * n * m + 8 * min(n, m) ** 2 + 8 * min(n, m) * max(n, m) // 4


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
    meter = progress.of(cancel)
    if method == "svd":
        meter.expect(1, "SVDs")
        meter.update(0, upto=1)
        return run_cancellable(lambda: svdvals(G), cancel), "svd"
    if method != "gram":
        raise ValueError(f"unknown spectrum method {method!r}")
    A = _tall(G)
    meter.expect(100, "%")
    with meter.span(*gram_parts(G.shape)["gram"]):
        K = run_cancellable(lambda: gram_of(A), cancel)
    return _from_gram(K, DenseRows(A), lambda: svdvals(G), 8 * small * small + 8 * large * small // 4,
                      (n, m), rtol, cancel)


def factored_singular_values(factors, cancel: CancelToken | None = None, rtol: float = 0.0) -> tuple[np.ndarray, str]:
    """The same rule on K = GᵀG built from per-layer factors (engine/routes/gram.py); G is formed only if a
    full SVD must decide and fits. Needs kd ≤ N (the Gram is kd × kd)."""
    meter = progress.of(cancel)
    shape = (factors.n_params, factors.n_outputs)
    meter.expect(100, "%")
    with meter.span(*gram_parts(shape)["gram"]):
        K = factors.gram(cancel)
    sv, route = _from_gram(K, factors, lambda: svdvals(factors.materialize()), _svd_bytes(shape),
                           shape, rtol, cancel)
    return sv, "factored " + route


def streamed_singular_values(source: RowBlocks, cancel: CancelToken | None = None,
                             rtol: float = 0.0) -> tuple[np.ndarray, str]:
    """The same rule for a G that is never whole in memory (engine/routes/stream.py: row blocks over
    parameter chunks): its Gram summed block by block, the tail refined by the same blocks."""
    gram = getattr(source, "gram", None)  # a source may sum its own Gram faster (stream.ParamChunks: in-place syrk)
    meter = progress.of(cancel)
    shape = (source.n_rows, source.n_cols)
    meter.expect(100, "%")
    with meter.span(*gram_parts(shape)["gram"]):
        K = gram(cancel) if gram is not None else streamed_gram(source, None, cancel)
    sv, route = _from_gram(K, source, None, _svd_bytes(shape), shape, rtol, cancel)
    return sv, "streamed " + route


def rank_from_top(sv_top: np.ndarray, tol: float, full_size: int) -> tuple[int, bool]:
    """(rank, exact) from the top singular values alone.

    If fewer than len(sv_top) values exceed `tol`, every further value is ≤ σ_s ≤ tol, so the
    rank is exactly that count (exact=True). If all of them exceed it, the rank is only known to
    be ≥ len(sv_top) (exact=False). With the whole spectrum (len(sv_top) == full_size) it is exact.
    Assumes sv_top really are the top values (a converged solve).
    """
    sv = np.asarray(sv_top, dtype=np.float64)
    count = count_above(sv, tol)
    exact = len(sv) >= full_size or count < len(sv)
    return count, exact


def analyse(sv: np.ndarray, n_params: int, n_outputs: int, *, rtol: float = 0.0, method: str = "",
            complete: bool = True) -> Spectrum:
    """Rank, ranks at other tolerances, gap and effective rank of the singular values `sv`. With
    `complete=False`, `sv` is only the top of the spectrum: a count of values above a tolerance is
    then exact when some value found lies at or below it (every later one is smaller still), and a
    lower bound otherwise."""
    sv = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    sigma_max = float(sv[0]) if len(sv) else 0.0
    tol, rule = default_tolerance(sigma_max, (n_params, n_outputs), rtol)
    full_size = len(sv) if complete else min(n_params, n_outputs)
    rank, rank_exact = rank_from_top(sv, tol, full_size)
    counted = {key: rank_from_top(sv, float(key) * sigma_max, full_size) for key in RTOLS}
    at = {key: c for key, (c, _) in counted.items()}
    full = len(sv) >= full_size
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
        complete=full,
        rank_exact=rank_exact,
        rank_at_rtol_exact=None if full else {key: e for key, (_, e) in counted.items()},
        rtol=float(rtol),
    )


def spectrum_of(G: torch.Tensor, *, rtol: float = 0.0, method: str = "auto",
                cancel: CancelToken | None = None) -> Spectrum:
    sv, used = singular_values(G, method, cancel, rtol=rtol)
    return analyse(sv, G.shape[0], G.shape[1], rtol=rtol, method=used)
