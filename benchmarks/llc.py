"""λ̂ by the engine's SGLD estimator (engine/analyses/llc.py) against devinterp's, same models and settings.

Models (float64, full batch, at a known minimum so the answer is exact where there is one):
- `regular`: linear regression y = X w, X (k = 200) × 4 Gaussian, mse at its minimum: λ = N/2 = 2;
- `duplicated`: the same with the last feature duplicated (N = 5, one flat direction): λ = (N − 1)/2 = 2;
- `tanh`: a tanh MLP 3-8-1 (N = 41) trained by full-batch L-BFGS (400 iterations: loss 5e-8, largest gradient
  entry 1e-6) to the labels of a 3-4-1 teacher, so the student is wider than it needs (a singular minimum),
  λ not known.

Both run the same chain: w ← w − (ε/2)(nβ ∇Lₙ(w) + γ (w − θ)) + √ε N(0, I), with the same nβ = k / log k,
ε, γ, chains and draws, no burn-in (devinterp's `compute_llc` averages every step it ran, so burn-in is
left out of both), and λ̂ = nβ (mean sampled loss − Lₙ(θ)). Prints the truth where known, E[λ̂] (for the
linear models, the exact expectation of λ̂ for this discretised chain started at θ: the Euler step's small
upward bias and the no-burn-in transient's downward one), both estimates ± their standard error across
chains, both times, and their ratios.

devinterp is an optional benchmark dependency, never a runtime one: it runs in its own virtual environment
(`--devinterp-python`, default /tmp/devinterp-venv/bin/python; made by `python -m venv` plus `pip install
devinterp==2.0.1`, with the project's site-packages on its path through a .pth file so torch is shared).
Where it cannot be started the devinterp columns say why and are skipped.

    python benchmarks/llc.py [--chains 4] [--draws 2000] [--devinterp-python PATH] [--models regular,duplicated,tanh]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

K = 200
GAMMA = 0.1


@functools.cache
def problem(name: str):
    """(model, X, y) in float64, θ = the model's parameters at the minimum (nothing here changes the model:
    the engine's estimator works on a copy of θ; devinterp, which moves the model, runs in its own process)."""
    gen = torch.Generator().manual_seed(0)
    if name in ("regular", "duplicated"):
        X = torch.randn(K, 4, generator=gen, dtype=torch.float64)
        if name == "duplicated":
            X = torch.cat([X, X[:, -1:]], dim=1)
        model = nn.Sequential(nn.Linear(X.shape[1], 1, bias=False)).double()
        with torch.no_grad():
            model[0].weight.copy_(torch.randn(1, X.shape[1], generator=gen, dtype=torch.float64))
            y = model(X)
        return model, X, y
    X = torch.randn(K, 3, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with torch.no_grad():
        y = teacher(X)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=400, tolerance_grad=1e-12,
                            tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).sum(dim=1).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return model, X, y


def truth(name: str) -> float | None:
    return {"regular": 2.0, "duplicated": 2.0}.get(name)


def expected(name: str, draws: int, step: float) -> float | None:
    """For the linear models, the exact expectation of λ̂ for THIS discretised chain and these settings: each
    eigen-direction of C = nβH + γI is an AR(1) from δ = 0 with ρ = (1 − εc/2)², variance
    v_t = v∞ (1 − ρᵗ), v∞ = 1/(c (1 − εc/4)), and λ̂ averages ½ nβ h v_t over t = 0 … draws − 1."""
    if name not in ("regular", "duplicated"):
        return None
    _, X, _ = problem(name)
    nbeta = K / math.log(K)
    h = torch.linalg.eigvalsh(2 * X.T @ X / K).clamp_min(0)
    c = nbeta * h + GAMMA
    rho = (1 - step * c / 2) ** 2
    vinf = 1 / (c * (1 - step * c / 4))
    mean_v = vinf * (1 - (1 - rho**draws) / (draws * (1 - rho)))
    return float(0.5 * (nbeta * h * mean_v).sum())


def common_step(name: str) -> float:
    """ε = 0.04 / (nβ λ_max(H) + γ): the engine's automatic rule, computed once and given to both."""
    from basintui.engine.analyses.llc import AUTO_STEP, model_loss, top_curvature
    from basintui.engine.problem.models import flat_params, layout_of

    model, X, y = problem(name)
    nbeta = K / math.log(K)
    curv = nbeta * top_curvature(model_loss(model, layout_of(model), X, y, "mse"), flat_params(model))
    return AUTO_STEP / (curv + GAMMA)


def run_ours(name: str, chains: int, draws: int, step: float) -> dict:
    from basintui.engine.analyses.llc import LLCSettings, estimate_llc, model_loss
    from basintui.engine.problem.models import flat_params, layout_of

    model, X, y = problem(name)
    loss = model_loss(model, layout_of(model), X, y, "mse")
    t0 = time.perf_counter()
    r = estimate_llc(loss, flat_params(model), K,
                     LLCSettings(chains=chains, draws=draws, burnin=0, step=step, gamma=GAMMA, seed=0))
    return {"estimate": r.estimate, "se": r.se, "seconds": time.perf_counter() - t0, "n_params": r.n_params,
            "parallel": r.parallel, "warnings": list(r.warnings)}


def run_devinterp(name: str, chains: int, draws: int, step: float) -> dict:
    """Runs inside devinterp's virtual environment (the --worker mode of this file)."""
    import warnings

    from datasets import Dataset
    from devinterp.slt.llc import llc

    warnings.filterwarnings("ignore")
    model, X, y = problem(name)
    ds = Dataset.from_dict({"input_ids": [[i, 0] for i in range(K)]}).with_format("torch")

    def loss_fn(m, input_ids):  # per "token": one sample's squared error, shape (batch, 1)
        idx = input_ids[:, 0].long()
        return ((m(X[idx]) - y[idx]) ** 2).sum(dim=1, keepdim=True)

    t0 = time.perf_counter()
    out = llc(model, ds, {}, lr=step, n_beta=K / math.log(K), loss_fn=loss_fn, num_chains=chains,
              num_draws=draws, batch_size=K, num_burnin_steps=0, localization=GAMMA, device="cpu",
              num_init_loss_batches=1, shuffle=False, init_seed=0)
    secs = time.perf_counter() - t0
    per = [float(v) for v in out.llc_per_chain.values]
    se = float(torch.tensor(per, dtype=torch.float64).std()) / math.sqrt(len(per))
    return {"estimate": float(out.llc_mean), "se": se, "seconds": secs}


def devinterp_column(python: str, name: str, chains: int, draws: int, step: float) -> dict:
    if not Path(python).exists():
        return {"skipped": f"no devinterp environment at {python}"}
    cmd = [python, __file__, "--worker", name, "--chains", str(chains), "--draws", str(draws), "--step", repr(step)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(Path(__file__).parent.parent), check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"skipped": f"devinterp failed: {tail}"}
    return json.loads(lines[-1])


def _pm(d: dict) -> str:
    return f"{d['estimate']:.3f} ± {d['se']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--step", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--devinterp-python", default="/tmp/devinterp-venv/bin/python")
    ap.add_argument("--models", default="regular,duplicated,tanh")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_devinterp(args.worker, args.chains, args.draws, args.step)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine

    print(f"machine: {machine()}")
    print(f"chains {args.chains}, draws {args.draws}, no burn-in, full batch k = {K}, nβ = k/log k = "
          f"{K / math.log(K):.3f}, γ = {GAMMA}, ε = 0.04/(nβ λ_max(H) + γ) given to both")
    head = f"{'model':<11} {'N':>3} {'truth':>5} {'E[λ̂]':>6}  {'basintui λ̂':>15} {'s':>7}  {'devinterp λ̂':>15} {'s':>7}  " \
           f"{'λ̂ ratio':>8} {'time ratio':>10}"
    print(head)
    for name in args.models.split(","):
        step = common_step(name)
        ours = run_ours(name, args.chains, args.draws, step)
        theirs = devinterp_column(args.devinterp_python, name, args.chains, args.draws, step)
        t, e = truth(name), expected(name, args.draws, step)
        row = f"{name:<11} {ours['n_params']:>3} {t if t is not None else '?':>5} " \
              f"{f'{e:.3f}' if e is not None else '?':>6}  {_pm(ours):>15} " \
              f"{ours['seconds']:>7.2f}  "
        if "skipped" in theirs:
            row += f"(devinterp skipped: {theirs['skipped']})"
        else:
            row += f"{_pm(theirs):>15} {theirs['seconds']:>7.2f}  {ours['estimate'] / theirs['estimate']:>8.3f} " \
                   f"{theirs['seconds'] / ours['seconds']:>9.2f}x"
        print(row + (f"   [ours: {ours['parallel']}; {'; '.join(ours['warnings'])}]" if ours["warnings"] else
                     f"   [ours: {ours['parallel']}]"), flush=True)


if __name__ == "__main__":
    main()
