"""Spectrum of G for a tanh MLP 10-310-310-1 (N ≈ 1e5) on k = 1024 inputs, float64.

The engine's route (Linear fast path for G, then the Gram/SVD rule of engine/numerics/spectrum.py) against
`vmap(jacrev)` + `torch.linalg.svdvals`, measured side by side in this one process. Prints both
times, their ratio, the largest relative disagreement of singular values ≥ 1e-4 σ₁, and the peak
resident memory of each. Target (issue 3): ≥ 10× faster, agreement within 1e-8.

    python benchmarks/spectrum.py [--width 310] [--k 1024]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

sys.path.insert(0, str(Path(__file__).parent))
from _common import dgemm_gflops, machine, peak_rss  # noqa: E402

from basintui.engine.routes.jacobian import compute_G  # noqa: E402
from basintui.engine.problem.models import build_mlp, layout_of  # noqa: E402
from basintui.engine.routes.dispatch import spectrum_on_route  # noqa: E402
from basintui.engine.numerics.spectrum import spectrum_of  # noqa: E402


def engine_spectrum(model, layout, x):
    """The session's own choice of route (limits.choose_route)."""
    r = spectrum_on_route("auto", model, layout, x)
    return r.spectrum, r.how


def baseline(model, x):
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    J = torch.cat([jac[n].reshape(x.shape[0], -1) for n in params], dim=1)  # (k, N)
    return torch.linalg.svdvals(J).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=310)
    ap.add_argument("--k", type=int, default=1024)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build_mlp(10, (args.width, args.width), 1, "tanh", True).double()
    layout = layout_of(model)
    x = torch.randn(args.k, 10, dtype=torch.float64)
    print(f"machine: {machine()}; DGEMM {dgemm_gflops():.1f} GFLOP/s")
    # warm-up: the first eigh/svd/einsum/vmap calls in a process pay one-off library start-up costs
    small = build_mlp(10, (16, 16), 1, "tanh", True).double()
    xs = torch.randn(32, 10, dtype=torch.float64)
    engine_spectrum(small, layout_of(small), xs)
    spectrum_of(compute_G(small, layout_of(small), xs)[0])
    baseline(small, xs)
    print(f"tanh MLP 10-{args.width}-{args.width}-1: N = {layout.n_params}, k = {args.k}, float64")

    with peak_rss() as eng:
        spec, route = engine_spectrum(model, layout, x)
    with peak_rss() as explicit:
        G, route2 = compute_G(model, layout, x)
        spec2 = spectrum_of(G)
    del G
    with peak_rss() as base:
        sv_ref = baseline(model, x)

    sv = spec.singular_values
    keep = sv_ref >= 1e-4 * sv_ref[0]
    disagreement = float(np.max(np.abs(sv[keep] - sv_ref[keep]) / sv_ref[keep]))
    print(f"{'route':44s} {'seconds':>9s} {'peak RSS':>10s}")
    print(f"{'engine: ' + route + ' + ' + spec.method:44s} {eng['seconds']:9.2f} {eng['peak'] / 2**30:8.2f} GiB")
    print(f"{'explicit G: ' + route2 + ' + ' + spec2.method:44s} {explicit['seconds']:9.2f} "
          f"{explicit['peak'] / 2**30:8.2f} GiB")
    print(f"{'baseline: vmap(jacrev) + svdvals':44s} {base['seconds']:9.2f} {base['peak'] / 2**30:8.2f} GiB")
    print(f"speed-up: {base['seconds'] / eng['seconds']:.1f}x  (target >= 10x)")
    print(f"max relative disagreement for sigma >= 1e-4 sigma_1: {disagreement:.2e}  (target <= 1e-8)")
    print(f"rank(G) = {spec.rank}; rank of the baseline at the same tolerance: "
          f"{int(np.count_nonzero(sv_ref > spec.tolerance))}")


if __name__ == "__main__":
    main()
