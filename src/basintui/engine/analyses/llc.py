"""The local learning coefficient λ̂ at θ by SGLD (issue 18 item 4): the estimator the
developmental-interpretability tools use (devinterp's `estimate_learning_coeff`).

    λ̂ = nβ · (E_w[Lₙ(w)] − Lₙ(θ)),   β = 1 / log n  (default; `beta` overrides it)

where Lₙ is the MEAN training loss over the n inputs and the expectation is over the localised, tempered
posterior ∝ exp(−nβ Lₙ(w) − γ/2 ‖w − θ‖²), sampled by SGLD started at θ:

    w ← w − (ε/2) (nβ ∇L_batch(w) + γ (w − θ)) + N(0, ε I)

`burnin` steps are dropped, then each of `draws` steps records the loss at w before its update (the
batch loss, as devinterp does; the full loss when `batch_size` is None, the default). Each chain gives
λ̂_c = nβ (mean of its draws − Lₙ(θ)); the estimate is their mean, `std` their spread (ddof = 1) and
`se` = std/√chains the standard error of the estimate.

Why the answer is scale-free: near a regular minimum Lₙ(θ + δ) ≈ Lₙ(θ) + ½ δᵀHδ, the posterior is
Gaussian with precision nβH + γI, and λ̂ → ½ Σᵢ nβhᵢ/(nβhᵢ + γ) = rank(H)/2 when γ ≪ nβhᵢ, whatever
the loss's units (mse without the ½ included). A direction the loss does not depend on adds nothing: a
linear model with a duplicated feature gives (N − 1)/2. Where Lₙ vanishes faster than quadratically the
coefficient is smaller (Lₙ = w⁴ gives ¼ per direction). Biases, both small at the defaults: γ pulls λ̂ low
(the factor nβhᵢ/(nβhᵢ + γ) per direction), and the Euler step pushes it high (a Gaussian direction of
stiffness c = nβh + γ has stationary variance 1/(c (1 − εc/4)) instead of 1/c).

Step size: `step=None` (the default) takes ε = AUTO_STEP / c_max, c_max = nβ·λ_max(∇²Lₙ(θ)) + γ from a
power iteration on Hessian-vector products, so the stiffest direction is biased by εc/4 = 1 %.

Parallel chains: the chains are one stacked (chains, N) float64 tensor advanced together; each step is
ONE vmapped (torch.func.vmap over chains) forward pass and ONE backward pass of the chains' summed loss
(the chains are independent, so that gives each chain its own gradient), so the work of all chains goes
into the same batched kernels, which torch spreads over its intra-op thread pool (the local pool). A process pool
would copy the model into each process and run C small passes instead of one batched one; on a few cores
the batched pass is the faster of the two. A model whose operators have no vmap rule, or one so small that
vmap's per-call overhead outweighs the batching (measured on the first step when `parallel="auto"`), runs
one pass per chain and step instead (`LLCResult.parallel == "loop"`); the numbers are the same either way.

API (stable; B1 wires it into the preset keys `[llc]`, the report's `llc.*`, the CLI and the app):

    LLCSettings(chains=4, draws=400, burnin=200, step=None, gamma=1.0, beta=None, batch_size=None, seed=0)
    model_loss(model, layout, x, y, loss_kind) -> LossFn
        LossFn(theta (N,), idx (b,) LongTensor | None) -> mean loss over those inputs (None: all), 0-dim
    estimate_llc(loss, theta, n, settings, *, cancel=None, progress=None, parallel="auto") -> LLCResult
        cancel: Callable[[], bool] (True: stop; the result holds the draws so far, cancelled=True)
        progress: Callable[[int, int], None], called as (steps done, burnin + draws) after every step
    settings_error(settings) -> str | None: what is wrong with the settings (key, value, what is allowed)
    meaning(result, rank_h=None) -> str: one sentence on λ̂ beside rank(H)/2 and N/2 at this θ

LLCResult fields: estimate, std, se, chain_estimates, traces ((chains, draws_done) float64 losses),
init_loss, n, n_params, beta, nbeta, step, step_auto, gamma, chains, draws, draws_done, burnin, batch_size,
curvature_top (nβ·λ_max(H), nan when not measured), diverged (chain indices), rhat, step_too_large,
rising, below_init, warnings (sentences), cancelled, parallel ("vmap" | "loop"), seconds.
A diverged chain (a non-finite loss, or nβ(L − Lₙ(θ)) above BLOWUP · (N/2 + 1)) is left out of the
estimate; when every chain diverged the estimate is nan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import vmap

LossFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]

AUTO_STEP = 0.04  # ε · c_max: the stiffest direction's Euler bias εc/4 is 1 %
POWER_ITERS = 30  # power iterations for λ_max(∇²Lₙ(θ))
BLOWUP = 50.0  # nβ(L − L₀) above BLOWUP · (N/2 + 1): the chain blew up (equilibrium mean ≤ N/2, χ²-like tail)
HIGH_REL = 0.1  # the estimate above (1 + HIGH_REL) · N/2 + SE_MULT · its standard error: step too large
SE_MULT = 4.0  # standard errors (across chains) before a rising trend, a high or a low estimate is called
RHAT_WARN = 1.1  # Gelman-Rubin R̂ above this: the chains disagree
GAMMA_WARN = 0.1  # γ at least this fraction of nβ·λ_max(H): the localisation dominates
CHOOSE_REPS = 5  # timed passes of each way (the median counts) before choosing vmap or a loop
BATCHES = 10  # batch means for a chain's own standard error


@dataclass(frozen=True)
class LLCSettings:
    chains: int = 4
    draws: int = 400
    burnin: int = 200
    step: float | None = None  # None: AUTO_STEP / (nβ·λ_max(H) + γ)
    gamma: float = 1.0
    beta: float | None = None  # None: 1 / log n
    batch_size: int | None = None  # None: full batch
    seed: int = 0


@dataclass(frozen=True, eq=False)
class LLCResult:
    estimate: float
    std: float
    se: float
    chain_estimates: tuple[float, ...]
    traces: np.ndarray  # (chains, draws_done): the loss at each draw
    init_loss: float
    n: int
    n_params: int
    beta: float
    nbeta: float
    step: float
    step_auto: bool
    gamma: float
    chains: int
    draws: int
    draws_done: int
    burnin: int
    batch_size: int | None
    curvature_top: float
    diverged: tuple[int, ...]
    rhat: float
    step_too_large: bool
    rising: bool
    below_init: bool
    warnings: tuple[str, ...]
    cancelled: bool
    parallel: str
    seconds: float
    settings: LLCSettings = field(default_factory=LLCSettings)


def settings_error(s: LLCSettings) -> str | None:
    """The first thing wrong with the settings, naming the key, the value and what is allowed (None: fine)."""
    ints = (("chains", s.chains, 1), ("draws", s.draws, 2), ("burnin", s.burnin, 0))
    for key, v, lo in ints:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            return f"llc.{key} = {v!r}: an integer ≥ {lo} is allowed"
    positive = (("step", s.step), ("beta", s.beta))
    for key, v in positive:
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            return f"llc.{key} = {v!r}: a positive finite number is allowed (or leave it out for the default)"
    if not (isinstance(s.gamma, (int, float)) and math.isfinite(s.gamma) and s.gamma >= 0):
        return f"llc.gamma = {s.gamma!r}: a finite number ≥ 0 is allowed"
    if s.batch_size is not None and (isinstance(s.batch_size, bool) or not isinstance(s.batch_size, int)
                                     or s.batch_size < 1):
        return f"llc.batch_size = {s.batch_size!r}: an integer ≥ 1 is allowed (or leave it out for the full batch)"
    return None


def model_loss(model, layout, x: torch.Tensor, y: torch.Tensor, loss_kind: str) -> LossFn:
    """Lₙ of a flat parameter vector: the mean of the engine's per-sample loss (problem/train.py) over the
    inputs `idx` (all of them when None). Pass a float64 copy of the model and float64 x (and y for mse/bce)."""
    from ..problem.train import per_sample_loss
    from ..routes.jacobian import outputs_at

    def loss(theta: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        return per_sample_loss(outputs_at(model, layout, theta, xb), yb, loss_kind).mean()

    return loss


def top_curvature(loss: LossFn, theta: torch.Tensor, iters: int = POWER_ITERS, seed: int = 0) -> float:
    """λ_max of ∇²Lₙ(θ) (largest in magnitude) by power iteration on Hessian-vector products (double backward)."""
    t = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss(t, None), t, create_graph=True)
    if not g.requires_grad:  # L is at most linear in θ: H = 0
        return 0.0
    gen = torch.Generator(device="cpu").manual_seed(seed + 7)
    v = torch.randn(theta.numel(), generator=gen, dtype=torch.float64).to(theta.device)
    v = v / torch.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(g, t, grad_outputs=v, retain_graph=True, allow_unused=True)
        if hv is None:
            return 0.0
        lam = float(torch.dot(v, hv))
        nrm = float(torch.linalg.norm(hv))
        if not math.isfinite(nrm) or nrm == 0.0:
            return lam if math.isfinite(lam) else float("nan")
        v = hv / nrm
    return lam


def estimate_llc(loss: LossFn, theta: torch.Tensor, n: int, settings: LLCSettings = LLCSettings(), *,
                 cancel: Callable[[], bool] | None = None,
                 progress: Callable[[int, int], None] | None = None, parallel: str = "auto") -> LLCResult:
    """λ̂ at θ (see the module docstring). `n` is the number of training inputs (the n of nβ and of β = 1/log n).
    `parallel`: "auto" (vmap, or one pass per chain when that is measured faster), "vmap" or "loop"."""
    if parallel not in ("auto", "vmap", "loop"):
        raise ValueError(f"parallel = {parallel!r}: 'auto', 'vmap' or 'loop' is allowed")
    err = settings_error(settings)
    if err:
        raise ValueError(err)
    if n < 2:
        raise ValueError(f"n = {n}: the learning coefficient needs at least 2 training inputs (β = 1/log n)")
    t0 = time.perf_counter()
    s = settings
    theta = theta.detach().to(torch.float64).reshape(-1)
    n_params = theta.numel()
    beta = float(s.beta) if s.beta is not None else 1.0 / math.log(n)
    nbeta = n * beta
    with torch.no_grad():
        init_loss = float(loss(theta, None))
    curv = nbeta * top_curvature(loss, theta, seed=s.seed)
    step, auto = _step(s, curv)
    sampler = _Sampler(loss, theta, n, s, nbeta, step, parallel)
    traces, cancelled = sampler.run(cancel, progress)
    return _result(s, traces, init_loss, n, n_params, beta, nbeta, step, auto, curv, cancelled,
                   sampler.parallel, time.perf_counter() - t0)


def _step(s: LLCSettings, curv: float) -> tuple[float, bool]:
    if s.step is not None:
        return float(s.step), False
    c_max = max(curv, 0.0) + s.gamma
    if not math.isfinite(c_max) or c_max <= 0:
        raise ValueError("llc.step: the automatic step needs a positive curvature at θ (nβ·λ_max(H) + γ is "
                         f"{c_max!r}); give llc.step or llc.gamma > 0")
    return AUTO_STEP / c_max, True


class _Sampler:
    """The chains as one (chains, N) tensor, advanced together by a vmapped gradient (or a loop over chains)."""

    def __init__(self, loss: LossFn, theta: torch.Tensor, n: int, s: LLCSettings, nbeta: float, step: float,
                 mode: str = "auto"):
        self.loss, self.theta, self.n, self.s, self.nbeta, self.step = loss, theta, n, s, nbeta, step
        self.gen = torch.Generator(device="cpu").manual_seed(s.seed)
        self.batch = None if s.batch_size is None or s.batch_size >= n else s.batch_size
        self.mode = mode
        self.parallel: str | None = None if mode == "auto" or mode == "vmap" else "loop"

    def _vmapped(self, W: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        if idx is None:
            return vmap(lambda w: self.loss(w, None))(W)
        return vmap(self.loss)(W, idx)

    def _looped(self, W: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return torch.stack([self.loss(W[c], None if idx is None else idx[c]) for c in range(W.shape[0])])

    def _choose(self, W: torch.Tensor, idx: torch.Tensor | None) -> None:
        """vmap unless the model has no batching rule, or (mode "auto") one forward per chain is measured
        faster (a tiny model, where vmap's per-call overhead outweighs the batching)."""
        try:
            with torch.no_grad():
                self._vmapped(W, idx)
        except (RuntimeError, NotImplementedError):  # an operator without a batching rule
            self.parallel = "loop"
            return
        if self.mode == "vmap" or W.shape[0] == 1:
            self.parallel = "vmap" if W.shape[0] > 1 else "loop"
            return
        ways = {"vmap": self._vmapped, "loop": self._looped}
        secs: dict[str, list[float]] = {"vmap": [], "loop": []}
        for rep in range(CHOOSE_REPS + 1):  # interleaved, so a burst of load elsewhere hits both; the first is warm-up
            for name, fn in ways.items():
                t = time.perf_counter()
                self._parallel_grads(fn, W, idx)
                if rep:
                    secs[name].append(time.perf_counter() - t)
        self.parallel = min(secs, key=lambda k: float(np.median(secs[k])))

    @staticmethod
    def _parallel_grads(values, W: torch.Tensor, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every chain's loss in one (vmapped) forward, and every chain's gradient in ONE backward pass of
        their sum (the chains are independent, so d(Σ_c L_c)/dW_c = ∇L_c)."""
        Wr = W.detach().requires_grad_(True)
        with torch.enable_grad():
            Ls = values(Wr, idx)
            (g,) = torch.autograd.grad(Ls.sum(), Wr)
        return g, Ls.detach()

    def _grads(self, W: torch.Tensor, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.parallel is None:
            self._choose(W, idx)
        return self._parallel_grads(self._vmapped if self.parallel == "vmap" else self._looped, W, idx)

    def _indices(self, chains: int) -> torch.Tensor | None:
        if self.batch is None:
            return None
        keys = torch.rand(chains, self.n, generator=self.gen, dtype=torch.float64)
        return keys.argsort(dim=1)[:, : self.batch].to(self.theta.device)

    def run(self, cancel, progress) -> tuple[np.ndarray, bool]:
        s = self.s
        total = s.burnin + s.draws
        W = self.theta.unsqueeze(0).repeat(s.chains, 1)
        traces = np.full((s.chains, s.draws), np.nan)
        half, sd = self.step / 2.0, math.sqrt(self.step)
        done = 0
        for t in range(total):
            if cancel is not None and cancel():
                return traces[:, : max(0, done - s.burnin)], True
            g, L = self._grads(W, self._indices(s.chains))
            if t >= s.burnin:
                traces[:, t - s.burnin] = L.detach().cpu().numpy()
            noise = torch.randn(W.shape, generator=self.gen, dtype=torch.float64).to(W.device)
            W = (W - half * (self.nbeta * g + s.gamma * (W - self.theta)) + sd * noise).detach()
            done = t + 1
            if progress is not None:
                progress(done, total)
        return traces, False


def _chain_se(excess: np.ndarray) -> float:
    """A chain's own standard error of its mean excess, by batch means (BATCHES batches)."""
    m = excess.size // BATCHES
    if m < 2:
        return float(np.std(excess, ddof=1) / math.sqrt(excess.size)) if excess.size > 1 else float("nan")
    means = excess[: m * BATCHES].reshape(BATCHES, m).mean(axis=1)
    return float(np.std(means, ddof=1) / math.sqrt(BATCHES))


def _rhat(excess: np.ndarray) -> float:
    """Gelman-Rubin R̂ over chains (rows) of equal length; nan with fewer than 2 chains or 4 draws."""
    c, m = excess.shape
    if c < 2 or m < 4:
        return float("nan")
    w = float(np.mean(np.var(excess, axis=1, ddof=1)))
    b = m * float(np.var(excess.mean(axis=1), ddof=1))
    if w <= 0:
        return float("nan") if b <= 0 else float("inf")
    return math.sqrt(((m - 1) / m * w + b / m) / w)


def _diverged(traces: np.ndarray, init_loss: float, nbeta: float, n_params: int) -> list[int]:
    limit = BLOWUP * (n_params / 2 + 1)
    out = []
    for c in range(traces.shape[0]):
        row = traces[c]
        if not np.all(np.isfinite(row)) or (row.size and float(np.max(nbeta * (row - init_loss))) > limit):
            out.append(c)
    return out


def _result(s, traces, init_loss, n, n_params, beta, nbeta, step, auto, curv, cancelled, parallel,
            seconds) -> LLCResult:
    draws_done = traces.shape[1]
    excess = nbeta * (traces - init_loss)
    diverged = _diverged(traces, init_loss, nbeta, n_params) if draws_done else []
    ok = [c for c in range(s.chains) if c not in diverged]
    per_chain = tuple(float(excess[c].mean()) if draws_done else float("nan") for c in range(s.chains))
    good = np.array([per_chain[c] for c in ok]) if draws_done else np.array([])
    est = float(good.mean()) if good.size else float("nan")
    std = float(good.std(ddof=1)) if good.size > 1 else float("nan")
    se = std / math.sqrt(good.size) if good.size > 1 else float("nan")
    flags = _flags(excess[ok] if ok and draws_done else np.empty((0, 0)), n_params)
    rhat = _rhat(excess[ok]) if ok and draws_done else float("nan")
    warns = _warnings(s, diverged, flags, rhat, curv, cancelled, draws_done, n_params)
    if auto and not curv > s.gamma:
        warns.append(f"the automatic step comes from the curvature at θ, and nβ·λ_max(H) = {curv:.3g} is not above "
                     f"γ = {s.gamma:g} (a degenerate point): the step ε = {step:.3g} may be far too large; give llc.step")
    return LLCResult(
        estimate=est, std=std, se=se, chain_estimates=per_chain, traces=traces, init_loss=init_loss, n=n,
        n_params=n_params, beta=beta, nbeta=nbeta, step=step, step_auto=auto, gamma=float(s.gamma),
        chains=s.chains, draws=s.draws, draws_done=draws_done, burnin=s.burnin, batch_size=s.batch_size,
        curvature_top=curv, diverged=tuple(diverged), rhat=rhat, step_too_large=flags["high"],
        rising=flags["rising"], below_init=flags["low"], warnings=tuple(warns), cancelled=cancelled,
        parallel=parallel, seconds=seconds, settings=s,
    )


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """The mean of independent values (one per chain) and its standard error; a single chain's mean and
    its batch-means standard error."""
    if x.ndim == 2 and x.shape[0] == 1:
        return float(x.mean()), _chain_se(x[0])
    v = x.mean(axis=1) if x.ndim == 2 else x
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def _flags(excess: np.ndarray, n_params: int) -> dict[str, bool]:
    """Across the healthy chains (rows; each chain's mean is one independent value, so the standard errors
    are honest however correlated the draws within a chain are): the estimate far above N/2 (step too
    large), the second half of the draws above the first (still rising), the estimate below zero (θ is not
    a local minimum). Each is called at SE_MULT standard errors."""
    out = {"high": False, "rising": False, "low": False}
    if excess.ndim != 2 or excess.shape[0] == 0 or excess.shape[1] < 4:
        return out
    est, se = _mean_se(excess)
    h = excess.shape[1] // 2
    if excess.shape[0] > 1:
        d, se_d = _mean_se(excess[:, h:].mean(axis=1) - excess[:, :h].mean(axis=1))
    else:
        d = float(excess[0, h:].mean() - excess[0, :h].mean())
        se_d = math.hypot(_chain_se(excess[0, :h]), _chain_se(excess[0, h:]))
    if math.isfinite(se):
        out["high"] = est > (1 + HIGH_REL) * n_params / 2 + SE_MULT * se
        out["low"] = est < -SE_MULT * se
    if math.isfinite(se_d):
        out["rising"] = d > SE_MULT * se_d and d > HIGH_REL * max(abs(est), 1e-300)
    return {k: bool(v) for k, v in out.items()}


def _warnings(s, diverged, flags, rhat, curv, cancelled, draws_done, n_params) -> list[str]:
    w = []
    if cancelled:
        w.append(f"cancelled after {draws_done} of {s.draws} draws: the estimate uses the draws so far")
    if diverged:
        which = ", ".join(str(c) for c in diverged)
        w.append(f"chain(s) {which} diverged (a non-finite loss, or the loss far above Lₙ(θ)): left out of the "
                 "estimate; lower llc.step")
    if flags["high"]:
        w.append(f"a chain's estimate is far above N/2 = {n_params / 2:g}, which no local minimum allows: the "
                 "step size is too large (lower llc.step)")
    if flags["rising"]:
        w.append("the loss is still rising through the draws: not at equilibrium (step too large, or burn-in "
                 "too short: raise llc.burnin)")
    if flags["low"]:
        w.append("the chains found loss below Lₙ(θ): θ is not a local minimum, and λ̂ is not meaningful there")
    if math.isfinite(rhat) and rhat > RHAT_WARN:
        w.append(f"the chains disagree (R̂ = {rhat:.2f} > {RHAT_WARN}): raise llc.draws or llc.burnin")
    if math.isfinite(curv) and curv > 0 and s.gamma >= GAMMA_WARN * curv:
        w.append(f"γ = {s.gamma:g} is at least {GAMMA_WARN:g} of the top curvature nβ·λ_max(H) = {curv:.3g}: "
                 "the localisation dominates and λ̂ is biased low (lower llc.gamma)")
    return w


def meaning(r: LLCResult, rank_h: int | None = None, bars: float = 3.0) -> str:
    """One sentence on how λ̂ relates to N/2 and rank(H)/2 at this θ (λ lies in [rank(H)/2, N/2] at a local
    minimum: the quadratic part counts ½ per curved direction, a flat-to-second-order direction adds 0 when
    it is flat to every order and between 0 and ½ when the loss rises at a higher order). `bars` standard
    errors decide "about equal"."""
    est, se, half_n = r.estimate, r.se, r.n_params / 2
    if not math.isfinite(est):
        return "λ̂ could not be estimated (every chain diverged or none drew): see the warnings."
    tol = bars * se if math.isfinite(se) else 0.0
    sh = f"λ̂ = {est:.3g} ± {se:.2g}" if math.isfinite(se) else f"λ̂ = {est:.3g}"
    if est > half_n + tol:
        return f"{sh} is above N/2 = {half_n:g}, which no local minimum allows: the sampler is biased (see the warnings)."
    if rank_h is not None and est < rank_h / 2 - tol:
        return (f"{sh} is below rank(H)/2 = {rank_h / 2:g}, which no local minimum allows: θ is not a minimum, or "
                "the chains have not equilibrated (see the warnings).")
    if abs(est - half_n) <= tol and (rank_h is None or rank_h == r.n_params):
        return f"{sh} ≈ N/2 = {half_n:g}: θ is a regular minimum, every direction is curved."
    if rank_h is None:
        return f"{sh} is below N/2 = {half_n:g}: the minimum is degenerate (singular) at θ."
    if abs(est - rank_h / 2) <= tol:
        return (f"{sh} ≈ rank(H)/2 = {rank_h / 2:g} < N/2 = {half_n:g}: minimally singular; the {r.n_params - rank_h} "
                "directions H calls flat stay flat to every order (a valley of minima), only the curved ones count.")
    return (f"{sh} lies between rank(H)/2 = {rank_h / 2:g} and N/2 = {half_n:g}: some of the "
            f"{r.n_params - rank_h} directions H calls flat are not flat at higher order (the loss rises along them "
            "like w⁴), each adding less than ½.")
