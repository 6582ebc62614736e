"""The `hessian` section: H beside its Gauss-Newton term, the one rank rule, Weyl's counts, Claim 3."""

from __future__ import annotations

from typing import Literal

import msgspec

from ._sections import Section
from ._words import Claim3Verdict, GovernedBy, LossHessianKind, LossName, On, Regime


class Hypothesis(Section, kw_only=True):
    holds: bool
    value: float
    threshold: float
    rule: str


class LossHessianHypothesis(Hypothesis, kw_only=True):
    kind: LossHessianKind


class Hypotheses(Section, kw_only=True):
    critical_point: Hypothesis
    zero_residual: Hypothesis
    loss_hessian_positive: LossHessianHypothesis


class Claim3(Section, kw_only=True):
    verdict: Claim3Verdict
    why: str


class HessianRankAtRtol(Section, kw_only=True):
    G: int
    GGN: int
    H: int | None  # None: not measured (Lanczos)
    residual: int | None
    H_threshold: float
    floor_applied: bool


class RuleOfG(Section, kw_only=True):
    rule: str
    rtol: float
    scale: float
    threshold: float
    near_factor: float
    near: int
    rank: int
    rank_exact: bool


class RuleOfGGN(RuleOfG, kw_only=True):
    from_: str = msgspec.field(name="from")


class RuleOfH(Section, kw_only=True):
    rule: str
    rtol: float
    scale: float
    threshold: float
    from_G: float
    floor: float
    floor_applied: bool
    governed_by: GovernedBy
    why: str
    near: int | None
    rank: int | None


class HessianRankRule(Section, kw_only=True):
    statement: str
    G: RuleOfG
    GGN: RuleOfGGN
    H: RuleOfH
    rank_at_rtol: str


class Weyl(Section, kw_only=True):
    residual_norm: float
    band: float
    band_widened: bool
    resolution: float
    outside_band: int
    outside_band_exact: bool
    above_band: int
    below_band: int
    ggn_above_2r: int
    rank_ggn: int
    hidden_by_residual: int
    agrees: bool
    n_eigenvalues_H: int
    n_eigenvalues_H_total: int
    n_eigenvalues_GGN: int
    residual_norm_from: str
    rule: str
    statement: str


class Density(Section, kw_only=True):
    method: str
    n_vectors: int
    steps: int
    sigma: float
    nodes: list[float]
    weights: list[float]
    grid: list[float]
    values: list[float]


class HessianSection(Section, kw_only=True):
    """`hessian`: H beside its Gauss-Newton term, Claim 3's hypotheses and verdict."""

    method: Literal["dense", "lanczos"]
    reduction: str
    loss: LossName
    on: On
    loss_formula: str
    n_params: int
    n_outputs: int
    rank: int | None
    rank_ggn: int
    rank_residual: int | None
    rank_G: int
    rank_G_resolvable: int
    rank_method: str
    tolerance: float
    tolerance_rule: str
    rank_rule: HessianRankRule | None
    rank_ggn_exact: bool
    rank_at_rtol: dict[str, HessianRankAtRtol] | None
    eigenvalues: list[float]
    eigenvalues_order: str
    ggn_eigenvalues: list[float] | None
    residual_eigenvalues: list[float] | None
    n_negative: int | None
    lambda_max: float
    lambda_min: float
    grad_norm: float
    grad_norm_via_G: float
    output_residual_norm: float
    output_residual_raw_norm: float
    residual_norm: float
    hessian_norm: float
    residual_rel: float | None
    loss_hessian: LossHessianKind
    loss_hessian_positive: bool
    q_range: list[float]  # [q_min, q_max]
    hypotheses: Hypotheses
    claim3: Claim3
    weyl: Weyl | None
    regime: Regime
    notes: list[str]
    density: Density | None
    matvecs: int


__all__ = [
    "Claim3", "Density", "HessianRankAtRtol", "HessianRankRule", "HessianSection", "Hypotheses", "Hypothesis",
    "LossHessianHypothesis", "RuleOfG", "RuleOfGGN", "RuleOfH", "Weyl",
]
