"""The `levelset` section: the probe of the behaviour level set around θ* (rank constancy, a walk on
the level set radius by radius, the per-radius dimension and manifold verdicts, Claim 1's exponents)."""

from __future__ import annotations

from ._sections import Section
from ._words import LocalMode


class RankRing(Section, kw_only=True):
    """rank(G) at random points on a sphere of one radius around θ*."""

    radius: float
    ranks: list[int]


class LocalProbe(Section, kw_only=True):
    """The branch of the level set through one retracted point: its dimension and tangent space."""

    step: float
    candidates: int
    rank_J: int
    mode: LocalMode
    directions: int
    converged: int
    dim: int | None
    extents: list[float]
    retention: float | None = None  # sampled mode only
    retention_se: float | None = None
    why: str | None = None  # why the dimension is unknown or only estimated
    kink: float
    smooth: bool


class WalkPoint(Section, kw_only=True):
    """One retraction onto the level set from a random point at distance `radius` from θ*."""

    residual_before: float
    iterations: int
    jacobian_norm_start: float | None = None  # absent when the start was already on the level set
    residual_after: float
    converged: bool
    stop: str
    last_step: float | None = None
    radius: float
    distance: float
    returned: bool
    local: LocalProbe | None = None  # converged and away from θ*


class Evaluations(Section, kw_only=True):
    F: int
    J: int


class Walk(Section, kw_only=True):
    radii: list[float]
    radius_rule: str
    points_per_radius: int
    directions: int
    converged: int
    retraction: str
    local_probe: str
    returned_rule: str
    evaluations: Evaluations
    jacobian_route: str | None  # None where there was no walk (rank(G) = N: the level set is a point)
    seconds: float | None
    points: list[WalkPoint]


class RadiusVerdict(Section, kw_only=True):
    """The dimension and manifold verdict at one radius."""

    radius: float
    points: int
    converged: int
    returned: int
    branch_dims: dict[str, int]  # branch dimension (as a string) -> points on such a branch
    unresolved_points: int
    kinked_points: int
    max_angle_deg: float | None
    spread_deg: float | None
    dimension: int | None
    manifold: bool | None
    why: str


class Claim1(Section, kw_only=True):
    null_exponent: float | None
    row_exponent: float | None
    null_exponents: list[float | None]
    row_exponents: list[float | None]
    steps: list[float]
    null_changes: list[list[float]]
    row_changes: list[list[float]]
    holds: bool | None
    tolerance: float
    rule: str
    why: str


class LevelSetRules(Section, kw_only=True):
    same_sin: float
    differ_sin: float
    pca_threshold: float
    return_frac: float
    local_frac: float
    ker_rtol: float
    xtol: float
    res_rtol: float
    floor_ulps: float
    manifold: str


class LevelSet(Section, kw_only=True):
    locally_constant_rank: bool
    rank_at_theta: int
    rank_probes: list[RankRing]
    estimated_dim: int | None
    estimated_dim_method: str
    manifold: bool | None  # None: cannot tell
    manifold_why: str
    radius_dependent: bool
    by_radius: list[RadiusVerdict]
    kernel_dim: int
    generic_dim: int | None
    n_params: int
    n_outputs: int
    walk: Walk
    claim1: Claim1
    rules: LevelSetRules
    meaning: list[str]


__all__ = [
    "Claim1", "Evaluations", "LevelSet", "LevelSetRules", "LocalProbe", "RadiusVerdict", "RankRing", "Walk",
    "WalkPoint",
]
