"""The level-set probe's retraction onto Z = {θ : F(θ) = F(θ*)} (engine/analyses/levelset.py, rule (b) 2):
`Probe` evaluates F and J at any θ on a private copy of the model and retracts a point onto a target
value of F by Gauss-Newton minimum-norm steps with a line search; `Jac` is J's thin SVD and the cut its
pseudo-inverse uses. The stopping rule, all relative, is in levelset's module docstring."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..cancel import CancelToken
from ..numerics import spectrum as spectrum_mod
from ..numerics.tolerances import EPS
from ..problem.models import set_flat_params
from ..routes.jacobian import compute_G, outputs_at

XTOL = 1e-9  # converged: next Gauss-Newton step ≤ XTOL · L
RES_RTOL = 1e-6  # … and residual ≤ RES_RTOL · S (guards against a stationary point of ‖F − F(θ*)‖ off Z)
LOOSE = 1e-4  # at round-off: the last step ≤ LOOSE · L
FLOOR_ULPS = 100.0  # F's round-off floor in units of ε_mach · (‖F(θ*)‖ + ‖F(θ)‖)
RETRACT_MAX_ITER = 80
TRUST = 1.0  # each step is at most TRUST · L long (Levenberg-Marquardt inside the trust region)
MAX_TRAVEL = 4.0  # a retraction that ends more than MAX_TRAVEL · L from its start has not converged
CHORD_KEEP = 0.5  # reuse J while a step cuts the residual at least by this factor
LINE_UP = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
LINE_DOWN = tuple(2.0 ** -j for j in range(1, 21))


@dataclass
class Jac:
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


class Probe:
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

    def jac(self, theta) -> Jac:
        J = self.J(theta)
        if J.size == 0:
            return Jac(np.zeros((J.shape[0], 0)), np.zeros(0), np.zeros((0, J.shape[1])), 0.0)
        U, s, Vt = np.linalg.svd(J, full_matrices=False)
        tol = spectrum_mod.default_tolerance(float(s[0]) if len(s) else 0.0, J.shape, self.rtol)[0]
        return Jac(U, s, Vt, tol, J)

    def retract(self, theta: np.ndarray, target: np.ndarray, length: float, jac: Jac | None = None,
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

    def _iterate(self, theta: np.ndarray, r: np.ndarray, rn: float, fact: Jac, fresh: bool, target: np.ndarray,
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


def _roundoff_floor(res: np.ndarray, th: np.ndarray, fac: Jac, target: np.ndarray, tnorm: float) -> float:
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
