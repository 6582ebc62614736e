"""A probe of the behaviour level set Z = {θ : F(θ) = F(θ*)} near θ* (DESIGN §4, issue 12), instead of
assuming that its dimension is N − rank(G). It answers three questions: the dimension of Z near θ* (the
largest dimension of its local branches), whether Z is a manifold there (`manifold`: true, false, or
null with the reason when it cannot tell), and how both answers depend on the probe radius.

(a) Rank constancy. rank(G) re-measured (same tolerance rule as at θ*) at random points θ* + ρu,
    ‖u‖ = 1, ρ ∈ RADII · max(1, ‖θ*‖). The rank is lower semicontinuous, so nearby points can only
    show a higher rank; if every probe agrees with θ*, the rank is taken as locally constant and the
    constant-rank theorem makes Z a manifold of dimension N − r. Where the rank drops this says nothing
    about Z (seed 003: f = a² + b², a², 0 all have rank 0 at 0 and level sets of dimension 0, 1, 2).

(b) Walk, at each radius ρ ∈ RADII · max(1, ‖θ*‖) separately:
    1. Points. M random unit directions u in the whole parameter space (M = POINTS_SMALL when
       N ≤ SMALL_N, else POINTS_LARGE), a step to θ* + ρu, and a retraction onto Z.
    2. Retraction. Gauss-Newton minimum-norm steps δ = −J⁺ (F(θ) − F(θ*)) (J⁺ keeps the singular values
       above the rank rule), each followed by a line search over step lengths α: α = 1 is taken when it
       cuts the residual tenfold; otherwise α = 2, 3, 4, 6, 8, … while the residual keeps falling (where F
       vanishes to order m, Gauss-Newton alone gains only a factor (m − 1)/m per step and α = m is exact
       for a^m), or α = 1/2, 1/4, … when α = 1 does not decrease it. J is reused (chord steps) while a
       step cuts the residual at least in half and recomputed otherwise. Stopping rule, all relative:
       converged when, with J evaluated at the point itself, the next Gauss-Newton step is at most
       XTOL · L (L = the step that started the retraction: ρ, or ε in the local probe below) and the
       residual is at most max(RES_RTOL · S, floor) (S = ‖F(start) − F(θ*)‖, how much F moves at this
       scale; floor = FLOOR_ULPS · ε_mach · (‖F(θ*)‖ + ‖F(θ)‖), F's own round-off); or, when no step
       length decreases the residual any more, converged "at round-off" if the residual is at the floor
       and the last step is at most LOOSE · L. Nothing is compared with an absolute tolerance: for
       f = a⁶ at ρ = 1e-2 every trial point has |f| ≤ 1e-12 and is still retracted. A retraction that
       does not converge is reported and its point is not used.
    3. Returned points. A retracted point p with ‖p − θ*‖ ≤ RETURN_FRAC · ρ came back to θ*. If every
       converged point did, Z is the single point θ* at this radius: dimension 0, a (0-dimensional)
       manifold.
    4. Local branch dimension, measured around each other point p (the rank of J at p is not used
       for it: for f = a², J = 0 on the whole zero set, a line). Candidates: the directions that J(p)
       maps to (nearly) zero, i.e. the complement of its right singular vectors with σ > max(rank rule,
       KER_RTOL · σ₁(J(p))) (a generous cut: p lies on Z only up to the retraction's accuracy, which
       tilts J(p) by a tiny amount; a candidate that is not tangent is pulled back by the probe).
       A small step ε = LOCAL_FRAC · ‖p − θ*‖ along each of an orthonormal basis of the candidates
       (all of them when at most `max_directions`, else that many random ones), retracted onto Z,
       gives displacements D. Full basis: the branch dimension is the number of singular values of
       D/ε above PCA_THRESHOLD (a tangent direction keeps its step, a normal one is pulled back), and
       the tangent space T_p is spanned by their right singular vectors. Sampled basis: the retention
       K_p · mean(‖D_j‖²/ε²) (K_p candidates; its expectation is dim T_p), read as K_p (and T_p = all
       candidates) within two standard errors or 0.5 % of it; otherwise T_p is unknown.
    5. The answer at this radius. Dimension = the largest branch dimension. `manifold`: false when
       branches of different dimensions are seen, or when two tangent spaces differ by a principal
       angle with sin ≥ DIFFER_SIN (two branches crossing: f = ab, a² − b², the cone a² + b² − c²), or
       when the points do not lie near one subspace of that dimension through θ* (sin ≥ DIFFER_SIN);
       true when every tangent space agrees within sin ≤ SAME_SIN and the points lie within
       sin ≤ SAME_SIN of one subspace; null with the reason otherwise (between the two thresholds,
       tangent spaces unknown, fewer than half of the retractions converged, too few points).
       Kinks: the "differ" tests count only among points that F reaches smoothly from θ*. J is sampled at
       t = 0, ¼, ½, ¾, 1 along the segment θ* → p; a fourth difference above KINK_RATIO of J's change
       (or of KINK_FLOOR · the typical ‖J‖ at that radius) is a jump of J, a kink of F (a ReLU switching).
       Tangent spaces that differ only across a kink give null ("cannot tell"): a manifold's tangent
       space can jump at a kink too (relu(a) + b: a graph with a corner).

    6. Cost: per radius M retractions, and per point one local probe (at most max_directions retractions)
       and four Jacobians for the kink check. numpy's BLAS runs on one thread meanwhile (small matrices).

(c) Across radii. When every radius that gave an answer gives the same dimension and the same
    verdict, that is the answer; a radius that could not tell is named in `manifold_why`. When two
    radii disagree, `radius_dependent` is true, and `estimated_dim` and `manifold` are null (never one
    number for an answer that changes with the radius); `by_radius` holds every radius's answer.

(d) Claim 1. ‖F(θ* + s v) − F(θ*)‖ for s = h₁/2 … h₁/256, h₁ = CLAIM1_BASE · max(1, ‖θ*‖): along
    unit v ∈ ker J it scales as s², along v in the row space of J as s; the fitted log-log slopes
    (median over a few directions) are reported.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...schema.events import Note
from .. import progress
from ..cancel import CancelToken
from ..numerics import spectrum as spectrum_mod
from ..numerics.tolerances import EPS
from ..problem.models import flat_params
from .branches import (DIFFER_SIN, KER_RTOL, KINK_RATIO, LOCAL_FRAC, PCA_THRESHOLD, SAME_SIN, combine_radii,
                       local_probe, segment_kink, verdict_at_radius)
from .retraction import FLOOR_ULPS, RES_RTOL, RETRACT_MAX_ITER, XTOL, Probe

RADII = (1e-4, 1e-3, 1e-2)  # × max(1, ‖θ*‖): rank probes and walk radii
POINTS_PER_RADIUS = 2  # rank probes per radius
SMALL_N = 16
POINTS_SMALL = 24  # walk points per radius when N ≤ SMALL_N
POINTS_LARGE = 8  # … and when N > SMALL_N (each costs a local probe of up to max_directions retractions)
MAX_DIRECTIONS = 32  # local probe: candidate directions probed at each point (all of them when fewer)
RETURN_FRAC = 1e-3  # a point within RETURN_FRAC · ρ of θ* came back to θ*
CLAIM1_BASE = 1e-2  # Claim 1 steps s = CLAIM1_BASE · max(1, ‖θ*‖) · 2^-j, j = 1..8
CLAIM1_DIRECTIONS = 3
CLAIM1_STEPS = tuple(2.0 ** -j for j in range(1, 9))  # × h₁
CLAIM1_TOLERANCE = 0.1  # exponents within 0.1 of 2 (null) and 1 (row space)


@dataclass
class LevelSetResult:
    locally_constant_rank: bool
    rank_at_theta: int
    rank_probes: list[dict[str, Any]]
    estimated_dim: int | None
    estimated_dim_method: str
    manifold: bool | None
    manifold_why: str
    radius_dependent: bool
    by_radius: list[dict[str, Any]]
    kernel_dim: int
    generic_dim: int | None
    n_params: int
    n_outputs: int
    walk: dict[str, Any]
    claim1: dict[str, Any]
    rules: dict[str, Any] = field(default_factory=dict)
    meaning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "locally_constant_rank": self.locally_constant_rank,
            "rank_at_theta": self.rank_at_theta,
            "rank_probes": self.rank_probes,
            "estimated_dim": self.estimated_dim,
            "estimated_dim_method": self.estimated_dim_method,
            "manifold": self.manifold,
            "manifold_why": self.manifold_why,
            "radius_dependent": self.radius_dependent,
            "by_radius": self.by_radius,
            "kernel_dim": self.kernel_dim,
            "generic_dim": self.generic_dim,
            "n_params": self.n_params,
            "n_outputs": self.n_outputs,
            "walk": self.walk,
            "claim1": self.claim1,
            "rules": self.rules,
            "meaning": list(self.meaning),
        }


def _slope(s: np.ndarray, v: np.ndarray, floor: float) -> float | None:
    keep = v > floor
    if keep.sum() < 3:
        return None
    ls, lv = np.log(s[keep]), np.log(v[keep])
    return float(np.polyfit(ls, lv, 1)[0])


def _one_blas_thread():
    """numpy's BLAS on one thread while the probe runs: its matrices are small (kd × N SVDs, thousands of
    them), and a multi-threaded BLAS on a busy machine made each one 100× slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def probe_level_set(model, layout, x: torch.Tensor, *, transform=None, rtol: float = 0.0, seed: int = 0,
                    G: torch.Tensor | None = None, cancel: CancelToken | None = None,
                    max_directions: int = MAX_DIRECTIONS, points: int | None = None,
                    radii: tuple[float, ...] = RADII, emit=None) -> LevelSetResult:
    """The level-set probe at the model's current parameters θ* (see the module docstring)."""
    with _one_blas_thread():
        return _probe(model, layout, x, transform=transform, rtol=rtol, seed=seed, G=G, cancel=cancel,
                      max_directions=max_directions, points=points, radii=radii, emit=emit)


def _probe(model, layout, x, *, transform, rtol, seed, G, cancel, max_directions, points, radii,
           emit) -> LevelSetResult:
    emit = emit or (lambda e: None)
    t_start = time.perf_counter()
    pr = Probe(model, layout, x, transform, rtol, cancel)
    theta0_t = flat_params(model).to(torch.float64)
    theta0 = theta0_t.detach().cpu().numpy().astype(np.float64)
    n = theta0.size
    gen = torch.Generator(device="cpu").manual_seed(seed + 4242)
    rng = np.random.default_rng(seed + 4242)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(theta0_t.device)

    m = points if points is not None else (POINTS_SMALL if n <= SMALL_N else POINTS_LARGE)
    meter = progress.of(cancel)
    meter.expect(_n_steps(n, 0, len(radii), m) + CLAIM1_DIRECTIONS, "probes")  # at most this many until r is known
    with meter.step():
        if G is None:
            G = pr.G(theta0_t)
        kd = G.shape[1]
        r = spectrum_mod.spectrum_of(G, rtol=rtol, cancel=pr.cancel).rank
    K = n - r
    meter.expect(_n_steps(n, r, len(radii), m), "probes")
    generic = n - kd if n >= kd else None
    F0 = pr.F(theta0)
    J0 = G.T.detach().to("cpu", torch.float64).numpy()
    scale = max(1.0, float(np.linalg.norm(theta0)))
    probes, constant = _rank_constancy(pr, theta0_t, r, radii, scale, randn)
    by_radius, walk_points = [], []
    for rho_rel in (radii if K > 0 else ()):
        entry, pts = _walk_at_radius(pr, theta0, F0, J0, rho_rel * scale, m, max_directions, rng)
        by_radius.append(entry)
        walk_points.extend(pts)
    dim, man, dependent, man_why, method = _answer(by_radius, K)
    walk = _walk_record(pr, by_radius, walk_points, radii, m, max_directions)
    claim1 = _claim1(pr, G, theta0_t, F0, r, K, scale, randn)
    meaning = _meaning(r, K, generic, constant, dependent, dim, man, man_why)
    for text in meaning[1:]:
        emit(Note(text))
    walk["seconds"] = time.perf_counter() - t_start
    return LevelSetResult(
        locally_constant_rank=bool(constant), rank_at_theta=r, rank_probes=probes, estimated_dim=dim,
        estimated_dim_method=method, manifold=man, manifold_why=man_why, radius_dependent=dependent,
        by_radius=by_radius, kernel_dim=K, generic_dim=generic, n_params=n, n_outputs=kd, walk=walk,
        claim1=claim1, rules=_rules(), meaning=meaning,
    )


def _n_steps(n: int, r: int, n_radii: int, m: int) -> int:
    """The probe's progress steps: G's rank, the rank probes, the walks (when K = n − r > 0), Claim 1's directions."""
    K = n - r
    return 1 + n_radii * POINTS_PER_RADIUS + (n_radii * m if K > 0 else 0) + min(K, CLAIM1_DIRECTIONS) \
        + (CLAIM1_DIRECTIONS if r > 0 else 0)


def _rank_constancy(pr: Probe, theta0_t: torch.Tensor, r: int, radii: tuple[float, ...], scale: float,
                    randn) -> tuple[list[dict[str, Any]], bool]:
    """(a): rank(G) at POINTS_PER_RADIUS random points per radius, and whether every one equals r."""
    n = theta0_t.numel()
    probes = []
    for rho_rel in radii:
        rho = rho_rel * scale
        ranks = []
        for _ in range(POINTS_PER_RADIUS):
            pr.cancel.check()
            u = randn(n)
            u = u / torch.linalg.norm(u)
            with progress.of(pr.cancel).step():
                ranks.append(pr.rank(theta0_t + rho * u)[0])
        probes.append({"radius": rho, "ranks": ranks})
    return probes, all(rk == r for p in probes for rk in p["ranks"])


def _walk_at_radius(pr: Probe, theta0: np.ndarray, F0: np.ndarray, J0: np.ndarray, rho: float, m: int,
                    max_directions: int, rng: np.random.Generator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(b) at one radius: m retractions from θ* + ρu, a local probe and a kink check around each point
    that did not come back, and the verdict at this radius."""
    n = theta0.size
    pts, locs, disps = [], [], []
    for _ in range(m):
        pr.cancel.check()
        u = rng.standard_normal(n)
        u /= np.linalg.norm(u)
        with progress.of(pr.cancel).step():  # the retraction and, where it did not come back, the local probe
            end, info = pr.retract(theta0 + rho * u, F0, rho)
            s = float(np.linalg.norm(end - theta0))
            info.update(radius=rho, distance=s / rho, returned=bool(info["converged"] and s <= RETURN_FRAC * rho))
            if info["converged"] and not info["returned"]:
                lo = local_probe(pr, theta0, end, F0, s, max_directions, rng)
                locs.append(lo)
                disps.append(end - theta0)
                info["local"] = lo
        pts.append(info)
    norms = [p["jacobian_norm_start"] for p in pts if p.get("jacobian_norm_start") is not None]
    j_scale = float(np.median(norms)) if norms else 0.0
    for lo, d in zip(locs, disps):
        lo["kink"] = segment_kink(pr, theta0, theta0 + d, J0, lo.get("_J"), j_scale)
        lo["smooth"] = bool(lo["kink"] <= KINK_RATIO)
    for p in pts:
        if "local" in p:
            p["local"] = {k: v for k, v in p["local"].items() if not k.startswith("_")}
    return verdict_at_radius(rho, pts, locs, disps, m), pts


def _answer(by_radius: list[dict[str, Any]], K: int) -> tuple[int | None, bool | None, bool, str, str]:
    """(c): dim, manifold, radius_dependent, why, method."""
    if K > 0:
        return combine_radii(by_radius)
    # rank(G) = N: F is an immersion at θ*, hence locally injective, and the level set is locally {θ*}
    # (a theorem, not a measurement; no walk is needed, and none would resolve a weak direction of J
    # below F's round-off).
    why = ("rank(G) = N: F is an immersion at θ*, so it is injective near θ* and the level set is "
           "locally the single point θ* (no walk needed)")
    return 0, True, False, why, why


def _walk_record(pr: Probe, by_radius: list[dict[str, Any]], walk_points: list[dict[str, Any]],
                 radii: tuple[float, ...], m: int, max_directions: int) -> dict[str, Any]:
    """The report's `walk`: the radii, the rules in words, the evaluation counts and every point."""
    return {
        "radii": [e["radius"] for e in by_radius],
        "radius_rule": f"ρ ∈ {', '.join(f'{v:g}' for v in radii)} × max(1, ‖θ*‖)",
        "points_per_radius": m,
        "directions": len(walk_points),
        "converged": sum(1 for p in walk_points if p["converged"]),
        "retraction": (f"Gauss-Newton minimum-norm steps with a line search over the step length (1, then 2, 3, "
                       f"4, 6, … or 1/2, 1/4, …); converged when the next step ≤ {XTOL:g} · L and the residual ≤ "
                       f"max({RES_RTOL:g} · ‖F(start) − F(θ*)‖, F's round-off floor), L = the step that started it "
                       f"(ρ, or ε locally); at most {RETRACT_MAX_ITER} iterations"),
        "local_probe": (f"around each retracted point p: steps ε = {LOCAL_FRAC:g} · ‖p − θ*‖ along an orthonormal "
                        f"basis of the directions J(p) maps to ≤ {KER_RTOL:g} · σ₁ (at most {max_directions}, else "
                        f"a random subset and the retention estimate), retracted; a direction counts as tangent "
                        f"when the retracted displacements keep more than {PCA_THRESHOLD} of ε along it"),
        "returned_rule": f"a point within {RETURN_FRAC:g} · ρ of θ* came back to θ*",
        "evaluations": {"F": pr.n_F, "J": pr.n_J},
        "jacobian_route": pr._jac_route,
        "seconds": None,
        "points": walk_points,
    }


def _claim1(pr: Probe, G: torch.Tensor, theta0_t: torch.Tensor, F0: np.ndarray, r: int, K: int, scale: float,
            randn) -> dict[str, Any]:
    """(d): ‖F(θ* + s v) − F(θ*)‖ against s along null and row-space directions, and the fitted exponents."""
    n, kd = G.shape
    if r > 0:
        U = torch.linalg.svd(G, full_matrices=False)[0][:, :r]
    else:
        U = torch.zeros((n, 0), dtype=torch.float64, device=theta0_t.device)
    Mc = min(K, CLAIM1_DIRECTIONS)
    steps = np.array([CLAIM1_BASE * scale * c for c in CLAIM1_STEPS])
    floor = 1e3 * EPS * max(1.0, float(np.linalg.norm(F0)))

    def curve(v: torch.Tensor) -> np.ndarray:
        return np.array([float(np.linalg.norm(pr.F(theta0_t + s * v) - F0)) for s in steps])

    null_exp, row_exp, null_curves, row_curves = [], [], [], []
    for _ in range(Mc):
        pr.cancel.check()
        v = randn(n)
        v = v - U @ (U.T @ v)
        v = v - U @ (U.T @ v)
        v = v / torch.linalg.norm(v)
        with progress.of(pr.cancel).step():
            c = curve(v)
        null_curves.append(c.tolist())
        null_exp.append(_slope(steps, c, floor))
    for _ in range(CLAIM1_DIRECTIONS if r > 0 else 0):
        pr.cancel.check()
        v = G @ randn(kd)
        v = v / torch.linalg.norm(v)
        with progress.of(pr.cancel).step():
            c = curve(v)
        row_curves.append(c.tolist())
        row_exp.append(_slope(steps, c, floor))
    ne, re_ = _median(null_exp), _median(row_exp)
    holds = None
    if ne is not None or re_ is not None:
        holds = ((ne is None or abs(ne - 2) <= CLAIM1_TOLERANCE) and (re_ is None or abs(re_ - 1) <= CLAIM1_TOLERANCE))
    return {
        "null_exponent": ne, "row_exponent": re_, "null_exponents": null_exp, "row_exponents": row_exp,
        "steps": steps.tolist(), "null_changes": null_curves, "row_changes": row_curves,
        "holds": holds, "tolerance": CLAIM1_TOLERANCE,
        "rule": ("slope of log ‖F(θ* + s v) − F(θ*)‖ against log s, median over directions; Claim 1 expects 2 "
                 "along ker J and 1 along its row space"),
        "why": "; ".join(_claim1_why(ne, re_, Mc, r, floor)),
    }


def _median(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.median(vals)) if vals else None


def _claim1_why(ne: float | None, re_: float | None, Mc: int, r: int, floor: float) -> list[str]:
    why = []
    if ne is None:
        why.append("the outputs do not change measurably along the null directions tried (above the round-off "
                   f"floor {floor:.2g})" if Mc else "the kernel is empty")
    if ne is not None and ne < 2 - CLAIM1_TOLERANCE:
        why.append(f"along null directions the outputs change faster than s² (exponent {ne:.2f}): F is not smooth "
                   "at this scale along them (a ReLU-type kink crossed by the step) or the rank is fragile here")
    if ne is not None and ne > 2 + CLAIM1_TOLERANCE:
        why.append(f"along null directions the outputs change slower than s² (exponent {ne:.2f}): the second-order "
                   "term is small along them at this scale and higher orders show")
    if re_ is not None and abs(re_ - 1) > CLAIM1_TOLERANCE:
        why.append(f"along the row space the exponent is {re_:.2f}, not 1: the first-order change is tiny next to "
                   "the second at these step sizes (small singular values of G)")
    if re_ is None:
        why.append("G = 0: there is no row-space direction" if r == 0 else "no row-space change above round-off")
    return why


def _meaning(r: int, K: int, generic: int | None, constant: bool, dependent: bool, dim: int | None,
             man: bool | None, man_why: str) -> list[str]:
    """The answers in sentences (all but the first are also emitted as notes)."""
    meaning = [f"rank(G) = {r}; kernel dimension N − r = {K} (an upper bound on the dimension of any smooth "
               "piece of the level set)"
               + (f"; generic dimension N − kd = {generic}." if generic is not None else
                  "; N < kd, so F is never a submersion and r is the local dimension of the image.")]
    if constant:
        meaning.append("The rank is locally constant (every probe at every radius agrees), so by the constant-rank "
                       f"theorem the level set is a manifold of dimension N − r = {K} near θ*.")
    else:
        meaning.append("The rank is NOT locally constant (nearby points have a higher rank): N − r is only an upper "
                       "bound here and the level set can be smaller, or a union of branches (seed 003's examples).")
    if dependent:
        meaning.append("The level set's dimension or shape DEPENDS ON THE PROBE RADIUS, so no single answer is "
                       "given" + man_why.removeprefix("the answer depends on the probe radius") + ".")
        return meaning
    if dim is None:
        meaning.append("The probe could not measure the level set's dimension: " + man_why + ".")
    else:
        rel = ("equals" if dim == K else ("is below" if dim < K else "exceeds")) + f" the kernel bound {K}"
        meaning.append(f"Measured level-set dimension {dim} near θ* ({rel}).")
    if man is True:
        meaning.append("The level set is a manifold near θ*" + (" (the isolated point θ*)" if dim == 0 else "")
                       + ": " + man_why + ".")
    elif man is False:
        meaning.append("The level set is NOT a manifold near θ*: " + man_why + ".")
    elif dim is not None:
        meaning.append("Whether the level set is a manifold near θ* cannot be told: " + man_why + ".")
    return meaning


def _rules() -> dict[str, Any]:
    return {
        "same_sin": SAME_SIN, "differ_sin": DIFFER_SIN, "pca_threshold": PCA_THRESHOLD,
        "return_frac": RETURN_FRAC, "local_frac": LOCAL_FRAC, "ker_rtol": KER_RTOL, "xtol": XTOL,
        "res_rtol": RES_RTOL, "floor_ulps": FLOOR_ULPS,
        "manifold": (f"true when every branch has the same dimension, their tangent spaces agree (largest principal "
                     f"angle sin ≤ {SAME_SIN}) and the points lie within sin ≤ {SAME_SIN} of one subspace through "
                     f"θ*; false when branches of different dimensions are seen or tangent spaces / the points' "
                     f"subspace differ with sin ≥ {DIFFER_SIN}; null otherwise, with the reason"),
    }


def analyse(ctx, report=None) -> LevelSetResult:
    """The level-set stage (analysis.levelset = true)."""
    return probe_level_set(ctx.model, ctx.layout, ctx.x, transform=ctx.transform, rtol=ctx.preset.analysis.rtol,
                           seed=ctx.preset.seed, G=ctx.G, cancel=ctx.cancel, emit=ctx.emit)
