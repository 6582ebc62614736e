"""Which flat directions are symmetries (issue 18 item 1): split G's kernel into the directions every
network of this shape has, the directions that units dead on every training input add, and the rest.

Symmetry tangents at θ (each a vector in parameter space along which the function is fixed on every input):

- positive rescaling of a hidden unit between a producer and the Linear that reads it, through a
  positively homogeneous activation (ReLU, LeakyReLU) or none: the producer's row (and bias) × e^t, the
  reader's column × e^−t. With no activation between two Linear maps the whole GL(h) acts: one tangent
  per elementary matrix E_ij (A W₁, A b₁, −W₂ A). A producer is a Linear, or a LayerNorm with its affine
  weight and bias (γ_u, β_u).
- a Linear feeding a LayerNorm: LayerNorm removes the mean, so adding c·1 to its input is exact (δb = 1,
  δW[:, j] = 1); scaling its input by e^t is a symmetry only up to LayerNorm's eps (the residual says how far).
- cross-entropy on probabilities: softmax ignores a common shift of the logits (the last Linear's
  δb = 1 and δW[:, j] = 1).

Dead units: a ReLU unit whose pre-activation is ≤ 0 on every training input (its derivative is exactly 0
there): the coordinate directions of its incoming weights, its bias and its outgoing weights are flat on
this training set only. A dead unit's own rescaling lies in that span and is counted with it.

Counting: dim = the dimension of the part of span(tangents) inside the numerical kernel of Gᵀ at G's
tolerance τ (the number of singular values of Gᵀ·Q ≤ τ, Q an orthonormal basis of the span, in float64);
dead_dim = the same count for span(tangents ∪ dead directions) minus dim. Both are ≤ N − rank(G) by
construction (a subspace on which ‖Gᵀv‖ ≤ τ‖v‖ cannot meet the span of the r singular directions above τ),
so data_dependent = kernel_dim − dim − dead_dim ≥ 0 except for rounding at τ itself, which is then said.

The finder follows nn.Sequential chains (the MLP builder's models, and hand-built Sequentials with
LayerNorms); any other model gets no tangents, with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..numerics.tolerances import EPS, NEAR_FACTOR
from ..problem.models import Layout, sequence

HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity)  # act(a·z) = a·act(z) for a > 0
DEAD_CAPABLE = (nn.ReLU,)  # derivative exactly 0 for z ≤ 0
MAX_TANGENTS = 4096  # a GL(h) between two wide Linear maps has h² tangents: beyond this, say so and skip


@dataclass
class Tangent:
    kind: str  # rescale | gl | layernorm-shift | layernorm-scale | softmax-shift
    where: str  # the modules (and unit) it moves
    vector: np.ndarray  # (N,) float64
    unit: tuple[int, int] | None = None  # (module index, unit): a hidden unit's rescaling (dropped if dead)


@dataclass
class Found:
    """What the model's structure says: the tangents, the dead units and their coordinates, the caveats."""

    tangents: list[Tangent]
    dead_units: list[tuple[int, int]]  # (module index of the producer, unit)
    dead_coords: np.ndarray  # indices into θ of the dead units' incoming, bias and outgoing weights
    complete: bool  # False: the model was not searched (or only partly); `why` says what was left out
    why: list[str] = field(default_factory=list)


def _offsets(model: nn.Module, layout: Layout) -> dict[int, tuple[int, tuple[int, ...]]]:
    """id(parameter) -> (offset in θ, shape), for the trainable parameters."""
    by_name = {p.name: p for p in layout.params}
    out = {}
    for name, p in model.named_parameters():
        info = by_name.get(name)
        if info is not None:
            out[id(p)] = (info.offset, info.shape)
    return out


def _slot(offsets: dict, p: torch.Tensor | None) -> tuple[int, tuple[int, ...]] | None:
    return None if p is None else offsets.get(id(p))


def _producer_params(m: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(per-unit scale parameter, per-unit bias) of a producer: Linear (rows of W, b) or affine LayerNorm."""
    if isinstance(m, nn.Linear):
        return m.weight, m.bias
    if isinstance(m, nn.LayerNorm) and m.weight is not None and len(m.normalized_shape) == 1:
        return m.weight, m.bias
    return None, None


def _chain(mods: list[nn.Module]) -> Iterator[tuple[int, list[nn.Module], int]]:
    """(producer index, the parameter-free modules after it, reader index) for consecutive producers."""
    prods = [i for i, m in enumerate(mods) if any(True for _ in m.parameters())]
    for a, b in itertools.pairwise(prods):
        yield a, mods[a + 1:b], b


def find(model: nn.Module, layout: Layout, x: torch.Tensor, probabilities: bool = False) -> Found:
    """The symmetry tangents and dead units of `model` at its parameters, on the inputs `x` (float64)."""
    n = layout.n_params
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        why = (f"the symmetry finder follows nn.Sequential chains; {type(model).__name__} is not one, so no "
               "symmetry or dead-unit directions were searched and the whole kernel counts as data-dependent "
               "(an upper bound)")
        return Found([], [], np.zeros(0, dtype=np.int64), False, [why])
    mods, offsets = sequence(model), _offsets(model, layout)
    tangents: list[Tangent] = []
    why: list[str] = []
    pre = _pre_activations(mods, x)
    dead_units: list[tuple[int, int]] = []
    dead: list[np.ndarray] = []
    for a, between, b in _chain(mods):
        found, note = _pair_tangents(mods, a, between, b, offsets, n)
        tangents += found
        if note:
            why.append(note)
        units, coords = _dead(mods, a, between, b, offsets, pre.get(a))
        dead_units += [(a, u) for u in units]
        dead += coords
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.LayerNorm):
            tangents += _layernorm_input(m, i, i + 1, offsets, n)
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            why.append(f"module {i} ({type(m).__name__}) in eval mode is an affine map with fixed statistics: no "
                       "scale symmetry there")
    if probabilities:
        tangents += _softmax_shift(mods, offsets, n, why)
    if len(tangents) > MAX_TANGENTS:
        why.append(f"{len(tangents)} tangents exceed {MAX_TANGENTS}: the GL(h) tangents were left out")
        tangents = [t for t in tangents if t.kind != "gl"]
    coords = np.unique(np.concatenate(dead)) if dead else np.zeros(0, dtype=np.int64)
    return Found(tangents, dead_units, coords, not any("left out" in w for w in why), why)


def _pre_activations(mods: list[nn.Module], x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each module's output on the inputs (index -> (k, width) float64), for the dead-unit test."""
    out, h = {}, x
    with torch.no_grad():
        for i, m in enumerate(mods):
            h = m(h)
            if h.dim() == 2:
                out[i] = h
    return out


def _vec(n: int, parts: list[tuple[tuple[int, tuple[int, ...]], np.ndarray]]) -> np.ndarray:
    v = np.zeros(n)
    for (offset, shape), values in parts:
        v[offset: offset + int(np.prod(shape))] += values.reshape(-1)
    return v


def _np(p: torch.Tensor) -> np.ndarray:
    return p.detach().double().cpu().numpy()


def _pair_tangents(mods, a: int, between: list[nn.Module], b: int, offsets: dict, n: int
                   ) -> tuple[list[Tangent], str]:
    """The tangents that act between producer `a` and reader `b` (with `between` in the middle)."""
    prod, reader = mods[a], mods[b]
    scale, bias = _producer_params(prod)
    if scale is None or not isinstance(reader, nn.Linear):
        return [], ""
    if not all(isinstance(m, HOMOGENEOUS) for m in between):
        return [], ""
    s_slot, b_slot, r_slot = _slot(offsets, scale), _slot(offsets, bias), _slot(offsets, reader.weight)
    if s_slot is None or r_slot is None or (bias is not None and b_slot is None):
        return [], f"modules {a} → {b}: a frozen parameter; their rescaling was left out"
    S, B, R = _np(scale), (None if bias is None else _np(bias)), _np(reader.weight)
    linear_only = isinstance(prod, nn.Linear) and all(isinstance(m, nn.Identity) for m in between)
    label = f"{a}→{b}"
    if linear_only:
        return _gl(S, B, R, s_slot, b_slot, r_slot, n, label), ""
    slots = (s_slot, b_slot, r_slot)
    return [Tangent("rescale", f"{label} unit {u}", _e_ij(S, B, R, slots, n, u, u), unit=(a, u))
            for u in range(S.shape[0])], ""


def _e_ij(S, B, R, slots, n: int, i: int, j: int) -> np.ndarray:
    """The tangent of W₁ ↦ (I + tE_ij) W₁, b₁ ↦ (I + tE_ij) b₁, W₂ ↦ W₂ (I − tE_ij) at t = 0: row j of W₁ (and
    b₁) into row i, minus column i of W₂ into column j. i = j is unit i's positive rescaling."""
    s_slot, b_slot, r_slot = slots
    ds = np.zeros_like(S)
    ds[i] = S[j]
    parts = [(s_slot, ds)]
    if B is not None:
        db = np.zeros_like(B)
        db[i] = B[j]
        parts.append((b_slot, db))
    dr = np.zeros_like(R)
    dr[:, j] = -R[:, i]
    parts.append((r_slot, dr))
    return _vec(n, parts)


def _gl(S, B, R, s_slot, b_slot, r_slot, n: int, label: str) -> list[Tangent]:
    """GL(h) between two Linear maps with nothing between: A W₁, A b₁, −W₂ A for each E_ij."""
    h, slots = S.shape[0], (s_slot, b_slot, r_slot)
    return [Tangent("gl", f"{label} E[{i},{j}]", _e_ij(S, B, R, slots, n, i, j)) for i in range(h) for j in range(h)]


def _layernorm_input(lin: nn.Linear, a: int, b: int, offsets: dict, n: int) -> list[Tangent]:
    """A Linear feeding a LayerNorm: the mean shift (exact) and the scale (exact up to LayerNorm's eps)."""
    w_slot, b_slot = _slot(offsets, lin.weight), _slot(offsets, lin.bias)
    if w_slot is None:
        return []
    W = _np(lin.weight)
    out = []
    for j in range(W.shape[1]):
        dw = np.zeros_like(W)
        dw[:, j] = 1.0
        out.append(Tangent("layernorm-shift", f"{a}→{b} column {j}", _vec(n, [(w_slot, dw)])))
    scale = [(w_slot, W)]
    if b_slot is not None:
        out.append(Tangent("layernorm-shift", f"{a}→{b} bias", _vec(n, [(b_slot, np.ones(W.shape[0]))])))
        scale.append((b_slot, _np(lin.bias)))
    out.append(Tangent("layernorm-scale", f"{a}→{b}", _vec(n, scale)))
    return out


def _softmax_shift(mods, offsets: dict, n: int, why: list[str]) -> list[Tangent]:
    """ce on probabilities: the last Linear's outputs shift together (δb = 1, δW[:, j] = 1)."""
    last = mods[-1] if mods else None
    if not isinstance(last, nn.Linear):
        why.append("ce on probabilities: the model does not end in a Linear, so the softmax shift was not placed")
        return []
    w_slot, b_slot = _slot(offsets, last.weight), _slot(offsets, last.bias)
    if w_slot is None:
        return []
    out = []
    W = _np(last.weight)
    for j in range(W.shape[1]):
        dw = np.zeros_like(W)
        dw[:, j] = 1.0
        out.append(Tangent("softmax-shift", f"{len(mods) - 1} column {j}", _vec(n, [(w_slot, dw)])))
    if b_slot is not None:
        out.append(Tangent("softmax-shift", f"{len(mods) - 1} bias", _vec(n, [(b_slot, np.ones(W.shape[0]))])))
    return out


def _dead(mods, a: int, between: list[nn.Module], b: int, offsets: dict, z: torch.Tensor | None
          ) -> tuple[list[int], list[np.ndarray]]:
    """Units of Linear `a` behind a ReLU that are ≤ 0 on every input, and the coordinates they make flat."""
    prod, reader = mods[a], mods[b]
    if not isinstance(prod, nn.Linear) or z is None or not between or not isinstance(between[0], DEAD_CAPABLE):
        return [], []
    units = [int(u) for u in torch.nonzero((z <= 0).all(dim=0)).flatten()]
    if not units:
        return [], []
    coords = []
    w = _slot(offsets, prod.weight)
    bias = _slot(offsets, prod.bias)
    r = _slot(offsets, reader.weight) if isinstance(reader, nn.Linear) else None
    for u in units:
        if w is not None:
            cols = w[1][1]
            coords.append(w[0] + u * cols + np.arange(cols))
        if bias is not None:
            coords.append(np.array([bias[0] + u]))
        if r is not None and all(isinstance(m, HOMOGENEOUS + DEAD_CAPABLE) for m in between):
            rows, cols = r[1]
            coords.append(r[0] + np.arange(rows) * cols + u)
    return units, coords


# --------------------------------------------------------------------------- counting against G


@dataclass
class Split:
    """The kernel split and its evidence (the report's `symmetry` section)."""

    dim: int
    dead_dim: int
    data_dependent_dim: int
    kernel_dim: int
    max_residual: float | None
    tangents: int
    span_rank: int
    dead_units: int
    dead_params: int
    dead_max_row: float  # max |G| over the dead coordinates' rows (0 when the derivative is exactly 0)
    tolerance: float
    dim_range: tuple[int, int]  # dim at τ·2 and τ/2: the count when rounding at τ goes either way
    complete: bool
    kinds: list[dict] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    meaning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dim": self.dim, "dead_dim": self.dead_dim, "data_dependent_dim": self.data_dependent_dim,
                "kernel_dim": self.kernel_dim, "max_residual": self.max_residual, "tangents": self.tangents,
                "span_rank": self.span_rank, "dead_units": self.dead_units, "dead_params": self.dead_params,
                "dead_max_row": self.dead_max_row, "tolerance": self.tolerance, "dim_range": list(self.dim_range),
                "complete": self.complete, "kinds": self.kinds, "why": self.why, "meaning": self.meaning}


def orth(M: np.ndarray) -> tuple[np.ndarray, int]:
    """An orthonormal basis of the span of M's columns (each normalised first) and its rank, in float64 at
    the numpy rule σ₁·max(shape)·ε."""
    if M.shape[1] == 0:
        return M, 0
    norms = np.linalg.norm(M, axis=0)
    M = M[:, norms > 0] / norms[norms > 0]
    if M.shape[1] == 0:
        return M, 0
    U, s, _ = np.linalg.svd(M, full_matrices=False)
    r = int(np.sum(s > s[0] * max(M.shape) * EPS))
    return U[:, :r], r


def flat_count(G: torch.Tensor, Q: np.ndarray, tol: float) -> tuple[int, int, int]:
    """(count, count at 2τ, count at τ/2) of singular values of Gᵀ·Q at or below τ: the dimension of the
    part of span(Q) that Gᵀ maps to at most τ (Q orthonormal, G's tolerance τ)."""
    if Q.shape[1] == 0:
        return 0, 0, 0
    GQ = G.T @ torch.as_tensor(Q, dtype=G.dtype, device=G.device)
    sv = torch.linalg.svdvals(GQ).cpu().numpy() if GQ.numel() else np.zeros(Q.shape[1])
    sv = np.concatenate([sv, np.zeros(Q.shape[1] - len(sv))])  # kd < m: the extra directions map to 0
    return (int(np.sum(sv <= tol)), int(np.sum(sv <= tol * NEAR_FACTOR)), int(np.sum(sv <= tol / NEAR_FACTOR)))


def residuals(G: torch.Tensor, tangents: list[Tangent], sigma1: float) -> np.ndarray:
    """‖Gᵀt‖ / (‖G‖₂·‖t‖) for each tangent (0 for a zero tangent)."""
    if not tangents:
        return np.zeros(0)
    T = torch.as_tensor(np.stack([t.vector for t in tangents], axis=1), dtype=G.dtype, device=G.device)
    num = torch.linalg.vector_norm(G.T @ T, dim=0).cpu().numpy()
    den = np.linalg.norm(np.stack([t.vector for t in tangents], axis=1), axis=0) * max(sigma1, np.finfo(float).tiny)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def split(found: Found, G: torch.Tensor, tolerance: float, rank: int, sigma1: float, rank_exact: bool = True) -> Split:
    """Count `found` against G (N × kd) at G's tolerance: the kernel split (see the module's docstring)."""
    n = G.shape[0]
    dead = set(found.dead_units)
    live = [t for t in found.tangents if t.unit is None or t.unit not in dead]
    res = residuals(G, live, sigma1)
    S = np.stack([t.vector for t in live], axis=1) if live else np.zeros((n, 0))
    Qs, span_rank = orth(S)
    dim, dim_hi, dim_lo = flat_count(G, Qs, tolerance)
    kernel = n - rank
    dead_row = float(G[torch.as_tensor(found.dead_coords, dtype=torch.long)].abs().max()) if len(found.dead_coords) else 0.0
    both = _with_dead(G, S, found.dead_coords, tolerance, dead_row)
    out = Split(dim=dim, dead_dim=both - dim, data_dependent_dim=kernel - both, kernel_dim=kernel,
                max_residual=float(res.max()) if len(res) else None, tangents=len(live), span_rank=span_rank,
                dead_units=len(dead), dead_params=len(found.dead_coords), dead_max_row=dead_row,
                tolerance=tolerance, dim_range=(dim_lo, dim_hi), complete=found.complete, why=list(found.why))
    out.kinds = _kinds(live, res)
    _explain(out, found, span_rank, rank_exact, len(found.tangents) - len(live))
    return out


def _with_dead(G: torch.Tensor, S: np.ndarray, coords: np.ndarray, tol: float, dead_row: float) -> int:
    """The flat count of span(S ∪ {e_i : i ∈ coords}). G's rows at the dead coordinates are exactly 0 (the
    ReLU's derivative is 0 there), so the span is span(e_i) ⊕ span(P S), P zeroing those rows, and its flat
    part is every e_i plus the flat part of span(P S): no N × |coords| matrix is formed. Should a dead row
    not be 0 (it cannot for a ReLU), the coordinates are counted with the tangents by the general rule."""
    n = G.shape[0]
    if dead_row > 0.0:
        D = np.zeros((n, len(coords)))
        D[coords, np.arange(len(coords))] = 1.0
        return flat_count(G, orth(np.concatenate([S, D], axis=1))[0], tol)[0]
    PS = S.copy()
    PS[coords] = 0.0
    return len(coords) + flat_count(G, orth(PS)[0], tol)[0]


def _kinds(live: list[Tangent], res: np.ndarray) -> list[dict]:
    rows: dict[str, dict] = {}
    for t, r in zip(live, res):
        row = rows.setdefault(t.kind, {"kind": t.kind, "count": 0, "max_residual": 0.0})
        row["count"] += 1
        row["max_residual"] = max(row["max_residual"], float(r))
    return list(rows.values())


def _explain(out: Split, found: Found, span_rank: int, rank_exact: bool, dropped: int) -> None:
    if out.data_dependent_dim < 0:
        out.why.append(f"the symmetry and dead-unit directions found ({out.dim + out.dead_dim}) exceed N − rank(G) = "
                       f"{out.kernel_dim} by {-out.data_dependent_dim}: singular values at G's tolerance "
                       f"{out.tolerance:.3g} are counted on both sides by rounding; the data-dependent part is "
                       "shown as 0")
        out.data_dependent_dim = 0
    if span_rank > out.dim:
        out.why.append(f"{span_rank - out.dim} of the {span_rank} independent tangent directions are not flat at "
                       f"G's tolerance {out.tolerance:.3g} (largest relative residual ‖Gᵀt‖/(‖G‖‖t‖) = "
                       f"{out.max_residual:.3g}; a LayerNorm's scale is a symmetry only up to its eps)")
    if out.dim_range[0] != out.dim or out.dim_range[1] != out.dim:
        out.why.append(f"the symmetry dimension hangs on the tolerance: {out.dim_range[0]} at τ/2, {out.dim} at τ, "
                       f"{out.dim_range[1]} at 2τ")
    if dropped:
        out.why.append(f"{dropped} rescaling tangent{'s' if dropped != 1 else ''} of dead units counted with the "
                       "dead-unit directions (each lies in its unit's coordinates)")
    if out.dead_max_row > 0:
        out.why.append(f"the dead units' rows of G are not exactly 0 (max |G| = {out.dead_max_row:.3g})")
    bound = "" if rank_exact and out.complete else " (an upper bound)"
    head = (f"kernel_dim {out.kernel_dim} = {out.dim} symmetry + {out.dead_dim} dead-unit + "
            f"{out.data_dependent_dim} data-dependent{bound}.")
    body = ("Symmetry directions keep the function fixed on every input: every network of this shape has them. "
            "Dead-unit directions are flat because those units are off on every training input; another input "
            "can wake them. The data-dependent rest is the degeneracy the training set itself creates.")
    out.meaning = [head, body]
