"""A 2-D loss slice through θ along a flat direction and the top singular direction (issue 18 item 5).

    loss[i, j] = Lₙ(θ + a[i]·u + b[j]·v),   a, b on a size × size grid (default 21 × 21) centred at 0

u: a unit DATA-DEPENDENT null direction of Gᵀ (flat to first order on the training set, and not a symmetry
of the architecture): the caller gives an orthonormal basis of null(Gᵀ) as columns (N, K) and, optionally,
the symmetry tangents (N, S); their span is projected out of the basis first, and u is the projected
basis's top left-singular vector (the null direction farthest from every symmetry; sign: its largest
entry positive). When nothing remains (every flat direction is a symmetry), u is a symmetry direction and
`note` says so; when null(Gᵀ) is empty, u is a random unit direction orthogonal to v, not flat, and `note`
says so. `along="symmetry"` asks for a symmetry direction as u.
v: the top left-singular direction of G (unit): the direction the outputs move most along, so the loss
rises along it fastest (to second order). u is re-orthogonalised against v (a rounding-level change).

Extent rule (same for both axes, so the picture compares flatness along u with the rise along v directly):
R = EXTENT_FRAC · max(1, ‖θ‖), the level-set probe's radius convention (RADII · max(1, ‖θ*‖)) at a larger
fraction, large enough that second-order flatness and the quadratic rise along v are both visible; `extent`
overrides it. The result reports the rises L(θ ± R v) − L(θ) and max |L(θ + a u) − L(θ)| along u.

The grid's points are evaluated in float64, CHUNK points per vmapped call (torch.func.vmap over the points;
one point at a time where the model has no batching rule). The centre a = b = 0 is θ itself, exactly.

API (stable; B1 wires it into `analysis.slices`, the NPZ keys slice_loss / slice_u / slice_v and the app):

    loss_slice(loss, theta, null_basis, top, *, symmetry=None, size=21, extent=None, along="data",
               cancel=None, progress=None) -> SliceResult
        loss: Callable[[Tensor (N,)], Tensor 0-dim]  (the full-batch Lₙ, e.g. lambda t: llc_loss(t, None))
        null_basis: (N, K) orthonormal columns spanning null(Gᵀ) (K may be 0, or None); tensors or numpy arrays
        top: (N,) the top left-singular vector of G;  symmetry: (N, S) tangent vectors (any scale) or None
        cancel: Callable[[], bool]; progress: Callable[[int, int], None] as (points done, size²)
    SliceResult: loss (size, size) float64 [i over a, j over b] (nan where not evaluated after a cancel),
        a, b (size,), u, v (N,), u_kind, v_kind, extent, center_loss, loss_min, loss_max, rise_u, rise_v,
        note, cancelled, parallel ("vmap" | "loop")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import vmap

EXTENT_FRAC = 0.1  # R = EXTENT_FRAC · max(1, ‖θ‖)
CHUNK = 32  # grid points per vmapped call
MAX_CHUNK_BYTES = 1 << 26  # … and at most this much of stacked parameter vectors
KEEP_SIN = 0.5  # a projected null direction is kept when its singular value (sin of its angle to the symmetries) ≥ this
DATA = "data-dependent null direction of Gᵀ"
SYMMETRY = "symmetry direction"
RANDOM = "random direction orthogonal to v (not flat)"
TOP = "top singular direction of G"


@dataclass(frozen=True, eq=False)
class SliceResult:
    loss: np.ndarray
    a: np.ndarray
    b: np.ndarray
    u: np.ndarray
    v: np.ndarray
    u_kind: str
    v_kind: str
    extent: float
    center_loss: float
    loss_min: float
    loss_max: float
    rise_u: float  # max |L(θ + a u) − L(θ)| over the a axis
    rise_v: float  # max of L(θ ± R v) − L(θ)
    note: str
    cancelled: bool
    parallel: str


def _unit_sign(x: torch.Tensor) -> torch.Tensor:
    x = x / torch.linalg.norm(x)
    return -x if float(x[int(torch.argmax(x.abs()))]) < 0 else x


def _orthonormal(M: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of M's column span (relative rank cut at N·eps·σ₁)."""
    if M.shape[1] == 0:
        return M
    U, S, _ = torch.linalg.svd(M, full_matrices=False)
    if S.numel() == 0 or float(S[0]) == 0.0:
        return M[:, :0]
    keep = S > S[0] * max(M.shape) * torch.finfo(torch.float64).eps
    return U[:, keep]


def _directions(theta, null_basis, top, symmetry, along, seed: int = 0) -> tuple[torch.Tensor, str, torch.Tensor, str]:
    n = theta.numel()
    top = torch.as_tensor(top)
    null_basis = None if null_basis is None else torch.as_tensor(null_basis)
    symmetry = None if symmetry is None else torch.as_tensor(symmetry)
    v = top.detach().to(torch.float64).reshape(-1).to(theta.device)
    if v.numel() != n or not torch.isfinite(v).all() or float(torch.linalg.norm(v)) == 0.0:
        raise ValueError(f"top: a nonzero finite vector of length N = {n} is needed (got {tuple(top.shape)})")
    v = _unit_sign(v)
    B = torch.zeros(n, 0, dtype=torch.float64) if null_basis is None else null_basis.detach().to(torch.float64)
    B = B.to(theta.device)
    if B.shape[0] != n:
        raise ValueError(f"null_basis: (N = {n}, K) columns are needed (got {tuple(B.shape)})")
    Q = _orthonormal(symmetry.detach().to(torch.float64).to(theta.device).reshape(n, -1)) if symmetry is not None \
        else B[:, :0]
    notes = []
    u = kind = None
    if along == "symmetry":
        if Q.shape[1]:
            u, kind = Q[:, 0], SYMMETRY
        else:
            notes.append("no symmetry direction was given: u is a data-dependent flat direction instead")
    if u is None and B.shape[1]:
        P = B - Q @ (Q.T @ B)
        U, S, _ = torch.linalg.svd(P, full_matrices=False)
        if S.numel() and float(S[0]) >= KEEP_SIN:
            u, kind = U[:, 0], DATA
        elif Q.shape[1]:
            u, kind = Q[:, 0], SYMMETRY
            notes.append("every flat direction is a symmetry (no data-dependent one remains): u is a symmetry "
                         "direction")
    if u is None and Q.shape[1] and B.shape[1] == 0 and along != "symmetry":
        u, kind = Q[:, 0], SYMMETRY
        notes.append("null(Gᵀ) was not given: u is a symmetry direction")
    if u is None:
        gen = torch.Generator(device="cpu").manual_seed(seed + 11)
        u, kind = torch.randn(n, generator=gen, dtype=torch.float64), RANDOM
        notes.append("null(Gᵀ) is empty (no flat direction): u is a random direction orthogonal to v, and the "
                     "loss rises along it too")
    u = u.to(v.device) - v * torch.dot(v, u.to(v.device))
    return _unit_sign(u), kind, v, "; ".join(notes)


def _evaluate(loss, pts: torch.Tensor, mode: list[str]) -> torch.Tensor:
    if mode[0] == "vmap":
        try:
            return vmap(loss)(pts)
        except (RuntimeError, NotImplementedError):  # an operator without a batching rule
            mode[0] = "loop"
    return torch.stack([loss(p) for p in pts])


def loss_slice(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
               null_basis: torch.Tensor | None, top: torch.Tensor, *, symmetry: torch.Tensor | None = None,
               size: int = 21, extent: float | None = None, along: str = "data",
               cancel: Callable[[], bool] | None = None,
               progress: Callable[[int, int], None] | None = None) -> SliceResult:
    """The slice (see the module docstring)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"size = {size!r}: an odd integer ≥ 3 is allowed (the centre must be θ)")
    if along not in ("data", "symmetry"):
        raise ValueError(f"along = {along!r}: 'data' or 'symmetry' is allowed")
    if extent is not None and not (math.isfinite(extent) and extent > 0):
        raise ValueError(f"extent = {extent!r}: a positive finite number is allowed")
    theta = theta.detach().to(torch.float64).reshape(-1)
    u, u_kind, v, note = _directions(theta, null_basis, top, symmetry, along)
    R = float(extent) if extent is not None else EXTENT_FRAC * max(1.0, float(torch.linalg.norm(theta)))
    ax = np.linspace(-R, R, size)
    ax[size // 2] = 0.0
    grid = np.full((size, size), np.nan)
    A = torch.as_tensor(ax, dtype=torch.float64, device=theta.device)
    coords = [(i, j) for i in range(size) for j in range(size)]
    chunk = max(1, min(CHUNK, MAX_CHUNK_BYTES // (8 * theta.numel())))
    mode, cancelled = ["vmap"], False
    with torch.no_grad():
        for c0 in range(0, len(coords), chunk):
            if cancel is not None and cancel():
                cancelled = True
                break
            part = coords[c0: c0 + chunk]
            ii = torch.tensor([p[0] for p in part], device=theta.device)
            jj = torch.tensor([p[1] for p in part], device=theta.device)
            pts = theta + A[ii, None] * u + A[jj, None] * v
            vals = _evaluate(loss, pts, mode).detach().cpu().numpy()
            for (i, j), val in zip(part, vals):
                grid[i, j] = float(val)
            if progress is not None:
                progress(c0 + len(part), len(coords))
    return _result(grid, ax, u, v, u_kind, R, note, cancelled, mode[0])


def _result(grid, ax, u, v, u_kind, R, note, cancelled, parallel) -> SliceResult:
    c = grid.shape[0] // 2
    centre = float(grid[c, c])
    fin = grid[np.isfinite(grid)]
    row_u = grid[:, c] - centre
    rise_u = float(np.nanmax(np.abs(row_u))) if np.isfinite(row_u).any() else float("nan")
    ends_v = np.array([grid[c, 0], grid[c, -1]]) - centre
    rise_v = float(np.nanmax(ends_v)) if np.isfinite(ends_v).any() else float("nan")
    return SliceResult(
        loss=grid, a=ax.copy(), b=ax.copy(), u=u.cpu().numpy(), v=v.cpu().numpy(), u_kind=u_kind, v_kind=TOP,
        extent=R, center_loss=centre, loss_min=float(fin.min()) if fin.size else float("nan"),
        loss_max=float(fin.max()) if fin.size else float("nan"), rise_u=rise_u, rise_v=rise_v, note=note,
        cancelled=cancelled, parallel=parallel,
    )
