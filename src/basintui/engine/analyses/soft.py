"""The soft dimension beside the hard rank (issue 18 item 2): is the rank a cliff or a slope?

N_eff(z) = Σ λᵢ / (λᵢ + z) over the eigenvalues λ of the Gauss-Newton matrix (of GGᵀ, λ = σ(G)², where the
Hessian stage did not run), and of H where the Hessian is dense (its negative eigenvalues left out, and
counted), over z from 10⁻¹⁸·λ₁ to 10²·λ₁; log det(GGᵀ + εI) = Σᵢ log(σᵢ² + ε) + (N − m)·log ε (m = min(N, kd)
singular values, the other N − m eigenvalues of GGᵀ are 0) over ε on the same grid. The rank's threshold is
marked on both: z = τ² for GGᵀ (τ = G's tolerance), the GGN's own threshold for the GGN.

A cliff: few eigenvalues within two decades of the threshold either side, so N_eff(threshold/100) −
N_eff(100·threshold) ≤ 1 and the rank does not depend on where the line is drawn. A slope: more, so the
count of "flat" directions is a matter of scale, and N_eff at the scale one cares about is the better number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DECADES_BELOW, DECADES_ABOVE, POINTS_PER_DECADE = 18, 2, 2
CLIFF_WIDTH = 2.0  # decades either side of the threshold that decide cliff or slope
CLIFF_EIGENVALUES = 1.0  # N_eff may change by at most this much across that window for a cliff


def n_eff(lam: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Σ λ/(λ + z) for each z (λ ≥ 0, z > 0), in float64."""
    lam = np.asarray(lam, dtype=np.float64)[:, None]
    return (lam / (lam + np.asarray(z, dtype=np.float64)[None, :])).sum(axis=0)


def logdet(sv: np.ndarray, n: int, eps: np.ndarray) -> np.ndarray:
    """log det(GGᵀ + εI) for G (n × kd) with singular values `sv` (all min(n, kd) of them), for each ε > 0."""
    lam = np.asarray(sv, dtype=np.float64) ** 2
    eps = np.asarray(eps, dtype=np.float64)
    return np.log(lam[:, None] + eps[None, :]).sum(axis=0) + (n - len(lam)) * np.log(eps)


def grid(scale: float, threshold: float) -> np.ndarray:
    """z values: POINTS_PER_DECADE per decade from 10^-DECADES_BELOW to 10^DECADES_ABOVE times `scale`, and
    the threshold itself (so the curve passes through it)."""
    scale = scale if scale > 0 else 1.0
    z = scale * np.logspace(-DECADES_BELOW, DECADES_ABOVE, (DECADES_BELOW + DECADES_ABOVE) * POINTS_PER_DECADE + 1)
    if threshold > 0:
        z = np.unique(np.concatenate([z, [threshold]]))
    return z


@dataclass
class Curve:
    """N_eff of one matrix: its name, the rank's threshold (in eigenvalue units) and the rank there."""

    of: str  # "GGN", "GGᵀ" or "H"
    threshold: float
    rank: int
    points: list[tuple[float, float]]  # (z, N_eff)
    n_eigenvalues: int
    left_out: int = 0  # H: negative eigenvalues left out
    cliff: bool = True
    window: tuple[float, float] = (0.0, 0.0)  # N_eff at threshold·10^CLIFF_WIDTH and threshold/10^CLIFF_WIDTH

    def to_dict(self) -> dict:
        return {"of": self.of, "threshold": self.threshold, "rank": self.rank,
                "points": [{"z": z, "value": v} for z, v in self.points], "n_eigenvalues": self.n_eigenvalues,
                "left_out": self.left_out, "cliff": self.cliff, "window": list(self.window)}


def curve(of: str, lam: np.ndarray, threshold: float) -> Curve:
    """N_eff over the grid, with the rank (eigenvalues above `threshold`) and the cliff/slope reading."""
    lam = np.asarray(lam, dtype=np.float64)
    neg = int(np.sum(lam < 0))
    lam = np.clip(lam, 0.0, None)
    top = float(lam.max()) if len(lam) else 0.0
    z = grid(top, threshold)
    values = n_eff(lam, z)
    at = max(threshold, np.finfo(np.float64).tiny)  # G = 0 has threshold 0: the window sits at the smallest z
    lo, hi = n_eff(lam, np.array([at * 10**CLIFF_WIDTH, at / 10**CLIFF_WIDTH]))
    return Curve(of, threshold, int(np.sum(lam > threshold)), list(zip(z.tolist(), values.tolist())), len(lam),
                 neg, bool(hi - lo <= CLIFF_EIGENVALUES), (float(lo), float(hi)))


@dataclass
class Soft:
    """The report's `soft` section: N_eff of the GGN (or GGᵀ) and of H, log det(GGᵀ + εI)."""

    primary: Curve
    hessian: Curve | None
    logdet: list[tuple[float, float]]
    eps_threshold: float
    n_params: int
    complete: bool = True  # False: only G's top singular values are known (matrix-free route)
    meaning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        p = self.primary
        return {"of": p.of, "n_eff": p.to_dict()["points"], "threshold": p.threshold, "rank": p.rank,
                "cliff": p.cliff, "window": list(p.window), "n_eigenvalues": p.n_eigenvalues,
                "n_eff_H": None if self.hessian is None else self.hessian.to_dict(),
                "logdet": [{"eps": e, "value": v} for e, v in self.logdet], "eps_threshold": self.eps_threshold,
                "n_params": self.n_params, "complete": self.complete, "meaning": self.meaning}


def analyse_values(sv: np.ndarray, tol: float, n: int, ggn: tuple[np.ndarray, float] | None = None,
                   h: tuple[np.ndarray, float] | None = None, complete: bool = True) -> Soft:
    """From G's singular values and tolerance (n parameters), and where the Hessian stage ran the GGN's and
    (dense) H's eigenvalues with their thresholds."""
    sv = np.asarray(sv, dtype=np.float64)
    primary = curve("GGN", *ggn) if ggn is not None else curve("GGᵀ", sv**2, tol**2)
    hess = curve("H", *h) if h is not None else None
    eps = grid(float(sv[0]) ** 2 if len(sv) else 1.0, tol**2)
    out = Soft(primary, hess, list(zip(eps.tolist(), logdet(sv, n, eps).tolist())), tol**2, n, complete)
    out.meaning = _meaning(out)
    if not complete:
        out.meaning.insert(0, f"Only the top {len(sv)} singular values of G are known (the matrix-free route): "
                              "N_eff of GGᵀ is a lower bound, and log det counts the unknown ones as 0 (a lower "
                              "bound too).")
    return out


def _meaning(s: Soft) -> list[str]:
    p = s.primary
    lo, hi = p.window
    shape = ("a cliff: the rank does not depend on where the threshold is drawn" if p.cliff else
             "a slope: how many directions count as flat is a matter of scale, and N_eff at the scale you care "
             "about says more than the rank")
    first = (f"N_eff of {p.of} falls from {hi:.1f} at z = threshold/10^{CLIFF_WIDTH:g} to {lo:.1f} at "
             f"threshold·10^{CLIFF_WIDTH:g} (rank {p.rank} at the threshold {p.threshold:.3g}): {shape}.")
    lines = [first]
    if s.hessian is not None and s.hessian.left_out:
        lines.append(f"H has {s.hessian.left_out} negative eigenvalues, left out of its N_eff: of its positive ones "
                     f"{s.hessian.rank} lie above the threshold (rank(H) counts |λ| above it, negatives included).")
    lines.append("log det(GGᵀ + εI) has slope N − N_eff(ε) in log ε: it bends where eigenvalues of GGᵀ cross ε.")
    return lines


def analyse(ctx, report) -> Soft:
    """The session's stage: G's spectrum, and the Hessian section's GGN (and dense H) where it ran."""
    g = ctx.spectrum
    hess = report.hessian
    ggn = h = None
    if hess is not None and getattr(hess, "ggn_eigenvalues", None) is not None:
        ggn = (np.asarray(hess.ggn_eigenvalues, dtype=np.float64), _threshold(hess, "GGN"))
    if hess is not None and getattr(hess, "method", "") == "dense":
        h = (np.asarray(hess.eigenvalues, dtype=np.float64), _threshold(hess, "H"))
    return analyse_values(g.singular_values, g.tolerance, g.n_params, ggn, h, complete=bool(g.complete))


def _threshold(hess, which: str) -> float:
    rule = getattr(hess, "rank_rule", None)
    if isinstance(rule, dict):
        return float(rule[which]["threshold"])
    if rule is not None and hasattr(rule, which):
        return float(getattr(rule, which).threshold)
    return float(hess.tolerance)
