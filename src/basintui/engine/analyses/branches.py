"""The level set's local branches (engine/analyses/levelset.py, rule (b) 4-5 and (c)): the dimension and
tangent space of the branch through a retracted point (`local_probe`), whether F is smooth between θ* and
it (`segment_kink`), the verdict at one radius (`verdict_at_radius`) and across radii (`combine_radii`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .retraction import Probe

LOCAL_FRAC = 1e-2  # local probe step ε = LOCAL_FRAC · ‖p − θ*‖
KER_RTOL = 1e-6  # candidate tangent directions at p: σ_j(J(p)) ≤ KER_RTOL · σ₁(J(p)) (or the rank rule)
PCA_THRESHOLD = 0.5  # a direction of D/ε counts as tangent when its singular value exceeds this
SAME_SIN = 0.2  # tangent spaces agree when sin(largest principal angle) ≤ 0.2 (11.5°)
DIFFER_SIN = 0.5  # … and clearly differ when it is ≥ 0.5 (30°); in between: cannot tell
KINK_RATIO = 0.5  # F is not smooth between θ* and p when ‖Δ⁴J‖ along the segment > 0.5 · its change
KINK_FLOOR = 1e-3  # … a change of J below 1e-3 · the typical ‖J‖ at this radius does not count
MIN_CONVERGED_FRAC = 0.5  # fewer converged retractions than this fraction of the points: cannot tell


def _orthonormal_complement(R: np.ndarray, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` orthonormal random vectors (columns, n × count) orthogonal to the rows of R (orthonormal)."""
    Z = rng.standard_normal((n, count))
    for _ in range(2):
        if R.shape[0]:
            Z = Z - R.T @ (R @ Z)
    Q = np.linalg.qr(Z)[0]
    return Q[:, :count]


def _sin_max(a: tuple[str, np.ndarray], b: tuple[str, np.ndarray]) -> float:
    """sin of the largest principal angle between two subspaces of equal dimension, each given as
    ("basis", rows spanning it) or ("complement", rows spanning its orthogonal complement)."""
    ka, A = a
    kb, B = b
    if ka == "basis" and kb == "basis":
        M = B - (B @ A.T) @ A
    elif ka == "complement" and kb == "complement":
        M = B - (B @ A.T) @ A  # equal dimensions: the complements' angles are the subspaces' angles
    elif ka == "basis":
        M = B @ A.T  # components of A's vectors along B's complement
    else:
        M = A @ B.T
    if M.size == 0:
        return 0.0
    return float(min(1.0, np.linalg.norm(M, 2)))


def local_probe(pr: Probe, theta0: np.ndarray, p: np.ndarray, F0: np.ndarray, s: float, max_dirs: int,
                 rng: np.random.Generator) -> dict[str, Any]:
    """The branch of Z through p: its dimension and tangent space, from small retracted steps around p."""
    n = p.size
    eps = LOCAL_FRAC * s
    fact = pr.jac(p)
    s1 = float(fact.s[0]) if len(fact.s) else 0.0
    cut = max(fact.cut, KER_RTOL * s1)
    R = fact.Vt[fact.s > cut] if s1 > 0 else np.zeros((0, n))
    K = n - R.shape[0]
    out: dict[str, Any] = {"step": eps, "candidates": K, "rank_J": int(np.count_nonzero(fact.s > fact.cut)),
                           "_J": fact.J}
    if K == 0:
        out.update(dim=0, mode="immersion", directions=0, converged=0, extents=[])
        out["_tangent"] = ("basis", np.zeros((0, n)))
        return out
    full = K <= max_dirs
    q = K if full else max_dirs
    V = _orthonormal_complement(R, n, q, rng)
    disp, failed = [], 0
    for j in range(q):
        end, info = pr.retract(p + eps * V[:, j], F0, eps)
        if info["converged"]:
            disp.append((end - p) / eps)
        else:
            failed += 1
    out.update(mode="full" if full else "sampled", directions=q, converged=len(disp))
    if failed:
        out.update(dim=None, extents=[],
                   why=f"{failed} of {q} local retractions did not converge")
        return out
    D = np.array(disp)
    sv, Wt = np.linalg.svd(D, full_matrices=False)[1:]
    out["extents"] = [float(v) for v in sv[:12]]
    if full:
        d = int(np.count_nonzero(sv > PCA_THRESHOLD))
        out["dim"] = d
        out["_tangent"] = ("basis", Wt[:d]) if d <= n - d else ("complement", _complement_rows(Wt[:d], n))
        return out
    kept2 = (D * D).sum(axis=1)
    retention = float(K * kept2.mean())
    se = float(K * kept2.std(ddof=1) / math.sqrt(q)) if q > 1 else 0.0
    out.update(retention=retention, retention_se=se)
    if K - retention <= max(2.0 * se, 0.005 * K, 0.5):
        out["dim"] = K
        out["_tangent"] = ("complement", R) if R.shape[0] <= K else ("basis", _complement_rows(R, n))
    else:
        out["dim"] = int(min(K, max(int(np.count_nonzero(sv > PCA_THRESHOLD)), round(retention))))
        out["why"] = "tangent space only sampled (fewer tangent directions than candidates)"
    return out


def segment_kink(pr: Probe, theta0: np.ndarray, p: np.ndarray, J0: np.ndarray, Jp: np.ndarray | None,
                  j_scale: float) -> float:
    """Is F smooth between θ* and p? J at t = 0, ¼, ½, ¾, 1 along the segment: its fourth difference
    J₀ − 4J₁ + 6J₂ − 4J₃ + J₄ vanishes for a polynomial of degree ≤ 3 in t (it is ≤ 0.38 of J's change for
    t^k, k ≤ 6, and O(ρ⁴) for a smooth F at small ρ), while a jump of J (a ReLU-type kink crossed) leaves
    at least the jump. Returns ‖Δ⁴J‖ relative to the larger of J's largest change along the segment and
    KINK_FLOOR · j_scale (the typical ‖J‖ at this radius: a change of J far below it, e.g. round-off in
    a J that vanishes on the level set, is no kink)."""
    Js = [J0] + [pr.J(theta0 + t * (p - theta0)) for t in (0.25, 0.5, 0.75)] + [Jp if Jp is not None else pr.J(p)]
    d4 = Js[0] - 4.0 * Js[1] + 6.0 * Js[2] - 4.0 * Js[3] + Js[4]
    spread = max(max(float(np.linalg.norm(Jt - J0)) for Jt in Js[1:]), KINK_FLOOR * j_scale)
    if spread == 0.0:
        return 0.0
    return float(np.linalg.norm(d4)) / spread


def _complement_rows(A: np.ndarray, n: int) -> np.ndarray:
    """Orthonormal rows spanning the orthogonal complement of the (orthonormal) rows of A."""
    if A.shape[0] == 0:
        return np.eye(n)
    Q = np.linalg.svd(A, full_matrices=True)[2]
    return Q[A.shape[0]:]


def verdict_at_radius(rho: float, points: list[dict[str, Any]], locals_: list[dict[str, Any]],
                       disp: list[np.ndarray], m: int) -> dict[str, Any]:
    """The dimension and manifold verdict at one radius (rule 5 of the module docstring)."""
    conv = [pt for pt in points if pt["converged"]]
    returned = [pt for pt in conv if pt["returned"]]
    entry: dict[str, Any] = {"radius": rho, "points": m, "converged": len(conv), "returned": len(returned)}
    branch = [lo for lo in locals_ if lo.get("dim") is not None]
    unknown = [lo for lo in locals_ if lo.get("dim") is None]
    dims = sorted({lo["dim"] for lo in branch})
    entry["branch_dims"] = {str(d): sum(1 for lo in branch if lo["dim"] == d) for d in dims}
    entry["unresolved_points"] = len(unknown)
    entry["kinked_points"] = 0
    entry["max_angle_deg"] = None
    entry["spread_deg"] = None
    early = _early_verdict(conv, returned, branch, unknown, dims, m)
    if early is not None:
        entry.update(early)
        return entry
    d = max(dims)
    entry["dimension"] = d
    worst, n_tangents = _worst_angle(branch)
    if n_tangents >= 2:
        entry["max_angle_deg"] = math.degrees(math.asin(worst))
    spread = _spread(disp, locals_, branch, d)
    if spread is not None:
        entry["spread_deg"] = math.degrees(math.asin(spread))
    smooth = [lo for lo in branch if lo.get("smooth", True)]
    kinked = len(branch) - len(smooth)
    entry["kinked_points"] = kinked
    if worst >= DIFFER_SIN or (spread is not None and spread >= DIFFER_SIN):
        differ = _differ_verdict(disp, locals_, branch, smooth, d, worst, spread, kinked)
        if differ is not None:
            entry.update(differ)
            return entry
    problems = _problems(unknown, branch, n_tangents, d, disp, worst, spread)
    if problems:
        entry.update(manifold=None, why="cannot tell: " + "; ".join(problems))
        return entry
    entry.update(manifold=True, why=f"one branch of dimension {d}: tangent spaces agree within "
                                    f"{math.degrees(math.asin(worst)):.1f}°" +
                                    (f" and the points lie within {math.degrees(math.asin(spread)):.1f}° of one "
                                     f"{d}-dimensional subspace through θ*" if spread is not None else ""))
    return entry


def _early_verdict(conv, returned, branch, unknown, dims, m) -> dict[str, Any] | None:
    """The answers that need no angles: too few converged, all returned to θ*, no local dimension, or
    branches of different dimensions."""
    if len(conv) < max(1, math.ceil(MIN_CONVERGED_FRAC * m)):
        return dict(dimension=max(dims) if dims else None, manifold=None,
                    why=f"only {len(conv)} of {m} retractions converged")
    if len(returned) == len(conv):
        return dict(dimension=0, manifold=True,
                    why="every retraction came back to θ*: the level set is the single point θ* here "
                        "(a 0-dimensional manifold)")
    if not branch:
        return dict(dimension=None, manifold=None,
                    why="no point away from θ* had its local dimension measured: " +
                        "; ".join(sorted({lo.get("why", "?") for lo in unknown})))
    if len(dims) > 1:
        return dict(dimension=max(dims), manifold=False,
                    why=f"branches of different dimensions ({', '.join(map(str, dims))}) meet here")
    return None


def _worst_angle(los: list[dict[str, Any]]) -> tuple[float, int]:
    """sin of the largest principal angle between any two measured tangent spaces, and how many there are."""
    tangents = [lo["_tangent"] for lo in los if "_tangent" in lo]
    worst = 0.0
    for i in range(len(tangents)):
        for j in range(i + 1, len(tangents)):
            worst = max(worst, _sin_max(tangents[i], tangents[j]))
    return worst, len(tangents)


def _spread(disp: list[np.ndarray], locals_: list[dict[str, Any]], los: list[dict[str, Any]], d: int) -> float | None:
    """How far (sin) the points of `los` lie from the best d-dimensional subspace through θ*."""
    W = [v for v, lo in zip(disp, locals_) if lo.get("dim") is not None and any(lo is x for x in los)]
    if not 0 < d < len(W):
        return None
    Wm = np.array([w / np.linalg.norm(w) for w in W])
    top = np.linalg.svd(Wm, full_matrices=False)[2][:d]
    res = Wm - (Wm @ top.T) @ top
    return float(min(1.0, np.linalg.norm(res, axis=1).max()))


def _differ_verdict(disp, locals_, branch, smooth, d, worst, spread, kinked) -> dict[str, Any] | None:
    """Tangent spaces or the points' subspace clearly differ: branches cross, unless only across a kink."""
    # Only a difference seen among points that F reaches smoothly from θ* says "branches cross": across a
    # kink of F (a ReLU switching on between θ* and the point) the tangent space can jump on a manifold too.
    w_s, n_s = _worst_angle(smooth)
    sp_s = _spread(disp, locals_, smooth, d)
    if n_s >= 2 and w_s >= DIFFER_SIN:
        return dict(manifold=False, why=f"tangent spaces differ by {math.degrees(math.asin(w_s)):.0f}° (≥ "
                                        f"{math.degrees(math.asin(DIFFER_SIN)):.0f}°): branches cross here (or the "
                                        f"level set turns that much within this radius)")
    if sp_s is not None and sp_s >= DIFFER_SIN:
        return dict(manifold=False, why=f"the points do not lie near one {d}-dimensional subspace through θ* "
                                        f"(off by up to {math.degrees(math.asin(sp_s)):.0f}°): several branches")
    if kinked:
        return dict(manifold=None, why=f"cannot tell: tangent spaces differ by up to "
                                       f"{math.degrees(math.asin(max(worst, spread or 0.0))):.0f}°, but F is not smooth "
                                       f"between θ* and {kinked} of the {len(branch)} points (its Jacobian jumps "
                                       f"along the segment: a kink, e.g. a ReLU switching), and across a kink the "
                                       f"tangent space of a manifold can jump too")
    return None


def _problems(unknown, branch, n_tangents, d, disp, worst, spread) -> list[str]:
    """Why the verdict at this radius cannot be told (empty: it is a manifold)."""
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} point(s) without a local dimension")
    if n_tangents < len(branch):
        problems.append("tangent spaces only sampled at some points")
    if n_tangents < 2 and d < len(disp):
        problems.append("too few points away from θ* to compare tangent spaces")
    if worst > SAME_SIN:
        problems.append(f"tangent spaces differ by {math.degrees(math.asin(worst)):.0f}°, between the "
                        f"'same' ({math.degrees(math.asin(SAME_SIN)):.1f}°) and 'different' "
                        f"({math.degrees(math.asin(DIFFER_SIN)):.0f}°) thresholds")
    if spread is not None and spread > SAME_SIN:
        problems.append(f"the points lie up to {math.degrees(math.asin(spread)):.0f}° off one subspace")
    return problems


def combine_radii(by_radius: list[dict[str, Any]]) -> tuple[int | None, bool | None, bool, str, str]:
    """Top-level answers from the per-radius ones (rule (c)): dim, manifold, radius_dependent, why, method."""
    def fmt(rho):
        return f"ρ = {rho:.0e}"

    dims = [(e["radius"], e["dimension"]) for e in by_radius if e["dimension"] is not None]
    mans = [(e["radius"], e["manifold"]) for e in by_radius if e["manifold"] is not None]
    undecided = [e for e in by_radius if e["manifold"] is None]
    dim_set = {d for _, d in dims}
    man_set = {m for _, m in mans}
    dependent = len(dim_set) > 1 or len(man_set) > 1
    answers = "; ".join(f"{fmt(e['radius'])}: dimension {e['dimension']}, manifold "
                        f"{ {True: 'yes', False: 'no', None: 'cannot tell'}[e['manifold']] }" for e in by_radius)
    if dependent:
        why = f"the answer depends on the probe radius ({answers})"
        return None, None, True, why, why
    dim = dims[0][1] if dims else None
    if not mans:
        why = "cannot tell at any radius: " + "; ".join(f"{fmt(e['radius'])}: {e['why']}" for e in by_radius)
        man = None
    else:
        man = mans[0][1]
        first = next(e for e in by_radius if e["manifold"] is not None)
        why = first["why"] + f" (the same at {len(mans)} of {len(by_radius)} radii"
        if undecided:
            why += "; " + "; ".join(f"{fmt(e['radius'])} cannot tell: {e['why']}" for e in undecided)
        why += ")"
    method = (f"largest local branch dimension among retracted points, the same at {len(dims)} of "
              f"{len(by_radius)} radii ({', '.join(fmt(r) for r, _ in dims)})" if dims else
              "no radius gave a dimension")
    return dim, man, False, why, method
