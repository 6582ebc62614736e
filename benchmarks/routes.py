"""Spectrum of G: every route side by side, for tanh MLPs 10-H-H-1 at N ∈ {1e4, 1e5, 1e6} and
k ∈ {256, 1024, 4096} (float64, d = 1).

Routes, measured in this one process:
  engine      the session's own choice (limits.choose_route): factored Gram when kd ≤ N/4
  explicit    G formed (Linear fast path) + the Gram/Ritz/SVD rule of engine/numerics/spectrum.py
  streamed    G's Gram summed over parameter chunks by vmap(jacrev), never whole (any model)
  jacrev      vmap(jacrev) + torch.linalg.svdvals (the plain torch.func way)
  curvlinops  TransposedJacobianLinearOperator densified in chunks + svdvals (optional peer)
  backpack    BackPACK BatchGrad per-sample gradients + Gram + eigvalsh (optional peer)
A route is skipped, with the reason printed, when its memory estimate exceeds 60% of what is
available or its time estimate (from the measured DGEMM rate) exceeds --budget seconds.
Peers install without replacing torch:
  pip install --no-deps curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 einops einconv \
      linear_operator opt_einsum tqdm unfoldNd

    python benchmarks/routes.py [--n 1e4,1e5,1e6] [--k 256,1024,4096] [--budget 300]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

sys.path.insert(0, str(Path(__file__).parent))
from _common import dgemm_gflops, machine, peak_rss  # noqa: E402

from basintui.engine.routes.jacobian import compute_G  # noqa: E402
from basintui.engine.problem.models import build_mlp, layout_of  # noqa: E402
from basintui.engine.memory import available_bytes, fmt_bytes  # noqa: E402
from basintui.engine.routes.dispatch import spectrum_on_route  # noqa: E402
from basintui.engine.numerics.spectrum import singular_values  # noqa: E402

WIDTH_FOR_N = {10_000: 94, 100_000: 310, 1_000_000: 994}


def route_engine(model, layout, x):
    """The route the session would choose here (limits.choose_route) and its result."""
    r = spectrum_on_route("auto", model, layout, x)
    return r.spectrum.singular_values, f"{r.how} + {r.spectrum.method}"


def route_streamed(model, layout, x):
    """G's Gram streamed over parameter chunks by vmap(jacrev): the route for any model whose G won't fit."""
    r = spectrum_on_route("streamed", model, layout, x)
    return r.spectrum.singular_values, f"{r.how} + {r.spectrum.method}"


def route_explicit(model, layout, x):
    G, _ = compute_G(model, layout, x)
    return singular_values(G)


def route_jacrev(model, layout, x):
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    J = torch.cat([jac[n].reshape(x.shape[0], -1) for n in params], dim=1)
    del jac
    return torch.linalg.svdvals(J.T).numpy(), "vmap(jacrev) + svdvals"


def route_curvlinops(model, layout, x):
    from curvlinops import TransposedJacobianLinearOperator

    params = [p for p in model.parameters()]
    data = [(x, torch.zeros(x.shape[0], 1, dtype=x.dtype))]
    JT = TransposedJacobianLinearOperator(model, params, data, check_deterministic=False)
    k = x.shape[0]
    G = torch.empty(layout.n_params, k, dtype=torch.float64)
    step = 256
    for i in range(0, k, step):
        j = min(step, k - i)
        eye = torch.zeros(k, j, dtype=torch.float64)
        eye[torch.arange(i, i + j), torch.arange(j)] = 1.0
        G[:, i: i + j] = JT @ eye
    return torch.linalg.svdvals(G).numpy(), "curvlinops Jᵀ densified + svdvals"


def route_backpack(model, layout, x):
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad

    m = extend(model)
    out = m(x)
    with backpack(BatchGrad()):
        out.sum().backward()
    J = torch.cat([p.grad_batch.reshape(x.shape[0], -1) for p in m.parameters()], dim=1)
    for p in m.parameters():
        p.grad = None
        del p.grad_batch
    lam = torch.linalg.eigvalsh(J @ J.T).flip(0).clamp_min(0).sqrt().numpy()
    return lam, "BackPACK BatchGrad + Gram + eigvalsh"


ROUTES = {"engine": route_engine, "explicit": route_explicit, "streamed": route_streamed, "jacrev": route_jacrev,
          "curvlinops": route_curvlinops, "backpack": route_backpack}


def estimates(route: str, N: int, k: int, gflops: float) -> tuple[float, float]:
    """(bytes, seconds) for a route, rough: what decides whether to run it at all."""
    g = 8.0 * N * k
    rate = gflops * 1e9
    if route == "engine":
        return 8.0 * k * k * 4 + 8.0 * k * 3000, (k * k * 6000 + 10 * k**3) / rate + 1
    if route == "explicit":
        return 2.2 * g, (N * k * k + 10 * k**3) / rate + g / 2e9 + 1
    if route == "streamed":
        return 8.0 * k * k * 4 + 2 * 2**28, 3 * (N * k * k + 10 * k**3) / rate + 6 * g / 5e8 + 1
    if route == "jacrev":
        return 3.2 * g, 9 * N * k * k / rate + g / 5e8 + 1
    if route == "curvlinops":
        return 2.5 * g, 9 * N * k * k / rate + g / 3e8 + 1
    return 2.5 * g, (N * k * k * 2 + 10 * k**3) / rate + g / 5e8 + 1


def available_peers() -> set[str]:
    out = set()
    for name in ("curvlinops", "backpack"):
        try:
            __import__(name)
            out.add(name)
        except ImportError:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1e4,1e5,1e6")
    ap.add_argument("--k", default="256,1024,4096")
    ap.add_argument("--budget", type=float, default=300.0, help="skip a route estimated to take longer (s)")
    ap.add_argument("--routes", default=",".join(ROUTES))
    args = ap.parse_args()
    gflops = dgemm_gflops()
    peers = available_peers()
    avail = available_bytes(torch.device("cpu"))
    print(f"machine: {machine()}; DGEMM {gflops:.1f} GFLOP/s; {fmt_bytes(avail)} available")
    print(f"peers importable: {', '.join(sorted(peers)) or 'none'}")
    header = f"{'N':>9} {'k':>5} {'route':11} {'seconds':>8} {'vs engine':>9} {'peak RSS':>9} {'rank':>5} " \
             f"{'max rel err':>11}  method"
    print(header)
    torch.manual_seed(1)  # warm-up: first calls of eigh/svd/einsum pay one-off library start-up costs
    warm = build_mlp(10, (8, 8), 1, "tanh", True).double()
    for route in args.routes.split(","):
        if route not in ("curvlinops", "backpack") or route in peers:
            ROUTES[route](warm, layout_of(warm), torch.randn(16, 10, dtype=torch.float64))
    for n_target in [int(float(v)) for v in args.n.split(",")]:
        width = WIDTH_FOR_N[n_target]
        for k in [int(v) for v in args.k.split(",")]:
            torch.manual_seed(0)
            model = build_mlp(10, (width, width), 1, "tanh", True).double()
            layout = layout_of(model)
            x = torch.randn(k, 10, dtype=torch.float64)
            N = layout.n_params
            results = {}
            for route in args.routes.split(","):
                if route in ("curvlinops", "backpack") and route not in peers:
                    print(f"{N:9d} {k:5d} {route:11} skipped: not installed")
                    continue
                mem, secs = estimates(route, N, k, gflops)
                if mem > 0.6 * avail:
                    print(f"{N:9d} {k:5d} {route:11} skipped: needs ~{fmt_bytes(mem)} of {fmt_bytes(avail)}")
                    continue
                if secs > args.budget:
                    print(f"{N:9d} {k:5d} {route:11} skipped: estimated {secs:.0f} s > budget {args.budget:.0f} s")
                    continue
                gc.collect()
                with peak_rss() as box:
                    sv, method = ROUTES[route](model, layout, x)
                sv = np.sort(np.asarray(sv))[::-1]
                results[route] = (sv, box["seconds"], box["peak"], method)
            ref_name = "explicit" if "explicit" in results else "engine"
            ref = results.get(ref_name, (None,))[0]
            base = results.get("engine", (None, None))[1]
            for route, (sv, secs, peak, method) in results.items():
                tol = sv[0] * max(N, k) * np.finfo(np.float64).eps
                rank = int(np.count_nonzero(sv > tol))
                err = "—"
                if ref is not None and route != ref_name:
                    keep = ref >= 1e-4 * ref[0]
                    err = f"{np.max(np.abs(sv[keep] - ref[keep]) / ref[keep]):.1e}"
                ratio = f"{secs / base:.1f}x" if base else "—"
                print(f"{N:9d} {k:5d} {route:11} {secs:8.2f} {ratio:>9} {peak / 2**30:7.2f}G {rank:5d} {err:>11}  "
                      f"{method}")
            sys.stdout.flush()
            del model, x, results
            gc.collect()


if __name__ == "__main__":
    main()
