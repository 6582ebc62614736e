"""Top-20 Hessian eigenvalues: Lanczos on Hessian-vector products against dense eigvalsh, one run.

A tanh MLP 10-64-64-1 (N = 4,929) on k = 256 random inputs with random mse targets at
initialisation (a non-zero residual, so H has eigenvalues of both signs), float64. Both routes use
the engine's own code: `analyses.curvature.dense_hessian` (vmapped forward-over-reverse HVPs on unit vectors)
+ `numpy.linalg.eigvalsh`, and `numerics.lanczos.lanczos_extremes` (ARPACK eigsh, which="LA", on the shifted
operator H + cI, c ≈ ‖H‖₂ from one cheap LM run, tol 1e-12) on a LinearOperator of HVPs. Prints both times, their ratio, the number of HVPs, and the largest
relative disagreement of the 20 largest eigenvalues.

    python benchmarks/hessian.py [--width 64] [--k 256] [--top 20] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import dgemm_gflops, machine, peak_rss  # noqa: E402

from basintui.engine.analyses import curvature as hs  # noqa: E402
from basintui.engine.numerics.lanczos import lanczos_extremes  # noqa: E402
from basintui.engine.problem.models import build_mlp, flat_params, layout_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_mlp(10, (args.width, args.width), 1, "tanh", True).double()
    layout = layout_of(model)
    x = torch.randn(args.k, 10, dtype=torch.float64)
    y = torch.randn(args.k, 1, dtype=torch.float64)
    theta = flat_params(model)
    n = theta.numel()
    L = hs.total_loss_fn(model, layout, x, y, "mse")
    print(f"machine: {machine()}; DGEMM {dgemm_gflops():.1f} GFLOP/s")
    print(f"tanh MLP 10-{args.width}-{args.width}-1: N = {n}, k = {args.k}, mse (sum), random targets, float64")

    with peak_rss() as dense_mem:
        t0 = time.perf_counter()
        H = hs.dense_hessian(L, theta)
        t_form = time.perf_counter() - t0
        ev = np.linalg.eigvalsh(H.numpy())[::-1]
        t_dense = time.perf_counter() - t0
    del H

    hvp = hs.hvp_fn(L, theta)
    count = [0]

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        return hvp(torch.from_numpy(np.ascontiguousarray(v))).numpy()

    with peak_rss() as lanc_mem:
        t0 = time.perf_counter()
        top, _ = lanczos_extremes(mv, n, args.top, bottom=False)
        t_lanc = time.perf_counter() - t0

    ref = ev[: args.top]
    rel = np.abs(top - ref) / np.abs(ref)
    print(f"dense : form H {t_form:.2f} s + eigvalsh {t_dense - t_form:.2f} s = {t_dense:.2f} s, "
          f"peak RSS {dense_mem['peak'] / 2**30:.2f} GiB")
    print(f"lanczos: {t_lanc:.2f} s ({count[0]} Hessian-vector products), peak RSS {lanc_mem['peak'] / 2**30:.2f} GiB")
    print(f"speed-up dense / lanczos: {t_dense / t_lanc:.1f}x")
    print(f"top-{args.top}: λ₁ = {ref[0]:.6g}, λ_{args.top} = {ref[-1]:.6g}; largest relative disagreement "
          f"{rel.max():.2e} (median {np.median(rel):.2e})")


if __name__ == "__main__":
    main()
