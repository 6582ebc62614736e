"""The full spectrum of G at research scale (issue 16, item 4), float64, every route in this one process.

Cases:
  mlp-1e6    tanh MLP 10-994-994-1 (N = 1,000,959) on k = 4,096 Gaussian inputs (kd = 4,096): the engine's
             route (factored Gram, narrow Ritz tail) against the previous rule (the same route refining
             the wide tail, `--previous`), and vmap(jacrev) + svdvals at a reduced size (width 94,
             N = 10,059, same k: jacrev's G would be 30.5 GiB at full size).
  mlp-modadd tanh MLP 64-64-64-31 (N = 10,335) on k = 480 inputs (kd = 14,880): an MLP of modadd's kd.
  modadd     the `modadd` preset's one-layer transformer (p = 31, half the pairs: kd = 14,880), trained by
             Adam (lr 0.01) for --steps steps on cross-entropy, when engine/problem/zoo.py is present.
For the two kd > N cases the naive route is vmap(jacrev) + svdvals at full size (`--naive`).
Each line: seconds, peak RSS of the call (VmHWM reset before it), rank, the method, and the ratio
naive / engine. Accuracy: the largest relative disagreement for σ ≥ 1e-4·σ₁ and the largest absolute one
over all σ, in units of σ₁, against the reference run beside it.

    python benchmarks/scale.py [--cases mlp-1e6,mlp-modadd,modadd] [--previous] [--naive] [--steps 1500]
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

from basintui.engine.numerics import spectrum as sp  # noqa: E402
from basintui.engine.problem.models import build_mlp, layout_of  # noqa: E402
from basintui.engine.routes.dispatch import spectrum_on_route  # noqa: E402


def engine(model, layout, x):
    r = spectrum_on_route("auto", model, layout, x)
    return r.spectrum.singular_values, f"{r.how} + {r.spectrum.method}"


def previous_rule(model, layout, x):
    """The route before this change: a Ritz tail is always the wide one (below 100× the trust line)."""
    keep = sp.WIDE_DIRECTLY
    sp.WIDE_DIRECTLY = float("inf")
    try:
        return engine(model, layout, x)
    finally:
        sp.WIDE_DIRECTLY = keep


def naive(model, layout, x):
    """vmap(jacrev) + svdvals of the tall orientation: the plain torch.func way."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    J = torch.cat([jac[n].reshape(x.shape[0] * jac[n].shape[1], -1) for n in params], dim=1)
    del jac
    A = J if J.shape[0] >= J.shape[1] else J.T.contiguous()
    return torch.linalg.svdvals(A).numpy(), "vmap(jacrev) + svdvals"


def measure(name, fn, model, layout, x):
    gc.collect()
    with peak_rss() as box:
        sv, method = fn(model, layout, x)
    sv = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    N, kd = layout.n_params, x.shape[0] * model(x[:1]).shape[-1]
    rank = int(np.count_nonzero(sv > sv[0] * max(N, kd) * np.finfo(np.float64).eps))
    print(f"  {name:13} N={N:>9,} kd={kd:>6,} {box['seconds']:8.2f} s {box['peak'] / 2**30:6.2f} GiB "
          f"rank {rank:6d}  {method}")
    sys.stdout.flush()
    return sv, box["seconds"]


def vs_naive(sv, t, model, layout, x, where=""):
    """The naive route on the same model, side by side: its agreement with the engine and the time ratio."""
    sv_n, t_n = measure("naive", naive, model, layout, x)
    agreement(sv, sv_n, "naive" + where)
    print(f"  naive / engine{where}: {t_n / t:.1f}x")


def agreement(sv, ref, label):
    big = ref >= 1e-4 * ref[0]
    rel = np.max(np.abs(sv[big] - ref[big]) / ref[big])
    print(f"  agreement with {label}: max rel err (σ ≥ 1e-4 σ₁) {rel:.1e}, max abs err {np.max(np.abs(sv - ref)) / ref[0]:.1e} σ₁, "
          f"smallest σ {sv[-1] / sv[0]:.2e} σ₁ vs {ref[-1] / ref[0]:.2e} σ₁")


def mlp(in_dim, hidden, out_dim, k, seed=0):
    torch.manual_seed(seed)
    model = build_mlp(in_dim, hidden, out_dim, "tanh", True).double()
    return model, layout_of(model), torch.randn(k, in_dim, dtype=torch.float64)


def case_mlp_1e6(args):
    model, layout, x = mlp(10, (994, 994), 1, 4096)
    sv, t = measure("engine", engine, model, layout, x)
    if args.previous:
        sv_old, t_old = measure("previous rule", previous_rule, model, layout, x)
        agreement(sv, sv_old, "the previous rule (wide tail)")
        print(f"  previous rule / engine: {t_old / t:.1f}x")
    small, small_layout, xs = mlp(10, (94, 94), 1, 4096)
    sv_s, t_s = measure("engine", engine, small, small_layout, xs)
    if args.naive_small:
        vs_naive(sv_s, t_s, small, small_layout, xs, " at the reduced size (N = 10,059, kd = 4,096)")


def case_mlp_modadd(args):
    model, layout, x = mlp(64, (64, 64), 31, 480)
    sv, t = measure("engine", engine, model, layout, x)
    if args.naive:
        vs_naive(sv, t, model, layout, x)


def trained_modadd(steps):
    from basintui.config import load_preset
    from basintui.engine.problem import zoo

    preset = load_preset("modadd")
    p = preset.data.p
    torch.manual_seed(preset.seed)
    model = zoo.build(preset.model, 2, p).double()
    pairs = np.array([(a, b) for a in range(p) for b in range(p)])
    rng = np.random.default_rng(preset.seed)
    pick = rng.permutation(len(pairs))[: int(round(preset.data.train_fraction * len(pairs)))]
    x = torch.as_tensor(pairs[pick], dtype=torch.float64)
    y = torch.as_tensor((pairs[pick, 0] + pairs[pick, 1]) % p)
    opt = torch.optim.Adam(model.parameters(), lr=preset.train.lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    print(f"  modadd trained {steps} Adam steps: loss {loss.item():.2e}, "
          f"accuracy {(model(x).argmax(1) == y).double().mean().item():.3f}")
    return model, layout_of(model), x


def case_modadd(args):
    try:
        model, layout, x = trained_modadd(args.steps)
    except (ImportError, AttributeError, KeyError, FileNotFoundError) as exc:
        print(f"  modadd skipped: {exc!r}")
        return
    sv, t = measure("engine", engine, model, layout, x)
    if args.naive:
        vs_naive(sv, t, model, layout, x)


CASES = {"mlp-1e6": case_mlp_1e6, "mlp-modadd": case_mlp_modadd, "modadd": case_modadd}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--previous", action="store_true", help="also run the previous rule at N = 1e6 (~200-300 s)")
    ap.add_argument("--naive", action="store_true", help="also run vmap(jacrev) + svdvals on the kd > N cases")
    ap.add_argument("--no-naive-small", dest="naive_small", action="store_false")
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    print(f"machine: {machine()}; DGEMM {dgemm_gflops():.1f} GFLOP/s")
    warm, wl, wx = mlp(10, (8, 8), 1, 16)
    engine(warm, wl, wx)
    naive(warm, wl, wx)
    for name in args.cases.split(","):
        print(name)
        t0 = time.perf_counter()
        CASES[name](args)
        print(f"  ({time.perf_counter() - t0:.0f} s for the case)")


if __name__ == "__main__":
    main()
