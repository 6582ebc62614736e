"""Sizes and limits shared by the engine and the app, free of torch so the app can import them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import pairwise

from .config import AnalysisConfig

SAFETY = 0.8  # plans use at most this fraction of the memory available
DENSE_HESSIAN_MAX_PARAMS = 6000  # hessian = auto: a dense N×N Hessian (H, GGN, H − GGN) up to here


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def host_available_bytes() -> int:
    """Memory free for new work on this machine now: MemAvailable on Linux."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**40


def factored_route_applies(n_params: int, kd: int) -> bool:
    """The factored Gram serves a network of Linear layers when its kd × kd Gram is the small side
    (kd ≤ N/4); engine/session/run.py adds the check that the model is such a network."""
    return 4 * kd <= n_params


FORWARD_BACKWARD_COPIES = 3  # a forward and backward pass holds about 3 numbers per number a layer outputs


def forward_pass_bytes(n_inputs: int, numbers_per_input: int, element_size: int) -> int:
    """A full-batch forward and backward pass: about 3× every number the layers output per input."""
    return FORWARD_BACKWARD_COPIES * element_size * n_inputs * numbers_per_input


OPTIMIZER_WORDS = {"adam": 2, "sgd": 0, "lbfgs": 2 * 20 + 4}  # numbers of state per parameter (lbfgs: history 20)


def model_state_bytes(n_params: int, element_size: int, optimizer: str, teacher: bool = False) -> int:
    """Training's standing memory, priced before the model is built: the parameters, their gradients
    and the optimiser's state at the training dtype, a teacher of the same shape when the targets come
    from one, and three float64 copies of θ for the analysis (the float64 model, θ, a probe's copy)."""
    words = 2 + OPTIMIZER_WORDS.get(optimizer, 2) + (1 if teacher else 0)
    return element_size * n_params * words + 3 * 8 * n_params


def input_bytes(n_inputs: int, dim: int) -> int:
    """The training inputs as they are made and moved: the float64 array, the draw it comes from, the
    training tensor and its float64 copy (about four k × dim float64 arrays)."""
    return 4 * 8 * n_inputs * dim


@dataclass(frozen=True)
class MLPShape:
    """What the MLP of a preset will be, known before it is built."""

    n_params: int
    width_sum: int  # Σ (in + out) over its Linear layers
    per_input: int  # numbers its leaf modules output per input (activation_numel of the built model)


def mlp_shape(in_dim: int, hidden: tuple[int, ...] | list[int], out_dim: int, bias: bool, activation: str) -> MLPShape:
    widths = [in_dim, *hidden, out_dim]
    n = sum(a * b + (b if bias else 0) for a, b in pairwise(widths))
    width_sum = sum(a + b for a, b in pairwise(widths))
    per_input = sum(hidden) * (1 if activation == "linear" else 2) + out_dim
    return MLPShape(n, width_sum, per_input)


def hessian_bytes(n_params: int) -> int:
    """Dense Hessian analysis: H, GGN and H − GGN in float64, plus eigh's workspace (~one more)."""
    return 4 * 8 * n_params * n_params


def spectrum_peak_bytes(n_params: int, kd: int, factored: bool, width_sum: int = 0) -> int:
    """The largest working set of the G + spectrum stages for the route the session will take.
    `width_sum`: Σ (in + out) over the Linear layers (the factored route keeps their inputs and
    output gradients)."""
    small = min(n_params, kd)
    if factored:
        # layer inputs and output gradients, the kd × kd Gram, its eigenvectors and eigh's workspace
        return 8 * kd * max(width_sum, 1) * 2 + 4 * 8 * kd * kd
    # G, a copy for the tall orientation / SVD input, the SVD's own workspace, and the small Gram.
    g = 8 * n_params * kd
    return 2 * g + 8 * small * small + 8 * small * max(n_params, kd) // 4


STREAM_BYTES = 256 * 2**20  # one row block of G (or G·V) at a time on the streamed routes
TOP_K = AnalysisConfig.top_k  # singular values the matrix-free route finds (the preset's default)
ROUTES = ("factored", "explicit", "streamed-params", "streamed-inputs", "matfree")


def gram_route_bytes(small: int) -> int:
    """A streamed Gram route: the small × small Gram, its eigenvectors, eigh's workspace and the
    tail's own Gram, plus two row blocks in flight."""
    return 4 * 8 * small * small + 2 * STREAM_BYTES


def matfree_route_bytes(n_params: int, kd: int, top_k: int, forward_bytes: int) -> int:
    """Working set of the matrix-free route (engine/matfree.top_singular_values), in bytes.

    With m = min(N, kd), M = max(N, kd), s' = min(top_k, m − 1) and ncv = min(m, max(2s' + 1, 20))
    (ARPACK's Lanczos basis):

        8 · [ (ncv + 2s') · m        Lanczos basis, the s' Ritz vectors and their QR copy
              + s' · M               G·V, the s' products svds takes a small SVD of
              + ncv² + 8·ncv         ARPACK's projected matrix and work arrays
              + 4 · (N + kd) ]       the vector in and out of a product, numpy and torch copies
        + 2 · forward_bytes          the cached reverse-mode graph and a forward-mode pass

    G, GᵀG and GGᵀ never appear: nothing grows like N·kd."""
    m, big = min(n_params, kd), max(n_params, kd)
    sp = max(1, min(int(top_k), m - 1))
    ncv = min(m, max(2 * sp + 1, 20))
    words = (ncv + 2 * sp) * m + sp * big + ncv * ncv + 8 * ncv + 4 * (n_params + kd)
    return int(8 * words + 2 * int(forward_bytes))


@dataclass(frozen=True)
class RoutePlan:
    """How G's spectrum will be computed, what it needs, and why this route."""

    route: str  # one of ROUTES, or "none" when nothing fits
    peak_bytes: int
    why: str
    g_fits: bool  # whether G itself can be formed for the stages after the spectrum
    flops: float  # the route's dominant arithmetic, for a time estimate
    key: str = "data.n"  # the preset key to change when route is "none"


def choose_route(n_params: int, kd: int, linear_ok: bool, usable: float, *, width_sum: int = 0,
                 forward_bytes: int = 0, top_k: int = TOP_K, force: str = "auto") -> RoutePlan:
    """The cheapest exact route that fits in `usable` bytes, else the matrix-free top of the spectrum.

    1. factored per-layer Gram: a network of Linear layers with kd ≤ N/4 (no G at all);
    2. explicit G + SVD or Gram (G in memory);
    3. factored again for a Linear network with kd ≤ N whose G does not fit;
    4. streamed Gram over parameter chunks (kd ≤ N) or over input chunks (N < kd): G is computed
       block by block, never whole, twice (Gram, then the Ritz tail);
    5. matrix-free svds for the top `top_k` singular values, when no Gram fits.
    `force` (analysis.route) takes one route, refused with its estimate if it does not fit."""
    small, large = min(n_params, kd), max(n_params, kd)
    g = 8 * n_params * kd
    g_fits = 2 * g <= usable
    streamed = streamed_route(n_params, kd)
    peak = {"factored": spectrum_peak_bytes(n_params, kd, True, width_sum),
            "explicit": spectrum_peak_bytes(n_params, kd, False),
            streamed: gram_route_bytes(small),
            "matfree": matfree_route_bytes(n_params, kd, top_k, forward_bytes)}
    gram_flops = float(small) ** 2 * large
    flops = {"factored": float(kd) ** 2 * width_sum + float(kd) ** 3, "explicit": gram_flops + float(small) ** 3,
             streamed: 2 * gram_flops + float(small) ** 3, "matfree": 0.0}
    if force != "auto":
        return _forced(force, n_params, kd, linear_ok, usable, g_fits, top_k, peak, flops)
    factored, explicit, gram, mf = peak["factored"], peak["explicit"], peak[streamed], peak["matfree"]
    if linear_ok and factored_route_applies(n_params, kd) and factored <= usable:
        g_words = (f"G itself ({fmt_bytes(g)}) is formed only for the stages that need it" if g_fits else
                   f"G itself ({fmt_bytes(g)}) does not fit and is never formed")
        return RoutePlan("factored", factored, f"factored per-layer Gram ({kd} × {kd}, {fmt_bytes(factored)}); "
                         + g_words, g_fits, flops["factored"])
    if explicit <= usable:
        return RoutePlan("explicit", explicit, f"explicit G ({n_params} × {kd}, {fmt_bytes(g)}) and its "
                         f"{'Gram' if large >= 2 * small else 'SVD'} ({fmt_bytes(explicit)} at the peak)", True,
                         flops["explicit"])
    if linear_ok and kd <= n_params and factored <= usable:
        return RoutePlan("factored", factored, f"G ({fmt_bytes(g)}) does not fit in {fmt_bytes(usable)}: "
                         f"factored per-layer Gram ({kd} × {kd}, {fmt_bytes(factored)})", False, flops["factored"])
    if gram <= usable:
        over = "parameter chunks" if kd <= n_params else "input chunks"
        return RoutePlan(streamed, gram, f"G ({fmt_bytes(g)}) does not fit in {fmt_bytes(usable)}: its {small} × "
                         f"{small} Gram is summed over {over} ({fmt_bytes(gram)}), G is never whole", False,
                         flops[streamed])
    if mf <= usable:
        return RoutePlan("matfree", mf, f"neither G ({fmt_bytes(g)}) nor its {small} × {small} Gram "
                         f"({fmt_bytes(gram)}) fits in {fmt_bytes(usable)}: matrix-free svds finds the top "
                         f"{top_k} singular values only ({fmt_bytes(mf)})", False, 0.0)
    return RoutePlan("none", min(explicit, gram, mf), f"G needs {fmt_bytes(explicit)}, its Gram "
                     f"{fmt_bytes(gram)} and the matrix-free route {fmt_bytes(mf)}; {fmt_bytes(usable)} is usable",
                     False, 0.0)


def streamed_route(n_params: int, kd: int) -> str:
    """Which streamed route serves G (N × kd): over parameter chunks when its Gram is kd × kd, else over inputs."""
    return "streamed-params" if kd <= n_params else "streamed-inputs"


def _forced(force: str, n_params: int, kd: int, linear_ok: bool, usable: float, g_fits: bool, top_k: int,
            peak: dict[str, int], flops: dict[str, float]) -> RoutePlan:
    small = min(n_params, kd)
    if force == "factored" and not (linear_ok and kd <= n_params):
        return RoutePlan("none", 0, "analysis.route = factored needs a network of Linear layers and elementwise "
                         f"activations with kd ≤ N (here N = {n_params}, kd = {kd}{'' if linear_ok else ', and the model is not one'})",
                         False, 0.0, key="analysis.route")
    if force == "matfree" and top_k >= small:
        return RoutePlan("none", 0, f"analysis.top_k = {top_k} must be below min(N, kd) = {small} for the "
                         "matrix-free route (use another route to get every singular value)", False, 0.0,
                         key="analysis.top_k")
    route = streamed_route(n_params, kd) if force == "streamed" else force
    if peak[route] > usable:
        return RoutePlan("none", peak[route], f"analysis.route = {force} needs about {fmt_bytes(peak[route])} and "
                         f"{fmt_bytes(usable)} is usable", False, 0.0, key="analysis.route")
    return RoutePlan(route, peak[route], f"{force}, as analysis.route asks ({fmt_bytes(peak[route])})",
                     g_fits if route != "explicit" else True, flops[route])
