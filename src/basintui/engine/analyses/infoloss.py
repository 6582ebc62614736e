"""Information loss at a layer (DESIGN §1) and the training inputs it made dependent.

The post's mechanism: when block ℓ maps distinct training inputs to the same activation, their
behavioural gradients agree on every parameter after block ℓ, so m merged inputs (m·d columns of
G) span at most d + P_ℓ dimensions (P_ℓ = parameters in blocks 1..ℓ). ReLUs that zero an input
also zero its gradient on the parameters before them, which lowers the rank further.

Pure functions (usable from a notebook without a session):
- `capture_activations(model, layout, x)`: per block, the output of its parameterised module
  (the pre-activation) and of its last module (the block output A_ℓ), float64, via forward hooks;
- `analyse_blocks(model, layout, x, G, tol, out_dim)`: the per-block report, ranked;
- `dependent_inputs(G, tol, out_dim, partitions)` (analyses/dependent.py): readable groups spanning the
  null space of GᵀG. The partitions of inputs live in analyses/partitions.py, the ranks from G's R
  factor in analyses/rfactor.py.
`analyse(ctx, report)` is the session stage.

Tolerances:
- activations: i ~ j iff ‖A[i] − A[j]‖∞ ≤ atol with atol = ACT_RTOL · max|A| (stated per block);
  partitions are made nested by construction (inputs equal at block ℓ−1 stay merged at ℓ, and
  inputs whose pre-activations are equal are merged after the activation), since the network is
  a deterministic function of the previous block's output;
- rank of [A, 1]: the numpy rule on that matrix's own scale (it is data, not derived from G);
- every rank derived from G (block rows, cumulative rows, a class's columns, the null space) uses
  one absolute tolerance τ tied to σ₁(G): the spectrum's own tolerance. All of them are computed
  from a triangular factor R of G (G = QR, Q orthonormal, so any subset of columns or leading
  rows has the singular values of the matching part of R), never from a Gram matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ...schema._layers import RANKING_RULE, rank_drop_parts, rank_positions
from .. import progress
from ..cancel import CancelToken
from ..numerics.spectrum import default_tolerance, svdvals
from ..numerics.tolerances import EPS
from ..problem.blocks import CONV, Trace, TracedBlock, trace
from ..problem.models import Layout, whole_model
from .dependent import dependent_inputs
from .partitions import (
    ACT_RTOL,
    Partition,
    activation_atol,
    close_pairs,
    join,
    partition_of,
)
from .rfactor import LeadingRows, rank_at

# --------------------------------------------------------------------------- activations

@dataclass
class BlockActivations:
    pre: np.ndarray  # (k, w) output of the block's last parameterised module (= post if none after it)
    post: np.ndarray  # (k, w) block output A_ℓ
    has_activation: bool  # parameter-free modules follow the parameterised one
    dead_channels: int | None = None  # a conv block: channels zero at every position on every input


def _has_params(m: nn.Module) -> bool:
    return any(p.requires_grad for p in m.parameters())


def capture_activations(model: nn.Module, layout: Layout, x: torch.Tensor) -> list[BlockActivations]:
    """Per block of an nn.Sequential, in float64, with forward hooks (one forward pass). Any other
    model is one block, the whole model, whose activation is its output."""
    if not layout.sequential:
        with torch.no_grad():
            out = model(_as_input(x))
        post = out.reshape(out.shape[0], -1).to(torch.float64).cpu().numpy()
        return [BlockActivations(post, post, False)]
    mods = list(model._modules.values())  # with repeats, as Sequential.forward calls them
    wanted: dict[int, int] = {}  # module index -> which call of that module object it is
    seen: dict[int, int] = {}
    for i, m in enumerate(mods):
        wanted[i] = seen.get(id(m), 0)
        seen[id(m)] = wanted[i] + 1
    calls: dict[int, list[torch.Tensor]] = {}

    def hook(mod, inp, out):
        calls.setdefault(id(mod), []).append(out.detach().clone())  # a copy: an in-place activation follows

    handles = [m.register_forward_hook(hook) for m in {id(m): m for m in mods}.values()]
    try:
        with torch.no_grad():
            model(_as_input(x))
    finally:
        for h in handles:
            h.remove()

    def output_of(i: int) -> np.ndarray:
        t = calls[id(mods[i])][wanted[i]]
        return t.reshape(t.shape[0], -1).to(torch.float64).cpu().numpy()

    out = []
    for b in layout.blocks:
        idx = list(b.modules)
        param_idx = [i for i in idx if _has_params(mods[i])]
        last = idx[-1]
        post = output_of(last)
        if param_idx and param_idx[-1] != last:
            act = BlockActivations(output_of(param_idx[-1]), post, True)
        else:
            act = BlockActivations(post, post, False)
        if param_idx and isinstance(mods[param_idx[-1]], CONV):
            maps = [calls[id(mods[i])][wanted[i]] for i in idx if calls[id(mods[i])][wanted[i]].ndim >= 3]
            act.dead_channels = dead_channels(maps[-1]) if maps else None
        out.append(act)
    return out


def dead_channels(t: torch.Tensor) -> int:
    """Channels (axis 1) of a feature map that are zero (≤ ACT_RTOL · max|t|) at every position on every input."""
    a = t.detach().to(torch.float64).abs()
    zero = a <= ACT_RTOL * float(a.max()) if a.numel() else a.bool()
    return int(zero.movedim(1, -1).reshape(-1, zero.shape[1]).all(dim=0).sum())


def matrix_rank_with_ones(A: np.ndarray) -> tuple[int, float]:
    """Rank of [A, 1] (float64, numpy rule on its own σ₁) and the tolerance used."""
    M = np.concatenate([np.asarray(A, np.float64).reshape(A.shape[0], -1), np.ones((A.shape[0], 1))], axis=1)
    sv = np.linalg.svd(M, compute_uv=False)
    tol = float(sv[0]) * max(M.shape) * EPS if len(sv) else 0.0
    return int(np.count_nonzero(sv > tol)), tol


# --------------------------------------------------------------------------- ranks from G's R factor

def g_tolerance(G: torch.Tensor, rtol: float = 0.0) -> float:
    """The default rank tolerance of G (DESIGN §1), for callers without a Spectrum."""
    if G.numel() == 0:
        return 0.0
    s1 = float(svdvals(G)[0])
    return default_tolerance(s1, tuple(G.shape), rtol)[0]


# --------------------------------------------------------------------------- per-block result

@dataclass
class BlockReport:
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
    position: int = 0
    # extras
    block_rank_deficiency: int = 0
    merged_class_rank: int | None = None
    merged_class: list[int] = field(default_factory=list)  # members of the largest class when it merges inputs
    collision_kind: str = "none"  # none | linear (pre-activations already equal) | activation | both
    classes_before_activation: int = 0
    bits_lost_linear: float = 0.0  # part of bits_lost_here already lost in the pre-activations
    bits_lost_activation: float = 0.0  # part lost in the activation
    constant_units: int = 0
    atol: float = 0.0
    atol_rule: str = ""
    activation_rank_tolerance: float = 0.0
    finding: str = ""
    module: str = ""  # the module's name in named_modules() (any nn.Module; the Sequential index otherwise)
    call_order: int = 0  # its place in the forward pass (any nn.Module)
    calls: int = 1
    skip_around: bool = False  # the input reaches the output around the module: its merging is no loss
    # rank_drop split (schema.rank_drop_parts): forced by the width (rank [A, 1] ≤ width + 1), and the excess
    forced_rank_drop: int = field(init=False, default=0)
    excess_rank_drop: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.forced_rank_drop, self.excess_rank_drop = rank_drop_parts(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge_words(b: BlockReport, d: int) -> list[str]:
    """What a block that merges inputs says: where they merged, the bits, the dependence it forces."""
    where = {"linear": "before the activation (its linear map already merged them)",
             "activation": "in the activation (it zeroed or saturated what told them apart)",
             "both": "partly in the linear map and partly in the activation"}[b.collision_kind]
    parts = [f"merges inputs {where}: {b.bits_lost_here:.3g} bits lost here, largest class {b.largest_class}"]
    if b.dependence_guaranteed:
        parts.append(f"dependence guaranteed: {b.largest_class}·{d} columns > bound {b.dependence_bound} "
                     f"(measured rank {b.merged_class_rank})")
    elif b.merged_class_rank is not None:
        parts.append(f"merged class's columns have rank {b.merged_class_rank} "
                     f"(bound {min(b.dependence_bound, b.largest_class * d)})")
    return parts


def _drop_words(b: BlockReport, prev_rank: int, is_output: bool) -> str | None:
    """The rank of [A, 1] across the block, split into what its width forces and what it loses beyond that."""
    drop, forced, excess = b.rank_drop, b.forced_rank_drop, b.excess_rank_drop
    arrow = f"{prev_rank} → {b.activation_rank}"
    wide = f"the {'output layer' if is_output else 'block'} is {b.width} wide"
    if drop < 0:
        return f"the rank of [A, 1] rises {arrow}"
    if drop == 0:
        return None
    if excess == 0:
        return f"the rank of [A, 1] drops {arrow} because {wide} (forced by its width, not information loss)"
    if forced == 0:
        return (f"the rank of [A, 1] drops {arrow} although {wide}, room for rank {b.width + 1}: "
                f"{excess} lost beyond its width (a bottleneck)")
    return (f"the rank of [A, 1] drops {arrow}: {forced} forced because {wide}, "
            f"{excess} more lost beyond its width (a bottleneck)")


def _finding(b: BlockReport, prev_rank: int, d: int, is_output: bool = False) -> str:
    """The block's row in words: merged inputs, the rank drop split into forced and excess, dead units, G_ℓ."""
    parts = _merge_words(b, d) if b.bits_lost_here > 0 else []
    drop = _drop_words(b, prev_rank, is_output)
    if b.bits_lost_here <= 0 and b.excess_rank_drop <= 0:
        parts.append("loses no information here: no inputs merged" + (f"; {drop}" if drop else ", no rank drop"))
    elif b.bits_lost_here <= 0:
        parts.append(f"no inputs merged, but {drop}")
    elif drop is not None:
        parts.append(drop)
    if b.dead_units:
        parts.append(f"{b.dead_units} dead unit{'s' if b.dead_units != 1 else ''}")
    if b.block_rank_deficiency:
        parts.append(f"rank(G_ℓ) = {b.block_rank}, {b.block_rank_deficiency} short of min(n_ℓ, kd)")
    return "; ".join(parts)


def rank_blocks(blocks: list[BlockReport]) -> None:
    """Positions by schema RANKING_RULE (1 = most information lost): inputs merged (bits lost here), then the
    rank drop beyond what the block's width forces, then block-G deficiency, then network order."""
    for b, pos in zip(blocks, rank_positions(blocks)):
        b.position = pos


@dataclass
class LayerAnalysis:
    blocks: list[BlockReport]
    partitions: list[Partition]  # P_0 (raw inputs), P_1, …, P_L
    R: torch.Tensor  # triangular factor of G (G = QR)
    tol: float
    cut: str = "sequential"  # how the model was cut: sequential | modules | whole
    why_not: str = ""  # why a model that is not a flat Sequential got one whole-model block
    call_order_differs: bool = False


def _as_input(x: torch.Tensor) -> torch.Tensor:
    """Floating inputs in float64; integer inputs (token ids) as they are."""
    return x.to(torch.float64) if x.is_floating_point() else x


def analyse_blocks(model: nn.Module, layout: Layout, x: torch.Tensor, G: torch.Tensor, tol: float,
                   out_dim: int, cancel: CancelToken | None = None, g_rank: int | None = None) -> LayerAnalysis:
    """Per-block information loss of an nn.Sequential on inputs x, with G (N × kd, float64) and an
    absolute rank tolerance `tol` tied to σ₁(G). Blocks in network order, `position` filled in. Any other
    model: one block per parameter-owning module (analyse_modules), or one whole-model block, saying why."""
    cancel = cancel or CancelToken()
    x = _as_input(x)
    why_not = ""
    if layout.kind == "modules":
        tr = trace(model, layout, x)
        if not tr.why_not:
            return analyse_modules(tr, x, G, tol, out_dim, cancel, g_rank)
        why_not = tr.why_not
        layout = whole_model(list(layout.params), layout.n_params, model, why_not)
    k, d = x.shape[0], out_dim
    kd = G.shape[1]
    if kd != k * d:
        raise ValueError(f"G has {kd} columns, expected k·d = {k}·{d}")
    acts = capture_activations(model, layout, x)
    cancel.check()
    X = x.reshape(k, -1).cpu().numpy()
    P0 = partition_of(X, activation_atol(X), cancel=cancel)
    H0 = P0.entropy()
    prev_rank, _ = matrix_rank_with_ones(X)
    prev_P, prev_H = P0, H0
    partitions = [P0]
    G = G.to(torch.float64)
    rows = _leading_rows(G, layout.blocks, g_rank)
    blocks: list[BlockReport] = []
    prev_ranks: list[int] = []
    meter = progress.of(cancel)
    meter.expect(len(layout.blocks) + 1, "steps")  # a step per block, then the merged classes and what follows
    for i, (b, act) in enumerate(zip(layout.blocks, acts)):
        cancel.check()
        meter.update(i, upto=i + 1)
        Q, P, atol = _block_partitions(act, k, prev_P, cancel)
        prev_cum = blocks[-1].cumulative_rank if blocks else 0
        block_rank, cum_rank = _g_rows(G, b, rows, tol, prev_cum, g_rank)
        cancel.check()
        rep = _block_report(b, act.post, Q, P, atol, H0, prev_H, prev_rank, d, kd, block_rank, cum_rank)
        rep.module, rep.call_order = b.module, b.index
        if act.dead_channels is not None:
            rep.dead_units = act.dead_channels
        blocks.append(rep)
        partitions.append(P)
        prev_ranks.append(prev_rank)
        prev_P, prev_H, prev_rank = P, P.entropy(), rep.activation_rank
    meter.update(len(blocks), upto=len(blocks) + 1)
    R = rows.column_factor()
    for rep, P, before in zip(blocks, partitions[1:], prev_ranks):
        cancel.check()
        if rep.largest_class > 1:  # rank of the merged class's m·d columns over all of G's rows
            members = P.largest_class()
            cols = (members[:, None] * d + np.arange(d)[None, :]).reshape(-1)
            rep.merged_class_rank = rank_at(R[:, torch.as_tensor(cols, device=R.device)], tol)
            rep.merged_class = members.tolist()
        rep.finding = _finding(rep, before, d, is_output=rep is blocks[-1])
    rank_blocks(blocks)
    return LayerAnalysis(blocks, partitions, R, tol, "whole" if why_not or not layout.per_block else "sequential",
                         why_not)


def _block_partitions(act: BlockActivations, k: int, prev_P: Partition,
                      cancel: CancelToken) -> tuple[Partition, Partition, float]:
    """The partitions before (Q, on the pre-activation) and after (P) the block's activation, both
    coarser than the previous block's, and the block output's atol."""
    pre, post = act.pre, act.post
    pre_atol, atol = activation_atol(pre), activation_atol(post)
    pre_edges = close_pairs(pre, pre_atol, "inf", cancel)
    Q = join(k, pre_edges, coarser_than=prev_P)
    P = join(k, close_pairs(post, atol, "inf", cancel), pre_edges, coarser_than=prev_P) if act.has_activation else Q
    return Q, P, atol


def _g_rows(G: torch.Tensor, b, rows: LeadingRows, tol: float, prev_cum: int, g_rank: int | None) -> tuple[int, int]:
    """Ranks of G's rows: the block's own, and blocks 1..ℓ (G's leading rows, from `rows`)."""
    block_rank = rank_at(G[b.start: b.stop], tol)
    if b.start == 0 or b.stop == b.start:  # same rows as the block itself / as before
        cum_rank = block_rank if b.start == 0 else prev_cum
    elif b.stop == G.shape[0] and g_rank is not None:
        cum_rank = g_rank  # every row of G: rank(G) at the same tolerance, as the spectrum found it
    else:
        cum_rank = rows.rank(b.stop, tol)
    return block_rank, cum_rank


def _leading_rows(G: torch.Tensor, blocks, g_rank: int | None) -> LeadingRows:
    """The cumulative-rank factor for these blocks (the boundaries it will be asked for, up front)."""
    bounds = [b.stop for b in blocks if b.start > 0 and b.stop > b.start
              and not (b.stop == G.shape[0] and g_rank is not None)]
    return LeadingRows(G, bounds)


def _block_report(b, post: np.ndarray, Q: Partition, P: Partition, atol: float, H0: float, prev_H: float,
                  prev_rank: int, d: int, kd: int, block_rank: int, cum_rank: int) -> BlockReport:
    """One block's row: classes, bits lost (by the linear map and by the activation), units, ranks."""
    k = post.shape[0]
    H, HQ = P.entropy(), Q.entropy()
    a_rank, a_tol = matrix_rank_with_ones(post)
    zero = np.abs(post) <= atol
    P_up = b.stop  # parameters in blocks 1..ℓ (blocks own contiguous leading rows)
    m = P.largest
    bound = d + P_up
    lin_lost = max(0.0, prev_H - HQ)
    act_lost = max(0.0, HQ - H)
    here = max(0.0, prev_H - H)
    kind = "none"
    if here > 0:
        kind = "both" if (lin_lost > 0 and act_lost > 0) else ("linear" if lin_lost > 0 else "activation")
    return BlockReport(
        index=b.index, name=b.name, n_params=b.n_params, width=int(post.shape[1]),
        classes=P.n_classes, largest_class=m, bits_lost=max(0.0, H0 - H), bits_lost_here=here,
        activation_rank=a_rank, rank_drop=prev_rank - a_rank, dead_units=int(zero.all(axis=0).sum()) if k else 0,
        zero_fraction=float(zero.mean()) if zero.size else 0.0,
        params_upstream=P_up, dependence_bound=bound, dependence_guaranteed=bool(m * d > bound),
        block_rank=block_rank, cumulative_rank=cum_rank,
        block_rank_deficiency=min(b.n_params, kd) - block_rank,
        collision_kind=kind, classes_before_activation=Q.n_classes,
        bits_lost_linear=lin_lost, bits_lost_activation=act_lost,
        constant_units=int((np.ptp(post, axis=0) <= atol).sum()) if k else 0,
        atol=atol, atol_rule=f"‖A[i] − A[j]‖∞ ≤ {ACT_RTOL:g} · max|A_ℓ| = {atol:.3g}",
        activation_rank_tolerance=a_tol,
    )


# --------------------------------------------------------------------------- any nn.Module, module by module

def _rows(t: torch.Tensor | None, k: int) -> np.ndarray:
    """(k, features) float64 of a per-example tensor; a tensor without the batch (input-independent, e.g. a
    position embedding) is the same row for every input."""
    if t is None:
        return np.zeros((k, 0))
    a = t.detach().to(torch.float64).cpu()
    if a.ndim >= 1 and a.shape[0] == k:
        return a.reshape(k, -1).numpy()
    return np.broadcast_to(a.reshape(1, -1).numpy(), (k, a.numel()))


def _input_rows(tb: TracedBlock, k: int) -> np.ndarray:
    """The block's own inputs (the first call's tensor arguments with the batch first), side by side."""
    parts = [_rows(a, k) for a in tb.inputs if a.ndim >= 1 and a.shape[0] == k]
    return np.concatenate(parts, axis=1) if parts else np.zeros((k, 0))


def _dead_units(tb: TracedBlock, atol: float) -> int:
    """Units zero on every input and at every position: channels (axis 1) of a conv block's output, the last
    axis of any other block's."""
    if isinstance(tb.module, CONV) and tb.post.ndim >= 3:
        return dead_channels(tb.post)
    a = tb.post.detach().to(torch.float64).abs() <= atol
    return int(a.reshape(-1, a.shape[-1]).all(dim=0).sum()) if a.ndim >= 2 else 0


def _module_row(tb: TracedBlock, k: int, d: int, kd: int, H0: float, G: torch.Tensor, rows: LeadingRows,
                tol: float, prev_cum: int, g_rank: int | None, cancel: CancelToken):
    """One parameter-owning module's row: the partition of its output, coarser than its input's (the module
    is a function of its inputs), the ranks of its rows of G, the dependence bound if its output is a cut."""
    X_in = _input_rows(tb, k)
    P_in = partition_of(X_in, activation_atol(X_in), cancel=cancel)
    in_rank, _ = matrix_rank_with_ones(X_in)
    post = _rows(tb.post, k)
    act = BlockActivations(_rows(tb.pre, k), post, bool(tb.after))
    Q, P, atol = _block_partitions(act, k, P_in, cancel)
    block_rank, cum_rank = _g_rows(G, tb.block, rows, tol, prev_cum, g_rank)
    rep = _block_report(tb.block, post, Q, P, atol, H0, P_in.entropy(), in_rank, d, kd, block_rank, cum_rank)
    rep.dead_units = _dead_units(tb, atol)
    rep.params_upstream = tb.upstream
    rep.dependence_bound = d + tb.upstream
    rep.dependence_guaranteed = bool(tb.cut and rep.largest_class * d > rep.dependence_bound)
    rep.module, rep.call_order, rep.calls = tb.block.module, tb.call_order, tb.calls
    rep.skip_around = bool(tb.input_dependent and not tb.cut)
    return rep, P, in_rank


def _module_words(rep: BlockReport, tb: TracedBlock, d: int, in_rank: int) -> str:
    """The row in words: as a Sequential block's, then what a skip connection or the forward order changes."""
    if not tb.input_dependent:
        words = "its output does not depend on the input (the same for every training input)"
    elif rep.skip_around:
        words = _finding(replace(rep, dependence_guaranteed=False, merged_class_rank=None), in_rank, d)
        words = (words.replace("loses no information here", "merges nothing").replace(" (a bottleneck)", "")
                 + "; the input also reaches the output around this module (a skip connection), so its partition "
                   "is a fact about its output only: merging here is no information loss for the network and "
                   "forces no dependence of the merged inputs' gradients")
    else:
        words = _finding(rep, in_rank, d)
    after = f" (with {', '.join(tb.after)} after it)" if tb.after else ""
    head = f"module {tb.block.module or '(the model itself)'}{after}, called {_ordinal(tb.call_order)}"
    return "; ".join([head, words, *tb.notes])


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


def analyse_modules(tr: Trace, x: torch.Tensor, G: torch.Tensor, tol: float, d: int,
                    cancel: CancelToken, g_rank: int | None = None) -> LayerAnalysis:
    """Per-module information loss of any nn.Module (blocks traced by problem/blocks.py), rows in parameter
    order so the cumulative ranks run over G's rows in order and the last one is rank(G). Each row's
    partition is on the module's output as called; bits lost here are against the module's own inputs."""
    k, kd = x.shape[0], G.shape[1]
    if kd != k * d:
        raise ValueError(f"G has {kd} columns, expected k·d = {k}·{d}")
    X = x.reshape(k, -1).cpu().numpy()
    P0 = partition_of(X, activation_atol(X), cancel=cancel)
    H0 = P0.entropy()
    G = G.to(torch.float64)
    rows = _leading_rows(G, [tb.block for tb in tr.blocks], g_rank)
    meter = progress.of(cancel)
    meter.expect(len(tr.blocks) + 1, "steps")
    blocks, partitions, in_ranks = [], [P0], []
    for i, tb in enumerate(tr.blocks):
        cancel.check()
        meter.update(i, upto=i + 1)
        prev_cum = blocks[-1].cumulative_rank if blocks else 0
        rep, P, in_rank = _module_row(tb, k, d, kd, H0, G, rows, tol, prev_cum, g_rank, cancel)
        blocks.append(rep)
        partitions.append(P)
        in_ranks.append(in_rank)
    meter.update(len(blocks), upto=len(blocks) + 1)
    R = rows.column_factor()
    for rep, tb, P, in_rank in zip(blocks, tr.blocks, partitions[1:], in_ranks):
        cancel.check()
        if rep.largest_class > 1:
            members = P.largest_class()
            cols = (members[:, None] * d + np.arange(d)[None, :]).reshape(-1)
            rep.merged_class_rank = rank_at(R[:, torch.as_tensor(cols, device=R.device)], tol)
            rep.merged_class = members.tolist()
        rep.finding = _module_words(rep, tb, d, in_rank)
    rank_blocks(blocks)
    # dependent inputs are named by where they collided only at modules that are cuts of the network
    named = [P if tb.cut and tb.input_dependent else P0 for tb, P in zip(tr.blocks, partitions[1:])]
    return LayerAnalysis(blocks, [P0, *named], R, tol, "modules", "", tr.order_differs)


# --------------------------------------------------------------------------- session stage

def analyse(ctx, report) -> list[dict[str, Any]] | list[BlockReport]:
    """The `layers` stage: per-block report (returned) and `report.dependent_inputs` (set)."""
    G, spec, layout = ctx.G, ctx.spectrum, ctx.layout
    tol = spec.tolerance if spec is not None else g_tolerance(G)
    g_rank = spec.rank if spec is not None and spec.rank_exact else None  # a lower bound is not G's rank
    d = ctx.out_dim
    la = analyse_blocks(ctx.model, layout, ctx.x, G, tol, d, ctx.cancel, g_rank=g_rank)
    meta = _layers_meta(la, layout, tol, d)
    R = la.R if la.blocks and sum(b.n_params for b in la.blocks) == G.shape[0] else None
    names = [b.name for b in la.blocks]
    P0 = la.partitions[0]
    meta.update(raw_classes=P0.n_classes, raw_entropy_bits=P0.entropy(),
                raw_atol=activation_atol(ctx.x.reshape(ctx.x.shape[0], -1).cpu().numpy()))
    if meta["why_not"]:
        report.notes.append(meta["why_not"] + "; the rest of the run goes on")
    ctx.cancel.check()
    report.dependent_inputs = dependent_inputs(G, tol, d, la.partitions, names, R=R, cancel=ctx.cancel,
                                               g_rank=g_rank)
    report.layers_info = meta
    return la.blocks


def _layers_meta(la: LayerAnalysis, layout: Layout, tol: float, d: int) -> dict[str, Any]:
    """layers_info: how the blocks were cut, in which order, and the rules of every number."""
    whole = la.cut == "whole"
    if not whole:
        why_not = None
    elif layout.kind == "modules":
        why_not = (f"the model cannot be cut into its modules: {la.why_not}; the table has one row, the whole "
                   "model, whose activation is its output")
    else:
        why_not = (f"per-block analysis needs an nn.Sequential or modules that own parameters: "
                   f"{layout.why_not_sequential}; the table has one row, the whole model, whose activation is "
                   "its output")
    modules = la.cut == "modules"
    order = ("rows in parameter order (the rows of G), so the cumulative rank runs over G's rows in order and the "
             "last one is rank(G); each row's partition is on its module's output as the forward pass called it"
             + ("; the forward pass calls them in another order (call_order)" if la.call_order_differs else ""))
    return {
        "available": not whole, "why_not": why_not, "whole_model": whole,
        "g_tolerance": tol,
        "activation_tolerance": f"‖A[i] − A[j]‖∞ ≤ {ACT_RTOL:g} · max|A_ℓ| (stated per block as atol)",
        "ranking_rule": RANKING_RULE,
        "bits_rule": "H(P) = −Σ (|c|/k) log2(|c|/k); bits_lost = H(P_0) − H(P_ℓ) against the raw inputs' "
                     "own partition P_0; bits_lost_here = H(P_ℓ−1) − H(P_ℓ)"
                     + ("; for a module, P_ℓ−1 is the partition by its own inputs" if modules else ""),
        "dependence_rule": f"a merged class of m inputs has m·d columns of rank ≤ d + P_ℓ (d = {d}); "
                           "guaranteed dependence when m·d > d + P_ℓ"
                           + ("; for a module, P_ℓ counts the parameters its output depends on (autograd graph), "
                              "and the bound holds only where every path from the input to the output passes "
                              "through that output (no skip_around)" if modules else ""),
        "cut": la.cut, "order_rule": order if modules else "", "call_order_differs": la.call_order_differs,
    }
