"""The `layers`, `dependent_inputs` and `layers_info` sections: per-block information loss and the
training inputs whose behavioural gradients are dependent."""

from __future__ import annotations

from ._sections import Section
from ._words import CollisionKind, GroupKind


class LayerRow(Section, kw_only=True):
    """One block of the network (a row of the layers table)."""

    index: int
    name: str
    n_params: int
    width: int
    classes: int
    largest_class: int
    bits_lost: float
    bits_lost_here: float
    activation_rank: int
    rank_drop: int
    dead_units: int
    zero_fraction: float
    params_upstream: int
    dependence_bound: int
    dependence_guaranteed: bool
    block_rank: int
    cumulative_rank: int
    position: int
    block_rank_deficiency: int
    merged_class_rank: int | None
    merged_class: list[int]
    collision_kind: CollisionKind
    classes_before_activation: int
    bits_lost_linear: float
    bits_lost_activation: float
    constant_units: int
    atol: float
    atol_rule: str
    activation_rank_tolerance: float
    finding: str


class DependentGroup(Section, kw_only=True):
    kind: GroupKind
    indices: list[int]  # training inputs that carry weight
    coefficients: list[list[float | list[float]]]  # one vector per null direction (d > 1: one d-vector per input)
    dimension: int
    collided_at: int | None
    collided_in: str | None
    partly_collided_at: int | None
    description: str
    coefficient_rule: str
    vectors_listed: int


class DependentInputs(Section, kw_only=True):
    groups: list[DependentGroup]
    null_dim: int
    explained_dim: int
    tolerance: float
    how: str
    groups_not_listed: int
    forced_by_count: int


class LayersInfo(Section, kw_only=True):
    """How the layers table was made: its rules and tolerances, the raw inputs' partition."""

    available: bool
    why_not: str | None
    whole_model: bool
    g_tolerance: float
    activation_tolerance: str
    ranking_rule: str
    bits_rule: str
    dependence_rule: str
    raw_classes: int
    raw_entropy_bits: float
    raw_atol: float


__all__ = [
    "DependentGroup", "DependentInputs", "LayerRow", "LayersInfo",
]
