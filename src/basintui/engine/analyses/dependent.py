"""The training inputs whose behavioural gradients are linearly dependent (DESIGN §1), in readable groups:
zero gradients, identical gradients, then the rest of G's column null space in reduced row echelon form,
each group with the earliest block where its inputs collided (from the partitions of analyses/partitions.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..cancel import CancelToken
from .partitions import Partition, close_pairs, join
from .rfactor import column_factor, rank_at

COEF_ZERO = 1e-8  # a null-space coefficient below this (relative to the group's largest) carries no weight
MAX_GROUPS = 200  # dependent groups listed; the count of the rest is reported
MAX_COEFS = 20_000  # coefficient numbers per group in the JSON form
# The echelon form of what is left is written out only when it is small enough to read and to compute: a
# pivoted QR of rows × n (LAPACK's geqp3, half of it matrix-vector work) and an (n − r) × n dense result.
RREF_MAX_FLOPS = 5e10  # rows · n · min(rows, n): about 20 s of geqp3 on 2 cores (digits-cnn: 1.6e10)
RREF_MAX_ENTRIES = 20_000_000  # (n − r) · n numbers: 160 MB


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
        width = max(1, len(self.indices) * _entry_width(self.coefficients))
        keep = max(1, MAX_COEFS // width)
        # asdict would deep-copy every coefficient vector before the cap drops most (10 s a report for digits)
        out = asdict(dataclasses.replace(self, coefficients=self.coefficients[:keep]))
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
    unlisted: str | None = None  # why the combination relations were not written out (too large to read)

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups], "null_dim": self.null_dim,
                "explained_dim": self.explained_dim, "tolerance": self.tolerance, "how": self.how,
                "groups_not_listed": self.groups_not_listed, "forced_by_count": self.forced_by_count,
                "unlisted": self.unlisted}


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
        R = column_factor(G)
    Rn = R.cpu().numpy()
    rank = rank_at(R, tol) if g_rank is None else g_rank
    null_dim = kd - rank
    how = _how(tol, d)
    if null_dim <= 0 or k == 0:
        return DependentInputs([], max(0, null_dim), 0, tol, how)
    # per input: its d columns of R, flattened
    V = Rn.T.reshape(k, d * Rn.shape[0]) if Rn.shape[0] else np.zeros((k, 0))
    norms = np.sqrt((V * V).sum(axis=1))
    groups = _zero_group(np.flatnonzero(norms <= tol), d, partitions, block_names)
    identical, reps = _identical_groups(V, np.flatnonzero(norms > tol), tol, d, partitions, block_names, cancel)
    groups += identical
    cancel.check()
    reps_arr = np.asarray(sorted(reps), dtype=np.int64)
    unlisted = _too_large(Rn.shape[0], len(reps_arr) * d, rank, null_dim - sum(g.dimension for g in groups))
    if unlisted is None:
        rest = _within_input(_combination_groups(Rn, reps_arr, rank, d, partitions, block_names), d)
        groups += sorted(rest, key=lambda g: (g.kind == "within_input", len(g.indices), g.indices))
    explained = sum(g.dimension for g in groups)
    listed = groups[:MAX_GROUPS]
    forced = max(0, kd - N)
    if forced:
        how += (f"; N = {N} < kd = {kd}: at least {forced} of the {null_dim} directions are forced by counting "
                "alone (more outputs than parameters), whatever the network does")
    return DependentInputs(listed, null_dim, explained, tol, how, groups_not_listed=len(groups) - len(listed),
                           forced_by_count=forced, unlisted=unlisted)


def _too_large(rows: int, n: int, rank: int, left: int) -> str | None:
    """Why the echelon form of the `left` remaining null directions over n columns is not written out, or
    None when it is small enough (RREF_MAX_FLOPS, RREF_MAX_ENTRIES)."""
    r = max(0, min(rank, n, rows))
    flops, entries = float(rows) * n * min(rows, n), float(n - r) * n
    if left <= 0 or (flops <= RREF_MAX_FLOPS and entries <= RREF_MAX_ENTRIES):
        return None
    return (f"the other {left} null directions (linear relations among the gradients of different inputs) are "
            f"not written out: their echelon form over {n:,} columns would be {entries:,.0f} numbers from a pivoted "
            f"QR of {flops:.1e} flops, and at this size each relation involves nearly every input; their number "
            "is exact (kd − rank(G) less the groups above)")


def _how(tol: float, d: int) -> str:
    return ("null space of G (= of GᵀG) at the absolute tolerance τ = "
            f"{tol:.3g} tied to σ₁(G), from G = QR; zero gradients first, then identical gradients, "
            "then the rest as rows of a reduced row echelon form"
            + ("" if d == 1 else f"; d = {d}: columns are (input, output) pairs, reported per input "
               "(an input carries weight when any of its d coefficients does; coefficients are d-vectors; "
               "identical groups hold for each output coordinate)"))


def _zero_group(zero: np.ndarray, d: int, partitions: list[Partition] | None,
                names: list[str] | None) -> list[DependentGroup]:
    """The inputs whose gradient is zero for every output (one group, or none)."""
    if not len(zero):
        return []
    return [DependentGroup("zero", zero.tolist(), [_unit(len(zero), j) for j in range(len(zero))],
                           len(zero) * d, *_collision_blocks(zero.tolist(), partitions, names),
                           description="zero behavioural gradient for every output",
                           coefficient_rule="each input alone: its gradient is zero")]


def _identical_groups(V: np.ndarray, nonzero: np.ndarray, tol: float, d: int, partitions: list[Partition] | None,
                      names: list[str] | None, cancel: CancelToken) -> tuple[list[DependentGroup], list[int]]:
    """Inputs whose d columns coincide (within tol): a group per class of two or more, and one
    representative input per class."""
    I, J = close_pairs(V[nonzero], tol, "2", cancel)
    part = join(len(nonzero), (I, J))
    groups, reps = [], []
    for lab in range(part.n_classes):
        mem = nonzero[part.members(lab)]
        reps.append(int(mem[0]))
        if len(mem) <= 1:
            continue
        coefs = []
        for j in range(1, len(mem)):
            v = [0.0] * len(mem)
            v[0], v[j] = 1.0, -1.0
            coefs.append(v)
        dup = partitions is not None and len(np.unique(partitions[0].labels[mem])) == 1
        groups.append(DependentGroup(
            "identical", mem.tolist(), coefs, (len(mem) - 1) * d,
            *_collision_blocks(mem.tolist(), partitions, names),
            description=("identical inputs (duplicates in the data)" if dup else
                         "identical behavioural gradients") + ("" if d == 1 else ", for every output"),
            coefficient_rule="e_first − e_j for every other member j" + ("" if d == 1 else ", for each output")))
    return groups, reps


def _combination_groups(Rn: np.ndarray, reps_arr: np.ndarray, rank: int, d: int,
                        partitions: list[Partition] | None, names: list[str] | None) -> list[DependentGroup]:
    """The rest of the null space on the representatives: rows of a reduced row echelon form, the
    directions that share inputs grouped together."""
    rest: list[DependentGroup] = []
    if not len(reps_arr):
        return rest
    cols = (reps_arr[:, None] * d + np.arange(d)[None, :]).reshape(-1)
    E = null_basis_rref(Rn[:, cols], min(rank, len(cols)))  # rows: null directions over `cols`
    if not len(E):
        return rest
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
            "combination", idx, coefs, len(dirs), *_collision_blocks(idx, partitions, names),
            description=f"{len(dirs)} linear relation{'s' if len(dirs) != 1 else ''} among "
                        f"{len(idx)} inputs' gradients"))
    return rest


def _within_input(rest: list[DependentGroup], d: int) -> list[DependentGroup]:
    """Relations among one input's own d outputs (d > 1): gathered into one group, said in words."""
    singles = [g for g in rest if len(g.indices) == 1]
    if not singles or d <= 1:
        return rest
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
    return rest


def _unit(n: int, j: int) -> list[Any]:
    v: list[Any] = [0.0] * n
    v[j] = 1.0
    return v
