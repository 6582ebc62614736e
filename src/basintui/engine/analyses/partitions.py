"""Partitions of the training inputs (DESIGN §1): which inputs a block maps to the same activation.

A `Partition` labels each input with its class; `partition_of` groups rows of an activation matrix that
agree within `atol` (‖·‖∞, exactly: `close_pairs` prunes candidates by a random contraction, then checks),
`join` merges edge sets into classes (optionally coarser than a previous partition, so partitions along
the network nest), and `entropy_bits` is a partition's entropy in bits (what information loss counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..cancel import CancelToken
from ..numerics.tolerances import EPS

ACT_RTOL = 1e-9  # activations equal iff ‖·‖∞ ≤ ACT_RTOL · max|A|


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
