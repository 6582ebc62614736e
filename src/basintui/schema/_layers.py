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
    # the part of rank_drop a block of this width must make (rank [A, 1] ≤ width + 1), and the rest;
    # None in reports written before these fields existed (rank_drop_parts derives them)
    forced_rank_drop: int | None = None
    excess_rank_drop: int | None = None
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
    # any nn.Module (engine/problem/blocks.py): the module's name in named_modules(), its place in the forward
    # pass, how often it was called, and whether the input reaches the output around it (a skip connection:
    # then merging at its output is no loss for the network and forces no dependence)
    module: str = ""
    call_order: int = 0
    calls: int = 1
    skip_around: bool = False


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
    unlisted: str | None = None  # why the remaining combination relations were not written out (too large)


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
    # how the blocks were cut: "sequential", "modules" (one per parameter-owning module) or "whole"; the order
    # of the rows (parameter order, the rows of G) against the forward pass's
    cut: str = ""
    order_rule: str = ""
    call_order_differs: bool = False


RANKING_RULE = ("blocks that merge inputs first, by the bits lost in the block itself (descending); then the "
                "rank drop of [A, 1] beyond what the block's width forces (descending: a block of width w leaves "
                "rank ≤ w + 1, so a drop down to that is forced by the architecture, not information loss); then "
                "block-G rank deficiency min(n_ℓ, kd) − rank(G_ℓ) (descending); ties keep network order; a block the "
                "input also reaches the output around (skip_around) comes after every other, since merging at "
                "its output is no loss for the network")


def width_forced_drop(rank_before: int, width: int) -> int:
    """The rank drop of [A, 1] that a block of `width` units forces on an input of rank `rank_before`:
    [A, 1] has width + 1 columns, so its rank is at most width + 1."""
    return max(0, rank_before - (width + 1))


def rank_drop_parts(row) -> tuple[int, int]:
    """(forced, excess) of a block's rank drop: the part its width forces and the rest, never below 0 (a rise
    in rank is no loss). Any object with `width`, `activation_rank` and `rank_drop` (a LayerRow, the engine's
    BlockReport); derived from those, so reports without the stored fields get the same answer."""
    forced = width_forced_drop(row.activation_rank + row.rank_drop, row.width)
    return forced, max(0, row.rank_drop - forced)


def loses_information(row) -> bool:
    """Does the block lose information: it merges inputs, or its rank drops beyond what its width forces."""
    if getattr(row, "skip_around", False):
        return False  # the input reaches the output around the block: nothing it merges is lost
    return row.bits_lost_here > 0 or rank_drop_parts(row)[1] > 0


def ranking_key(row) -> tuple:
    """The sort key of RANKING_RULE (smaller sorts first); `row` as in rank_drop_parts, with `bits_lost_here`,
    `block_rank_deficiency` and `index`."""
    return (bool(getattr(row, "skip_around", False)), -round(row.bits_lost_here, 9), -rank_drop_parts(row)[1],
            -row.block_rank_deficiency, row.index)


def rank_positions(rows) -> list[int]:
    """The position of each row (1 = most information lost) under RANKING_RULE, in the rows' order."""
    order = sorted(range(len(rows)), key=lambda i: ranking_key(rows[i]))
    positions = [0] * len(rows)
    for pos, i in enumerate(order, start=1):
        positions[i] = pos
    return positions


__all__ = [
    "RANKING_RULE", "DependentGroup", "DependentInputs", "LayerRow", "LayersInfo", "loses_information",
    "rank_drop_parts", "rank_positions", "ranking_key", "width_forced_drop",
]
