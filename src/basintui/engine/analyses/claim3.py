"""Claim 3's rank rule and verdict (DESIGN §1): H's threshold under G's rule (`HessianRule`), the Weyl
counts that test Claim 3 up to the residual (`Weyl`), and the verdict with its reasons (`claim3_verdict`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..numerics import spectrum
from ..numerics.tolerances import EPS

SMALL_RESIDUAL_REL = 1e-6  # below this ‖H − GGN‖/‖H‖ the why-text calls the residual term small


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


def claim3_verdict(*, rank, rank_G, rank_ggn, rank_res, rank_G_res, critical, zero_res, q_pos, oc, grad_norm,
                   res_norm, q_min, q_max, residual_rel, d, k, weyl: Weyl | None = None, rank_G_exact: bool = True,
                   rank_ggn_exact: bool = True, floor_applied: bool = True) -> tuple[str, str]:
    """Claim 3 (rank H = rank G at a minimum): holds | holds_up_to_residual | fails | not_applicable, and why."""
    ge = "" if rank_G_exact else "≥ "
    measured = (f"Measured: rank(H) = {rank if rank is not None else 'not measured'}, rank(G) = {ge}{rank_G}, "
                f"rank(GGN) = {'' if rank_ggn_exact else '≥ '}{rank_ggn}"
                + (f", rank(H − GGN) = {rank_res}" if rank_res is not None else "")
                + (f", ‖H − GGN‖/‖H‖ = {residual_rel:.3g}" if residual_rel is not None else "") + ".")
    missing = _residual_missing(critical, zero_res, grad_norm, res_norm, residual_rel, rank_res)
    q_missing = _q_missing(q_pos, oc.kind, d, k, rank_ggn, rank_G, q_min, q_max)
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


def _residual_missing(critical: bool, zero_res: bool, grad_norm: float, res_norm: float,
                      residual_rel: float | None, rank_res: int | None) -> list[str]:
    """The first two hypotheses that fail, in words: a critical point, a zero residual."""
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
    return missing


def _q_missing(q_pos: bool, kind: str, d: int, k: int, rank_ggn: int, rank_G: int, q_min: float,
               q_max: float) -> list[str]:
    """The third hypothesis (Q positive definite) when it fails, in words."""
    if q_pos:
        return []
    if kind == "full":
        return [f"the loss Hessian in output space is not diagonal: ce on logits has Q_i = diag(p) − ppᵀ, "
                f"singular (rank d − 1 = {d - 1} per input), so rank(GGN) = {rank_ggn} can fall below "
                f"rank(G) = {rank_G} (bound k(d − 1) = {k * (d - 1)})"]
    return [f"the loss Hessian in output space is not positive definite (smallest eigenvalue "
            f"{q_min:.3g} of at most {q_max:.3g}), so GGN loses rank where Q does"]


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
