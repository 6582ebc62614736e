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
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..numerics import spectrum as spectrum_mod
from ..numerics.tolerances import EPS
from ..cancel import CancelToken
from ...schema.events import Note
from ..routes.jacobian import compute_G, outputs_at
from ..problem.models import flat_params, set_flat_params

RADII = (1e-4, 1e-3, 1e-2)  # × max(1, ‖θ*‖): rank probes and walk radii
POINTS_PER_RADIUS = 2  # rank probes per radius
SMALL_N = 16
POINTS_SMALL = 24  # walk points per radius when N ≤ SMALL_N
POINTS_LARGE = 8  # … and when N > SMALL_N (each costs a local probe of up to max_directions retractions)
MAX_DIRECTIONS = 32  # local probe: candidate directions probed at each point (all of them when fewer)
XTOL = 1e-9  # converged: next Gauss-Newton step ≤ XTOL · L
RES_RTOL = 1e-6  # … and residual ≤ RES_RTOL · S (guards against a stationary point of ‖F − F(θ*)‖ off Z)
LOOSE = 1e-4  # at round-off: the last step ≤ LOOSE · L
FLOOR_ULPS = 100.0  # F's round-off floor in units of ε_mach · (‖F(θ*)‖ + ‖F(θ)‖)
RETRACT_MAX_ITER = 80
TRUST = 1.0  # each step is at most TRUST · L long (Levenberg-Marquardt inside the trust region)
MAX_TRAVEL = 4.0  # a retraction that ends more than MAX_TRAVEL · L from its start has not converged
CHORD_KEEP = 0.5  # reuse J while a step cuts the residual at least by this factor
RETURN_FRAC = 1e-3  # a point within RETURN_FRAC · ρ of θ* came back to θ*
LOCAL_FRAC = 1e-2  # local probe step ε = LOCAL_FRAC · ‖p − θ*‖
KER_RTOL = 1e-6  # candidate tangent directions at p: σ_j(J(p)) ≤ KER_RTOL · σ₁(J(p)) (or the rank rule)
PCA_THRESHOLD = 0.5  # a direction of D/ε counts as tangent when its singular value exceeds this
SAME_SIN = 0.2  # tangent spaces agree when sin(largest principal angle) ≤ 0.2 (11.5°)
DIFFER_SIN = 0.5  # … and clearly differ when it is ≥ 0.5 (30°); in between: cannot tell
KINK_RATIO = 0.5  # F is not smooth between θ* and p when ‖Δ⁴J‖ along the segment > 0.5 · its change
KINK_FLOOR = 1e-3  # … a change of J below 1e-3 · the typical ‖J‖ at this radius does not count
MIN_CONVERGED_FRAC = 0.5  # fewer converged retractions than this fraction of the points: cannot tell
LINE_UP = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
LINE_DOWN = tuple(2.0 ** -j for j in range(1, 21))
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


@dataclass
class _Jac:
    """J = U diag(s) Vt at one point (thin SVD, numpy float64) and the cut the pseudo-inverse uses."""

    U: np.ndarray
    s: np.ndarray
    Vt: np.ndarray
    cut: float
    J: np.ndarray | None = None

    def unexplained(self, r: np.ndarray) -> float:
        """‖r − P r‖, P the projection onto the range J's pseudo-inverse uses."""
        keep = self.s > self.cut
        Uk = self.U[:, keep]
        return float(np.linalg.norm(r - Uk @ (Uk.T @ r)))

    def step(self, r: np.ndarray, trust: float = math.inf) -> np.ndarray:
        """The minimum-norm Gauss-Newton step −J⁺r; when it is longer than `trust`, the Levenberg-Marquardt
        step −V diag(σ/(σ² + λ)) Uᵀr with λ chosen so that its length is `trust` (a trust region)."""
        keep = self.s > self.cut
        if not keep.any():
            return np.zeros(self.Vt.shape[1])
        s = self.s[keep]
        c = self.U[:, keep].T @ r
        coef = c / s
        if float(np.linalg.norm(coef)) > trust:
            lo, hi = 0.0, float(s[0]) ** 2 * max(1.0, float(np.linalg.norm(c)) / (trust * float(s[0])))
            while float(np.linalg.norm(c * s / (s * s + hi))) > trust:
                hi *= 4.0
            for _ in range(60):
                mid = 0.5 * (lo + hi) if lo == 0.0 else math.sqrt(lo * hi)
                if lo == 0.0 and mid < 1e-30 * hi:
                    mid = 0.5 * hi
                if float(np.linalg.norm(c * s / (s * s + mid))) > trust:
                    lo = mid
                else:
                    hi = mid
                if lo > 0.0 and hi / lo < 1.0 + 1e-6:
                    break
            coef = c * s / (s * s + hi)
        return -(self.Vt[keep].T @ coef)


class _Probe:
    """F and J at arbitrary θ for one model (a private copy whose parameters are overwritten)."""

    def __init__(self, model, layout, x, transform, rtol: float, cancel: CancelToken | None):
        self.model = copy.deepcopy(model)
        self.layout = layout
        self.x = x
        self.transform = transform
        self.rtol = rtol
        self.cancel = cancel or CancelToken()
        p0 = next(iter(self.model.parameters()), None)
        self.device = p0.device if p0 is not None else x.device
        self.n_F = 0
        self.n_J = 0
        self._jac_route: str | None = None

    def _t(self, theta) -> torch.Tensor:
        if isinstance(theta, torch.Tensor):
            return theta.to(device=self.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(theta, dtype=np.float64), device=self.device)

    def F_torch(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return outputs_at(self.model, self.layout, self._t(theta), self.x, self.transform).reshape(-1)

    def F(self, theta) -> np.ndarray:
        self.n_F += 1
        return self.F_torch(theta).detach().to("cpu", torch.float64).numpy()

    def G(self, theta: torch.Tensor) -> torch.Tensor:
        set_flat_params(self.model, self._t(theta))
        return compute_G(self.model, self.layout, self.x, transform=self.transform, cancel=self.cancel)[0]

    def rank(self, theta: torch.Tensor) -> tuple[int, float]:
        G = self.G(theta)
        spec = spectrum_mod.spectrum_of(G, rtol=self.rtol, cancel=self.cancel)
        sv = spec.singular_values
        return spec.rank, float(sv[0]) if len(sv) else 0.0

    def _J_jacrev(self, theta: torch.Tensor) -> torch.Tensor:
        def f(t):
            return outputs_at(self.model, self.layout, t, self.x, self.transform).reshape(-1)

        return torch.func.jacrev(f)(theta)

    def J(self, theta) -> np.ndarray:
        """J(θ) (kd × N, numpy float64), by whichever of jacrev and compute_G was faster at θ*."""
        self.cancel.check()
        self.n_J += 1
        t = self._t(theta)
        if self._jac_route is None:
            self._jac_route = self._choose_route(t)
        if self._jac_route == "jacrev":
            J = self._J_jacrev(t)
        else:
            J = self.G(t).T
        return J.detach().to("cpu", torch.float64).numpy()

    def _choose_route(self, t: torch.Tensor) -> str:
        def timed(fn):  # the second of two calls (the first pays for tracing and caches)
            fn()
            t0 = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t0

        G, t_g = timed(lambda: self.G(t))
        try:
            Jr, t_r = timed(lambda: self._J_jacrev(t))
        except RuntimeError:  # jacrev cannot trace this model (torch says so by RuntimeError or its subclass
            return "compute_G"  # NotImplementedError): compute_G, which just succeeded, is the route
        scale = float(torch.linalg.norm(G)) or 1.0
        if Jr.shape != G.T.shape or float(torch.linalg.norm(Jr - G.T)) > 1e-8 * scale:
            return "compute_G"
        return "jacrev" if t_r <= t_g else "compute_G"

    def jac(self, theta) -> _Jac:
        J = self.J(theta)
        if J.size == 0:
            return _Jac(np.zeros((J.shape[0], 0)), np.zeros(0), np.zeros((0, J.shape[1])), 0.0)
        U, s, Vt = np.linalg.svd(J, full_matrices=False)
        tol = spectrum_mod.default_tolerance(float(s[0]) if len(s) else 0.0, J.shape, self.rtol)[0]
        return _Jac(U, s, Vt, tol, J)

    def retract(self, theta: np.ndarray, target: np.ndarray, length: float, jac: _Jac | None = None,
                max_iter: int = RETRACT_MAX_ITER) -> tuple[np.ndarray, dict[str, Any]]:
        """Gauss-Newton with a line search onto F(θ) = target; the stopping rule is in the module docstring.
        `length` is the step that started the retraction (the scale the point must be accurate to);
        `jac` a Jacobian to start from (chord steps), recomputed at the point whenever it is needed."""
        start = theta
        r = self.F(theta) - target
        rn = float(np.linalg.norm(r))
        info: dict[str, Any] = {"residual_before": rn, "iterations": 0}
        if rn == 0.0:
            info.update(residual_after=0.0, converged=True, stop="exact: F(θ) = F(θ*) already")
            return theta, info
        fact = self.jac(theta) if jac is None else jac
        info["jacobian_norm_start"] = float(np.linalg.norm(fact.J)) if fact.J is not None else None
        theta, rn, it, converged, stop, last_step = self._iterate(theta, r, rn, fact, jac is None, target, length,
                                                                  max_iter)
        if converged and float(np.linalg.norm(theta - start)) > MAX_TRAVEL * length:
            converged, stop = False, f"ended more than {MAX_TRAVEL:g} × its starting step away (left the neighbourhood)"
        info.update(residual_after=rn, iterations=it, converged=converged, stop=stop, last_step=last_step)
        return theta, info

    def _iterate(self, theta: np.ndarray, r: np.ndarray, rn: float, fact: _Jac, fresh: bool, target: np.ndarray,
                 length: float, max_iter: int) -> tuple[np.ndarray, float, int, bool, str, float]:
        """The retraction's steps from θ (residual r, ‖r‖ = rn): θ, ‖r‖, iterations, converged, why it
        stopped, and the last step's length."""
        tnorm = float(np.linalg.norm(target))
        S = rn
        stop, converged, last_step = "", False, float("inf")
        it = 0
        while it < max_iter:
            self.cancel.check()
            it += 1
            delta = fact.step(r, TRUST * length)
            dn = float(np.linalg.norm(delta))
            floor = _roundoff_floor(r, theta, fact, target, tnorm)
            if dn <= XTOL * length:
                if not fresh:
                    fact, fresh = self.jac(theta), True
                    continue
                # the part of the residual no first-order step removes must be negligible (else θ is a
                # stationary point of ‖F − F(θ*)‖ off the level set)
                if fact.unexplained(r) <= max(RES_RTOL * S, floor):
                    converged, stop = True, "step"
                    last_step = dn
                    break
            found = self._line_search(theta, r, delta, target, rn, fresh, TRUST * length)
            if found is None:
                if not fresh:
                    fact, fresh = self.jac(theta), True
                    continue
                converged, stop = _stalled(rn, floor, dn, length)
                last_step = dn
                break
            theta_n, r_n, rn_n, alpha = found
            last_step = alpha * dn
            ratio = rn_n / rn
            theta, r, rn = theta_n, r_n, rn_n
            if rn == 0.0:
                converged, stop = True, "exact: the residual is 0"
                break
            if ratio > CHORD_KEEP:
                fact, fresh = self.jac(theta), True
            else:
                fresh = False
        else:
            stop = f"{max_iter} iterations"
        return theta, rn, it, converged, stop, last_step

    def _line_search(self, theta, r0, delta, target, rn, fresh, trust):
        """Step length along δ (module docstring, rule 2). Expanding stops at the first step length where
        F − F(θ*) turns round (rᵀr_prev < 0: the line crossed the level set); the crossing is then
        located by the secant between the last two step lengths, so a retraction never jumps over a
        nearer piece of the level set to a farther one where |F − F(θ*)| happens to be smaller."""
        def at(a):
            th = theta + a * delta
            rr = self.F(th) - target
            return th, rr, float(np.linalg.norm(rr))

        def secant(a0, ra, a1, rb):
            d = rb - ra
            dd = float(d @ d)
            tau = min(1.0, max(0.0, -float(ra @ d) / dd)) if dd > 0 else 0.5
            return at(a0 + tau * (a1 - a0)) + (a0 + tau * (a1 - a0),)

        th1, r1, n1 = at(1.0)
        best = (th1, r1, n1, 1.0)
        if n1 <= 0.1 * rn:
            return best
        if n1 < rn:
            if float(r1 @ r0) < 0.0:
                cand = secant(0.0, r0, 1.0, r1)
                return cand if cand[2] < n1 else best
            dn = float(np.linalg.norm(delta))
            prev_a, prev_r = 1.0, r1
            for a in LINE_UP:
                if a * dn > trust:
                    break
                th, rr, nn = at(a)
                if float(rr @ prev_r) < 0.0:
                    for cand in ((th, rr, nn, a), secant(prev_a, prev_r, a, rr)):
                        if cand[2] < best[2]:
                            best = cand
                    break
                if nn < best[2]:
                    best = (th, rr, nn, a)
                    prev_a, prev_r = a, rr
                else:
                    break
            return best
        if not fresh:
            return None
        for a in LINE_DOWN:
            th, rr, nn = at(a)
            if nn < rn:
                return th, rr, nn, a
        return None


def _roundoff_floor(res: np.ndarray, th: np.ndarray, fac: _Jac, target: np.ndarray, tnorm: float) -> float:
    """F's round-off at θ: its size, and the size of the terms that cancel in it (‖J‖·‖θ‖, e.g. a² − b²)."""
    s1 = float(fac.s[0]) if len(fac.s) else 0.0
    return FLOOR_ULPS * EPS * (tnorm + float(np.linalg.norm(res + target)) + s1 * float(np.linalg.norm(th)))


def _stalled(rn: float, floor: float, dn: float, length: float) -> tuple[bool, str]:
    """No step length decreases the residual (with a fresh J): converged at round-off, or why not."""
    if rn <= floor and dn <= LOOSE * length:
        return True, "round-off"
    if dn == 0.0:
        return False, "no Gauss-Newton direction (J = 0 here, or the residual is orthogonal to its range)"
    return False, ("no step length decreases the residual" + (" (F's round-off floor reached)" if rn <= floor else ""))


def _slope(s: np.ndarray, v: np.ndarray, floor: float) -> float | None:
    keep = v > floor
    if keep.sum() < 3:
        return None
    ls, lv = np.log(s[keep]), np.log(v[keep])
    return float(np.polyfit(ls, lv, 1)[0])


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


def _local_probe(pr: _Probe, theta0: np.ndarray, p: np.ndarray, F0: np.ndarray, s: float, max_dirs: int,
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


def _segment_kink(pr: _Probe, theta0: np.ndarray, p: np.ndarray, J0: np.ndarray, Jp: np.ndarray | None,
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


def _verdict_at_radius(rho: float, points: list[dict[str, Any]], locals_: list[dict[str, Any]],
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


def _combine(by_radius: list[dict[str, Any]]) -> tuple[int | None, bool | None, bool, str, str]:
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
    pr = _Probe(model, layout, x, transform, rtol, cancel)
    theta0_t = flat_params(model).to(torch.float64)
    theta0 = theta0_t.detach().cpu().numpy().astype(np.float64)
    n = theta0.size
    gen = torch.Generator(device="cpu").manual_seed(seed + 4242)
    rng = np.random.default_rng(seed + 4242)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(theta0_t.device)

    if G is None:
        G = pr.G(theta0_t)
    kd = G.shape[1]
    r = spectrum_mod.spectrum_of(G, rtol=rtol, cancel=pr.cancel).rank
    K = n - r
    generic = n - kd if n >= kd else None
    F0 = pr.F(theta0)
    J0 = G.T.detach().to("cpu", torch.float64).numpy()
    scale = max(1.0, float(np.linalg.norm(theta0)))
    probes, constant = _rank_constancy(pr, theta0_t, r, radii, scale, randn)
    m = points if points is not None else (POINTS_SMALL if n <= SMALL_N else POINTS_LARGE)
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


def _rank_constancy(pr: _Probe, theta0_t: torch.Tensor, r: int, radii: tuple[float, ...], scale: float,
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
            ranks.append(pr.rank(theta0_t + rho * u)[0])
        probes.append({"radius": rho, "ranks": ranks})
    return probes, all(rk == r for p in probes for rk in p["ranks"])


def _walk_at_radius(pr: _Probe, theta0: np.ndarray, F0: np.ndarray, J0: np.ndarray, rho: float, m: int,
                    max_directions: int, rng: np.random.Generator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(b) at one radius: m retractions from θ* + ρu, a local probe and a kink check around each point
    that did not come back, and the verdict at this radius."""
    n = theta0.size
    pts, locs, disps = [], [], []
    for _ in range(m):
        pr.cancel.check()
        u = rng.standard_normal(n)
        u /= np.linalg.norm(u)
        end, info = pr.retract(theta0 + rho * u, F0, rho)
        s = float(np.linalg.norm(end - theta0))
        info.update(radius=rho, distance=s / rho, returned=bool(info["converged"] and s <= RETURN_FRAC * rho))
        if info["converged"] and not info["returned"]:
            lo = _local_probe(pr, theta0, end, F0, s, max_directions, rng)
            locs.append(lo)
            disps.append(end - theta0)
            info["local"] = lo
        pts.append(info)
    norms = [p["jacobian_norm_start"] for p in pts if p.get("jacobian_norm_start") is not None]
    j_scale = float(np.median(norms)) if norms else 0.0
    for lo, d in zip(locs, disps):
        lo["kink"] = _segment_kink(pr, theta0, theta0 + d, J0, lo.get("_J"), j_scale)
        lo["smooth"] = bool(lo["kink"] <= KINK_RATIO)
    for p in pts:
        if "local" in p:
            p["local"] = {k: v for k, v in p["local"].items() if not k.startswith("_")}
    return _verdict_at_radius(rho, pts, locs, disps, m), pts


def _answer(by_radius: list[dict[str, Any]], K: int) -> tuple[int | None, bool | None, bool, str, str]:
    """(c): dim, manifold, radius_dependent, why, method."""
    if K > 0:
        return _combine(by_radius)
    # rank(G) = N: F is an immersion at θ*, hence locally injective, and the level set is locally {θ*}
    # (a theorem, not a measurement; no walk is needed, and none would resolve a weak direction of J
    # below F's round-off).
    why = ("rank(G) = N: F is an immersion at θ*, so it is injective near θ* and the level set is "
           "locally the single point θ* (no walk needed)")
    return 0, True, False, why, why


def _walk_record(pr: _Probe, by_radius: list[dict[str, Any]], walk_points: list[dict[str, Any]],
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


def _claim1(pr: _Probe, G: torch.Tensor, theta0_t: torch.Tensor, F0: np.ndarray, r: int, K: int, scale: float,
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
        c = curve(v)
        null_curves.append(c.tolist())
        null_exp.append(_slope(steps, c, floor))
    for _ in range(CLAIM1_DIRECTIONS if r > 0 else 0):
        pr.cancel.check()
        v = G @ randn(kd)
        v = v / torch.linalg.norm(v)
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
