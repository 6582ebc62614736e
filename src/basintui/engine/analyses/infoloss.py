"""Information loss at a layer (DESIGN §1) and the training inputs it made dependent.

The post's mechanism: when block ℓ maps distinct training inputs to the same activation, their
behavioural gradients agree on every parameter after block ℓ, so m merged inputs (m·d columns of
G) span at most d + P_ℓ dimensions (P_ℓ = parameters in blocks 1..ℓ). ReLUs that zero an input
also zero its gradient on the parameters before them, which lowers the rank further.

Pure functions (usable from a notebook without a session):
- `capture_activations(model, layout, x)`: per block, the output of its parameterised module
  (the pre-activation) and of its last module (the block output A_ℓ), float64, via forward hooks;
- `analyse_blocks(model, layout, x, G, tol, out_dim)`: the per-block report, ranked;
- `dependent_inputs(G, tol, out_dim, partitions)`: readable groups spanning the null space of GᵀG.
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

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from ..cancel import CancelToken
from ..problem.models import Layout
from ..numerics.spectrum import count_above, default_tolerance, svdvals
from ..numerics.tolerances import EPS

ACT_RTOL = 1e-9  # activations equal iff ‖·‖∞ ≤ ACT_RTOL · max|A|
COEF_ZERO = 1e-8  # a null-space coefficient below this (relative to the group's largest) carries no weight
MAX_GROUPS = 200  # dependent groups listed; the count of the rest is reported
MAX_COEFS = 20_000  # coefficient numbers per group in the JSON form
RANKING_RULE = ("bits lost in the block itself (descending), then rank drop of [A, 1] (descending), "
                "then block-G rank deficiency min(n_ℓ, kd) − rank(G_ℓ) (descending); ties keep network order")


# --------------------------------------------------------------------------- partitions

@dataclass(frozen=True)
class Partition:
    labels: np.ndarray  # (k,) class id per input, ids 0..n_classes-1 in order of first appearance

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels) if len(self.labels) else np.zeros(0, dtype=np.int64)

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def largest(self) -> int:
        return int(self.sizes.max()) if len(self.labels) else 0

    def entropy(self) -> float:
        return entropy_bits(self.sizes)

    def members(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    def largest_class(self) -> np.ndarray:
        """Members of the largest class (the earliest such class on ties)."""
        if not len(self.labels):
            return np.zeros(0, dtype=np.int64)
        return self.members(int(np.argmax(self.sizes)))


def entropy_bits(sizes: np.ndarray) -> float:
    """H(P) = −Σ (|c|/k) log2(|c|/k), summed over sorted sizes so equal partitions give equal floats."""
    sizes = np.sort(np.asarray(sizes, dtype=np.float64))
    k = sizes.sum()
    if k <= 0:
        return 0.0
    p = sizes[sizes > 0] / k
    return float(-(p * np.log2(p)).sum())


def _canonical(labels: np.ndarray) -> np.ndarray:
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # relabel by first appearance
    return order[inv].astype(np.int64)


def close_pairs(V: np.ndarray, tol: float, norm: str = "inf", cancel: CancelToken | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j with ‖V[i] − V[j]‖ ≤ tol (norm 'inf' or '2'), exactly; a random orthonormal
    projection to a few dimensions (a contraction) only prunes the candidates first."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    V = V.reshape(V.shape[0], int(np.prod(V.shape[1:], dtype=np.int64)))  # -1 cannot be inferred when k = 0
    k, D = V.shape
    if k < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if D == 0:
        i = np.arange(k - 1)
        return i, i + 1  # all equal: a chain connects them
    p = 8
    if D > 2 * p:
        Q = np.linalg.qr(np.random.default_rng(12345).standard_normal((D, p)))[0]
        P = V @ Q
        bound = tol * (math.sqrt(D) if norm == "inf" else 1.0)
        bound = bound * (1 + 1e-6) + 64 * EPS * (float(np.abs(P).max()) + float(np.abs(V).max()) * math.sqrt(D))
        proj_norm = "2"
    else:
        P, bound, proj_norm = V, tol, norm
    W = P.shape[1]
    chunk = max(1, int(2e7 // max(1, k * W)))
    I_list, J_list = [], []
    for i0 in range(0, k - 1, chunk):
        if cancel is not None:
            cancel.check()
        i1 = min(k - 1, i0 + chunk)
        diff = P[i0:i1, None, :] - P[None, i0 + 1:, :]
        dist = np.abs(diff).max(axis=2) if proj_norm == "inf" else np.sqrt((diff * diff).sum(axis=2))
        ii, jj = np.nonzero(dist <= bound)
        rows = ii + i0
        cols = jj + i0 + 1
        keep = cols > rows
        I_list.append(rows[keep])
        J_list.append(cols[keep])
    I = np.concatenate(I_list) if I_list else np.zeros(0, np.int64)
    J = np.concatenate(J_list) if J_list else np.zeros(0, np.int64)
    if P is V or len(I) == 0:
        return I, J
    ok = np.zeros(len(I), dtype=bool)  # verify the candidates in the full space
    step = max(1, int(2e7 // max(1, D)))
    for s in range(0, len(I), step):
        if cancel is not None:
            cancel.check()
        d = V[I[s: s + step]] - V[J[s: s + step]]
        dist = np.abs(d).max(axis=1) if norm == "inf" else np.sqrt((d * d).sum(axis=1))
        ok[s: s + step] = dist <= tol
    return I[ok], J[ok]


def join(k: int, *edge_sets: tuple[np.ndarray, np.ndarray], coarser_than: Partition | None = None) -> Partition:
    """The partition whose classes are the connected components of the given edges (and, if given,
    of the classes of `coarser_than`: the result is then that partition or a coarsening of it)."""
    I_all, J_all = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for I, J in edge_sets:
        I_all.append(np.asarray(I, np.int64))
        J_all.append(np.asarray(J, np.int64))
    if coarser_than is not None:
        lab = coarser_than.labels
        first = np.full(lab.max() + 1 if len(lab) else 0, -1, dtype=np.int64)
        for i in range(len(lab) - 1, -1, -1):
            first[lab[i]] = i
        I_all.append(np.arange(k, dtype=np.int64))
        J_all.append(first[lab])
    I, J = np.concatenate(I_all), np.concatenate(J_all)
    graph = coo_matrix((np.ones(len(I)), (I, J)), shape=(k, k))
    _, labels = connected_components(graph, directed=False)
    return Partition(_canonical(labels))


def activation_atol(A: np.ndarray) -> float:
    return ACT_RTOL * float(np.abs(A).max()) if A.size else 0.0


def partition_of(A: np.ndarray, atol: float | None = None, coarser_than: Partition | None = None,
                 cancel: CancelToken | None = None) -> Partition:
    """Inputs grouped by identical rows of A (‖·‖∞ ≤ atol, single linkage)."""
    A = np.asarray(A, dtype=np.float64).reshape(A.shape[0], -1)
    atol = activation_atol(A) if atol is None else atol
    return join(A.shape[0], close_pairs(A, atol, "inf", cancel), coarser_than=coarser_than)


# --------------------------------------------------------------------------- activations

@dataclass
class BlockActivations:
    pre: np.ndarray  # (k, w) output of the block's last parameterised module (= post if none after it)
    post: np.ndarray  # (k, w) block output A_ℓ
    has_activation: bool  # parameter-free modules follow the parameterised one


def _has_params(m: nn.Module) -> bool:
    return any(p.requires_grad for p in m.parameters())


def capture_activations(model: nn.Module, layout: Layout, x: torch.Tensor) -> list[BlockActivations]:
    """Per block of an nn.Sequential, in float64, with forward hooks (one forward pass). Any other
    model is one block, the whole model, whose activation is its output."""
    if not layout.sequential:
        with torch.no_grad():
            out = model(x.to(torch.float64))
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
        calls.setdefault(id(mod), []).append(out.detach())

    handles = [m.register_forward_hook(hook) for m in {id(m): m for m in mods}.values()]
    try:
        with torch.no_grad():
            model(x.to(torch.float64))
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
            out.append(BlockActivations(output_of(param_idx[-1]), post, True))
        else:
            out.append(BlockActivations(post, post, False))
    return out


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


def _qr_r(M: torch.Tensor) -> torch.Tensor:
    if M.shape[0] == 0:
        return M
    return torch.linalg.qr(M, mode="r")[1]


def _rank(M: torch.Tensor, tol: float) -> int:
    """The report's one rank rule (spectrum.count_above) on M's singular values, at G's tolerance."""
    if M.numel() == 0:
        return 0
    return count_above(svdvals(M), tol)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finding(b: BlockReport, prev_rank: int, d: int, is_output: bool = False) -> str:
    parts = []
    if b.bits_lost_here > 0:
        where = {"linear": "before the activation (its linear map already merged them)",
                 "activation": "in the activation (it zeroed or saturated what told them apart)",
                 "both": "partly in the linear map and partly in the activation"}[b.collision_kind]
        parts.append(f"merges inputs {where}: {b.bits_lost_here:.3g} bits lost here, largest class {b.largest_class}")
        if b.dependence_guaranteed:
            parts.append(f"dependence guaranteed: {b.largest_class}·{d} columns > bound {b.dependence_bound} "
                         f"(measured rank {b.merged_class_rank})")
        elif b.merged_class_rank is not None:
            parts.append(f"merged class's columns have rank {b.merged_class_rank} "
                         f"(bound {min(b.dependence_bound, b.largest_class * d)})")
    elif b.rank_drop > 0:
        what = "the output layer (its width is the output dimension)" if is_output else "a bottleneck"
        parts.append(f"no inputs merged, but the rank of [A, 1] drops by {b.rank_drop} "
                     f"({prev_rank} → {b.activation_rank}): {what}"
                     + (f" (width {b.width} < rank {prev_rank - 1} of its input)" if b.width < prev_rank - 1 else ""))
    elif b.rank_drop < 0:
        parts.append(f"no inputs merged; the rank of [A, 1] rises by {-b.rank_drop} ({prev_rank} → {b.activation_rank})")
    else:
        parts.append("no inputs merged and no rank drop")
    if b.dead_units:
        parts.append(f"{b.dead_units} dead unit{'s' if b.dead_units != 1 else ''}")
    if b.block_rank_deficiency:
        parts.append(f"rank(G_ℓ) = {b.block_rank}, {b.block_rank_deficiency} short of min(n_ℓ, kd)")
    return "; ".join(parts)


def rank_blocks(blocks: list[BlockReport]) -> None:
    """Positions by the ranking rule of DESIGN §1 (1 = most information lost)."""
    def key(b: BlockReport):
        return (-round(b.bits_lost_here, 9), -b.rank_drop, -b.block_rank_deficiency, b.index)

    for pos, b in enumerate(sorted(blocks, key=key), start=1):
        b.position = pos


@dataclass
class LayerAnalysis:
    blocks: list[BlockReport]
    partitions: list[Partition]  # P_0 (raw inputs), P_1, …, P_L
    R: torch.Tensor  # triangular factor of G (G = QR)
    tol: float


def analyse_blocks(model: nn.Module, layout: Layout, x: torch.Tensor, G: torch.Tensor, tol: float,
                   out_dim: int, cancel: CancelToken | None = None, g_rank: int | None = None) -> LayerAnalysis:
    """Per-block information loss of an nn.Sequential on inputs x, with G (N × kd, float64) and an
    absolute rank tolerance `tol` tied to σ₁(G). Blocks in network order, `position` filled in."""
    cancel = cancel or CancelToken()
    x = x.to(torch.float64)
    k, d = x.shape[0], out_dim
    kd = G.shape[1]
    if kd != k * d:
        raise ValueError(f"G has {kd} columns, expected k·d = {k}·{d}")
    acts = capture_activations(model, layout, x)
    cancel.check()
    X = x.reshape(k, -1).cpu().numpy()
    x_atol = activation_atol(X)
    P0 = partition_of(X, x_atol, cancel=cancel)
    H0 = P0.entropy()
    prev_rank, _ = matrix_rank_with_ones(X)
    prev_P, prev_H = P0, H0
    partitions = [P0]
    G = G.to(torch.float64)
    R = G[:0]
    blocks: list[BlockReport] = []
    prev_ranks: list[int] = []
    for b, act in zip(layout.blocks, acts):
        cancel.check()
        pre, post = act.pre, act.post
        pre_atol, atol = activation_atol(pre), activation_atol(post)
        pre_edges = close_pairs(pre, pre_atol, "inf", cancel)
        Q = join(k, pre_edges, coarser_than=prev_P)
        P = join(k, close_pairs(post, atol, "inf", cancel), pre_edges, coarser_than=prev_P) if act.has_activation else Q
        H, HQ = P.entropy(), Q.entropy()
        a_rank, a_tol = matrix_rank_with_ones(post)
        zero = np.abs(post) <= atol
        dead = int(zero.all(axis=0).sum()) if k else 0
        constant = int((np.ptp(post, axis=0) <= atol).sum()) if k else 0
        # ranks of G's rows: the block's own and blocks 1..ℓ (via R of the stacked rows)
        G_b = G[b.start: b.stop]
        block_rank = _rank(G_b, tol)
        first_rows = R.shape[0] == 0
        R = _qr_r(torch.cat([R, G_b], dim=0)) if b.stop > b.start else R
        if R.shape[0] > kd:
            R = R[:kd]
        if first_rows or b.stop == b.start:  # same rows as the block itself / as before
            cum_rank = block_rank if first_rows else (blocks[-1].cumulative_rank if blocks else 0)
        elif b.stop == G.shape[0] and g_rank is not None:
            cum_rank = g_rank  # every row of G: rank(G) at the same tolerance, as the spectrum found it
        else:
            cum_rank = _rank(R, tol)
        cancel.check()
        P_up = b.stop  # parameters in blocks 1..ℓ (blocks own contiguous leading rows)
        m = P.largest
        bound = d + P_up
        lin_lost = max(0.0, prev_H - HQ)
        act_lost = max(0.0, HQ - H)
        here = max(0.0, prev_H - H)
        kind = "none"
        if here > 0:
            kind = "both" if (lin_lost > 0 and act_lost > 0) else ("linear" if lin_lost > 0 else "activation")
        rep = BlockReport(
            index=b.index, name=b.name, n_params=b.n_params, width=int(post.shape[1]),
            classes=P.n_classes, largest_class=m, bits_lost=max(0.0, H0 - H), bits_lost_here=here,
            activation_rank=a_rank, rank_drop=prev_rank - a_rank, dead_units=dead,
            zero_fraction=float(zero.mean()) if zero.size else 0.0,
            params_upstream=P_up, dependence_bound=bound, dependence_guaranteed=bool(m * d > bound),
            block_rank=block_rank, cumulative_rank=cum_rank,
            block_rank_deficiency=min(b.n_params, kd) - block_rank,
            collision_kind=kind, classes_before_activation=Q.n_classes,
            bits_lost_linear=lin_lost, bits_lost_activation=act_lost, constant_units=constant,
            atol=atol, atol_rule=f"‖A[i] − A[j]‖∞ ≤ {ACT_RTOL:g} · max|A_ℓ| = {atol:.3g}",
            activation_rank_tolerance=a_tol,
        )
        blocks.append(rep)
        partitions.append(P)
        prev_ranks.append(prev_rank)
        prev_P, prev_H, prev_rank = P, H, a_rank
    if R.shape[0] < min(G.shape) or layout.blocks[-1].stop != G.shape[0]:
        R = _qr_r(G)  # blocks do not cover every row of G: factor G itself
    for rep, P, before in zip(blocks, partitions[1:], prev_ranks):
        cancel.check()
        if rep.largest_class > 1:  # rank of the merged class's m·d columns over all of G's rows
            members = P.largest_class()
            cols = (members[:, None] * d + np.arange(d)[None, :]).reshape(-1)
            rep.merged_class_rank = _rank(R[:, torch.as_tensor(cols, device=R.device)], tol)
            rep.merged_class = members.tolist()
        rep.finding = _finding(rep, before, d, is_output=rep is blocks[-1])
    rank_blocks(blocks)
    return LayerAnalysis(blocks, partitions, R, tol)


# --------------------------------------------------------------------------- dependent inputs

@dataclass
class DependentGroup:
    kind: str  # identical | zero | combination | within_input (relations among one input's own d outputs)
    indices: list[int]  # training inputs that carry weight
    coefficients: list[list[Any]]  # one vector per null direction, aligned with `indices`
    dimension: int  # null directions of G (columns) this group accounts for
    collided_at: int | None  # earliest block where all these inputs share one class (0 = raw duplicates)
    collided_in: str | None
    partly_collided_at: int | None  # earliest block where at least two of them share a class
    description: str = ""
    coefficient_rule: str = ""  # the coefficients in words (identical / zero groups)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; a group's coefficient vectors are capped at about MAX_COEFS numbers
        (`vectors_listed` says how many of `dimension` directions are listed)."""
        out = asdict(self)
        width = max(1, len(self.indices) * _entry_width(self.coefficients))
        keep = max(1, MAX_COEFS // width)
        out["coefficients"] = self.coefficients[:keep]
        out["vectors_listed"] = min(keep, len(self.coefficients))
        return out


def _entry_width(coefs: list[list[Any]]) -> int:
    if coefs and coefs[0] and isinstance(coefs[0][0], list):
        return len(coefs[0][0])
    return 1


@dataclass
class DependentInputs:
    groups: list[DependentGroup]
    null_dim: int  # kd − rank(G) at the tolerance
    explained_dim: int  # Σ group dimensions
    tolerance: float
    how: str
    groups_not_listed: int = 0
    forced_by_count: int = 0  # max(0, kd − N): null directions any network would have

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups], "null_dim": self.null_dim,
                "explained_dim": self.explained_dim, "tolerance": self.tolerance, "how": self.how,
                "groups_not_listed": self.groups_not_listed, "forced_by_count": self.forced_by_count}


def _collision_blocks(indices: list[int], partitions: list[Partition] | None, names: list[str] | None
                      ) -> tuple[int | None, str | None, int | None]:
    if not partitions or len(indices) < 2:
        return None, None, None
    idx = np.asarray(indices)
    all_at = part_at = None
    for level, P in enumerate(partitions):
        labs = P.labels[idx]
        n = len(np.unique(labs))
        if part_at is None and n < len(idx):
            part_at = level
        if n == 1:
            all_at = level
            break
    name = None
    if all_at is not None:
        name = "raw inputs (duplicates in the data)" if all_at == 0 else (
            names[all_at - 1] if names and all_at - 1 < len(names) else f"block {all_at}")
    return all_at, name, part_at


def null_basis_rref(A: np.ndarray, rank: int) -> np.ndarray:
    """A basis of the null space of A (columns), in reduced row echelon form, given A's rank r.

    Column-pivoted QR (A P = Q [T11 T12; 0 T22], T22 ≈ 0) picks r well-conditioned basis columns;
    every other column j is a combination of them, T11⁻¹ T12[:, j]. Row j of the result has a 1 at
    that column, minus those coefficients at the basis columns, and 0 at every other free column:
    the unique echelon form for that pivot choice, sparse where the relations are."""
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[1]
    r = max(0, min(rank, n, A.shape[0]))
    if n - r == 0:
        return np.zeros((0, n))
    if r == 0:
        return np.eye(n)
    T, piv = scipy.linalg.qr(A, mode="r", pivoting=True)
    X = scipy.linalg.solve_triangular(T[:r, :r], T[:r, r:])  # (r, n − r)
    E = np.zeros((n - r, n))
    E[np.arange(n - r), piv[r:]] = 1.0
    E[:, piv[:r]] = -X.T
    return E


def dependent_inputs(G: torch.Tensor, tol: float, out_dim: int, partitions: list[Partition] | None = None,
                     block_names: list[str] | None = None, R: torch.Tensor | None = None,
                     cancel: CancelToken | None = None, g_rank: int | None = None) -> DependentInputs:
    """Groups of training inputs whose behavioural gradients are linearly dependent.

    Null space of GᵀG = null space of G (columns), at the absolute tolerance `tol` tied to σ₁(G).
    Readable form: (1) inputs whose gradient is zero for every output; (2) inputs whose d columns
    are identical to another input's (duplicates, merged inputs with equal gradients): a group of
    m accounts for (m − 1)·d null directions, coefficients e_first − e_j; (3) the rest of the null
    space, on one representative per identical group, as the rows of a reduced row echelon form
    (sparse-ish), grouped by shared inputs. For d > 1 the columns are (input, output) pairs: an
    input carries weight in a direction when any of its d coefficients does, and its coefficients
    are listed as a d-vector; identical groups hold for every output coordinate at once.
    """
    cancel = cancel or CancelToken()
    G = G.to(torch.float64)
    N, kd = G.shape
    d = out_dim
    k = kd // d if d else 0
    if R is None:
        R = _qr_r(G)
    Rn = R.cpu().numpy()
    rank = _rank(R, tol) if g_rank is None else g_rank
    null_dim = kd - rank
    how = ("null space of G (= of GᵀG) at the absolute tolerance τ = "
           f"{tol:.3g} tied to σ₁(G), from G = QR; zero gradients first, then identical gradients, "
           "then the rest as rows of a reduced row echelon form"
           + ("" if d == 1 else f"; d = {d}: columns are (input, output) pairs, reported per input "
              "(an input carries weight when any of its d coefficients does; coefficients are d-vectors; "
              "identical groups hold for each output coordinate)"))
    groups: list[DependentGroup] = []
    if null_dim <= 0 or k == 0:
        return DependentInputs([], max(0, null_dim), 0, tol, how)
    # per input: its d columns of R, flattened
    V = Rn.T.reshape(k, d * Rn.shape[0]) if Rn.shape[0] else np.zeros((k, 0))
    norms = np.sqrt((V * V).sum(axis=1))
    zero = np.flatnonzero(norms <= tol)
    if len(zero):
        groups.append(DependentGroup("zero", zero.tolist(), [_unit(len(zero), j) for j in range(len(zero))],
                                     len(zero) * d, *_collision_blocks(zero.tolist(), partitions, block_names),
                                     description="zero behavioural gradient for every output",
                                     coefficient_rule="each input alone: its gradient is zero"))
    nonzero = np.flatnonzero(norms > tol)
    I, J = close_pairs(V[nonzero], tol, "2", cancel)
    part = join(len(nonzero), (I, J))
    reps = []
    for lab in range(part.n_classes):
        mem = nonzero[part.members(lab)]
        reps.append(int(mem[0]))
        if len(mem) > 1:
            coefs = []
            for j in range(1, len(mem)):
                v = [0.0] * len(mem)
                v[0], v[j] = 1.0, -1.0
                coefs.append(v)
            dup = partitions is not None and len(np.unique(partitions[0].labels[mem])) == 1
            groups.append(DependentGroup(
                "identical", mem.tolist(), coefs, (len(mem) - 1) * d,
                *_collision_blocks(mem.tolist(), partitions, block_names),
                description=("identical inputs (duplicates in the data)" if dup else
                             "identical behavioural gradients") + ("" if d == 1 else ", for every output"),
                coefficient_rule="e_first − e_j for every other member j" + ("" if d == 1 else ", for each output")))
    cancel.check()
    # the rest of the null space, on representatives
    reps_arr = np.asarray(sorted(reps), dtype=np.int64)
    rest: list[DependentGroup] = []
    if len(reps_arr):
        cols = (reps_arr[:, None] * d + np.arange(d)[None, :]).reshape(-1)
        E = null_basis_rref(Rn[:, cols], min(rank, len(cols)))  # rows: null directions over `cols`
        if len(E):
            E[np.abs(E) <= COEF_ZERO * np.abs(E).max(axis=1, keepdims=True)] = 0.0
            W = np.abs(E).reshape(len(E), len(reps_arr), d).max(axis=2)  # weight per input
            # group directions that share inputs
            rows_i, inp_j = np.nonzero(W > 0)
            n_r = len(E)
            graph = coo_matrix((np.ones(len(rows_i)), (rows_i, n_r + inp_j)), shape=(n_r + len(reps_arr),) * 2)
            _, comp = connected_components(graph, directed=False)
            for c in np.unique(comp[:n_r]):
                dirs = np.flatnonzero(comp[:n_r] == c)
                inputs = np.flatnonzero((W[dirs] > 0).any(axis=0))
                idx = reps_arr[inputs].tolist()
                coefs = []
                for r in dirs:
                    block = E[r].reshape(len(reps_arr), d)[inputs]
                    coefs.append([float(v[0]) for v in block] if d == 1 else [v.tolist() for v in block])
                rest.append(DependentGroup(
                    "combination", idx, coefs, len(dirs), *_collision_blocks(idx, partitions, block_names),
                    description=f"{len(dirs)} linear relation{'s' if len(dirs) != 1 else ''} among "
                                f"{len(idx)} inputs' gradients"))
    singles = [g for g in rest if len(g.indices) == 1]
    if singles and d > 1:  # relations among one input's own outputs: one group, said in words
        rest = [g for g in rest if len(g.indices) > 1]
        idx = sorted(g.indices[0] for g in singles)
        pos = {i: j for j, i in enumerate(idx)}
        coefs, all_ones = [], True
        for g in sorted(singles, key=lambda g: g.indices[0]):
            for vec in g.coefficients:
                v = np.asarray(vec[0], dtype=np.float64)
                all_ones &= bool(np.allclose(v, v[0], rtol=1e-6, atol=0) and v[0] != 0)
                row = [[0.0] * d for _ in idx]
                row[pos[g.indices[0]]] = v.tolist()
                coefs.append(row)
        rule = ("Σ_c g(x_i, c) = 0 for each listed input: its outputs sum to a constant (softmax probabilities do)"
                if all_ones else "a relation among the d output gradients of each listed input")
        rest.append(DependentGroup(
            "within_input", idx, coefs, sum(g.dimension for g in singles), None, None, None,
            description=f"{len(idx)} inputs whose own {d} output gradients are dependent", coefficient_rule=rule))
    groups += sorted(rest, key=lambda g: (g.kind == "within_input", len(g.indices), g.indices))
    explained = sum(g.dimension for g in groups)
    listed = groups[:MAX_GROUPS]
    forced = max(0, kd - N)
    if forced:
        how += (f"; N = {N} < kd = {kd}: at least {forced} of the {null_dim} directions are forced by counting "
                "alone (more outputs than parameters), whatever the network does")
    return DependentInputs(listed, null_dim, explained, tol, how, groups_not_listed=len(groups) - len(listed),
                           forced_by_count=forced)


def _unit(n: int, j: int) -> list[Any]:
    v: list[Any] = [0.0] * n
    v[j] = 1.0
    return v


# --------------------------------------------------------------------------- session stage

def analyse(ctx, report) -> list[dict[str, Any]] | list[BlockReport]:
    """The `layers` stage: per-block report (returned) and `report.dependent_inputs` (set)."""
    G, spec, layout = ctx.G, ctx.spectrum, ctx.layout
    tol = spec.tolerance if spec is not None else g_tolerance(G)
    g_rank = spec.rank if spec is not None and spec.rank_exact else None  # a lower bound is not G's rank
    d = ctx.out_dim
    meta: dict[str, Any] = {
        "available": bool(layout.sequential),
        "why_not": None if layout.sequential else
        (f"per-block analysis needs an nn.Sequential: {layout.why_not_sequential}; the table has one row, the "
         "whole model, whose activation is its output"),
        "whole_model": not layout.sequential,
        "g_tolerance": tol,
        "activation_tolerance": f"‖A[i] − A[j]‖∞ ≤ {ACT_RTOL:g} · max|A_ℓ| (stated per block as atol)",
        "ranking_rule": RANKING_RULE,
        "bits_rule": "H(P) = −Σ (|c|/k) log2(|c|/k); bits_lost = H(P_0) − H(P_ℓ) against the raw inputs' "
                     "own partition P_0; bits_lost_here = H(P_ℓ−1) − H(P_ℓ)",
        "dependence_rule": f"a merged class of m inputs has m·d columns of rank ≤ d + P_ℓ (d = {d}); "
                           "guaranteed dependence when m·d > d + P_ℓ",
    }
    partitions = None
    names = None
    R = None
    result: list[BlockReport] = []
    la = analyse_blocks(ctx.model, layout, ctx.x, G, tol, d, ctx.cancel, g_rank=g_rank)
    result, partitions = la.blocks, la.partitions
    R = la.R if layout.blocks[-1].stop == G.shape[0] else None
    names = [b.name for b in la.blocks]
    P0 = la.partitions[0]
    meta.update(raw_classes=P0.n_classes, raw_entropy_bits=P0.entropy(),
                raw_atol=activation_atol(ctx.x.cpu().numpy()))
    if not layout.sequential:
        report.notes.append(meta["why_not"] + "; the rest of the run goes on")
    ctx.cancel.check()
    report.dependent_inputs = dependent_inputs(G, tol, d, partitions, names, R=R, cancel=ctx.cancel, g_rank=g_rank)
    report.extras["layers_info"] = meta
    return result
