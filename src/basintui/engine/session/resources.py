"""Memory estimates made before any large allocation, and the guard that refuses what won't fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...config import Preset
from ...limits import (  # noqa: F401 (re-exported)
    DENSE_HESSIAN_MAX_PARAMS,
    SAFETY,
    fmt_bytes,
    RoutePlan,
    choose_route,
    hessian_bytes,
    host_available_bytes,
    input_bytes,
    spectrum_peak_bytes,
)
from ..errors import ResourceError



def available_bytes(device: torch.device) -> int:
    """Memory free for this process now: MemAvailable on Linux, free GPU memory on CUDA."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available_bytes()


@dataclass(frozen=True)
class ResourcePlan:
    n_params: int
    n_train: int
    out_dim: int
    g_bytes: int  # G itself, float64
    peak_bytes: int  # the largest working set of the G + spectrum stages on the route taken
    available: int
    g_method: str  # the spectrum route (limits.ROUTES) or "none"
    hessian_mode: str  # dense | lanczos | off
    hessian_bytes: int
    notes: list[str] = field(default_factory=list)
    forward_bytes: int = 0  # a full-batch forward + backward pass (targets, training, G's factors)
    route: RoutePlan | None = None
    state_bytes: int = 0  # parameters, gradients, optimiser state, teacher (limits.model_state_bytes)
    state_key: str = "model.hidden"  # the preset key that sets the model's size


def plan(preset: Preset, n_params: int, n_train: int, out_dim: int, device: torch.device,
         linear_ok: bool = False, width_sum: int = 0, forward_bytes: int = 0, state_bytes: int = 0) -> ResourcePlan:
    """The route for G's spectrum (limits.choose_route: the cheapest that fits), the Hessian mode, and
    the estimates behind them, before anything is allocated in proportion to k."""
    kd = n_train * out_dim
    g = 8 * n_params * kd
    avail = available_bytes(device)
    route = choose_route(n_params, kd, linear_ok, SAFETY * avail, width_sum=width_sum,
                         forward_bytes=forward_bytes, top_k=preset.analysis.top_k, force=preset.analysis.route)
    notes = [f"spectrum route: {route.why}" + _time_estimate(route.flops, device)]
    if not route.g_fits and any(_stages_on(preset)):
        notes.append(f"G ({fmt_bytes(g)}) will not fit, so the stages that need it "
                     f"({', '.join(_stages_on(preset))}) are skipped; set them off to silence this")
    hb = hessian_bytes(n_params)
    mode, why = choose_hessian_mode(preset.analysis.hessian, n_params, avail, route.peak_bytes)
    if why and route.g_fits:
        notes.append(why)
    state_key = "model.hidden" if preset.model.kind == "mlp" else "model.factory"
    return ResourcePlan(n_params, n_train, out_dim, g, route.peak_bytes, avail, route.route, mode,
                        hb if mode == "dense" else 0, notes, forward_bytes, route, state_bytes, state_key)


def dgemm_gflops(device: torch.device, n: int = 512, reps: int = 4) -> float:
    """This device's float64 matrix-multiply rate now (GFLOP/s): the best of a few n × n products (~20 ms)."""
    import time

    a = torch.randn(n, n, dtype=torch.float64, device=device)
    best = float("inf")
    for _ in range(reps + 1):  # the first warms the threads up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / max(best, 1e-9) / 1e9


def _time_estimate(flops: float, device: torch.device) -> str:
    if flops <= 0:
        return ""
    rate = dgemm_gflops(device)
    seconds = flops / rate / 1e9
    when = "under 0.1 s" if seconds < 0.1 else f"about {seconds:.2g} s"
    return f"; its arithmetic (~{flops / 1e9:.3g} GFLOP) takes {when} at the {rate:.0f} GFLOP/s measured now"


def _stages_on(preset: Preset) -> list[str]:
    a = preset.analysis
    return [name for name, on in (("analysis.hessian", a.hessian != "off"), ("analysis.layers", a.layers),
                                  ("analysis.levelset", a.levelset)) if on]


def choose_hessian_mode(mode: str, n_params: int, available: int, peak: int = 0) -> tuple[str, str]:
    """`auto` → dense for N ≤ DENSE_HESSIAN_MAX_PARAMS when it fits in memory, else lanczos; the
    second value says which was picked and why ("" when the mode was asked for explicitly)."""
    if mode != "auto":
        return mode, ""
    hb = hessian_bytes(n_params)
    if n_params > DENSE_HESSIAN_MAX_PARAMS:
        return "lanczos", (f"hessian = auto: lanczos (N = {n_params} > {DENSE_HESSIAN_MAX_PARAMS}; a dense "
                           f"Hessian would need {fmt_bytes(hb)})")
    if hb > SAFETY * available - peak:
        return "lanczos", (f"hessian = auto: lanczos, because a dense Hessian for N = {n_params} needs about "
                           f"{fmt_bytes(hb)} and only {fmt_bytes(available)} is available")
    return "dense", (f"hessian = auto: dense (N = {n_params} ≤ {DENSE_HESSIAN_MAX_PARAMS}; needs about "
                     f"{fmt_bytes(hb)})")


def check_fits(key: str, what: str, n_bytes: int, device: torch.device, way_out: str) -> None:
    """Refuse an allocation of `n_bytes` that would not fit, naming the estimate and the way out."""
    avail = available_bytes(device)
    if n_bytes > SAFETY * avail:
        raise ResourceError(key, f"{what} needs about {fmt_bytes(n_bytes)} but only {fmt_bytes(avail)} is "
                                 f"available on {device.type}; {way_out}", n_bytes)


def check_inputs_fit(n_inputs: int, dim: int, key: str = "data.n") -> None:
    """Refuse, before they are made, training inputs that would not fit in host memory."""
    need = input_bytes(n_inputs, dim)
    avail = host_available_bytes()
    if need > SAFETY * avail:
        raise ResourceError(key, f"{n_inputs} training inputs of dimension {dim} need about {fmt_bytes(need)} "
                                 f"(k × dim float64 numbers, four copies while they are made and moved), but only "
                                 f"{fmt_bytes(avail)} is available; use fewer inputs (data.n, data.duplicates) or "
                                 "a smaller dimension (data.dim). Nothing was allocated yet.", need)


def guard(p: ResourcePlan) -> None:
    """Refuse, with the estimate and the way out, a run whose forward pass or G stage would not fit."""
    if p.forward_bytes > SAFETY * p.available:
        raise ResourceError(
            "data.n",
            f"a forward and backward pass over the k = {p.n_train} training inputs needs about "
            f"{fmt_bytes(p.forward_bytes)}, but only {fmt_bytes(p.available)} is available. Use fewer training "
            f"inputs (data.n) or a narrower model (model.hidden).",
            p.forward_bytes,
        )
    if p.state_bytes and p.state_bytes + p.forward_bytes > SAFETY * p.available:
        way_out = ("a narrower or shallower model (model.hidden)" if p.state_key == "model.hidden" else
                   "a smaller model from the factory (model.factory)")
        alone = p.state_bytes > SAFETY * p.available
        key = p.state_key if alone or p.state_bytes >= p.forward_bytes else "data.n"
        raise ResourceError(
            key,
            f"the model has N = {p.n_params:,} parameters: they, their gradients and the optimiser's state need "
            f"about {fmt_bytes(p.state_bytes)}" + ("" if alone else
                                                    f", and a forward and backward pass over the k = {p.n_train} "
                                                    f"inputs {fmt_bytes(p.forward_bytes)} more") +
            f", but only {fmt_bytes(p.available)} is available ({fmt_bytes(SAFETY * p.available)} usable). "
            f"Use {way_out}" + ("" if alone else " or fewer training inputs (data.n)") +
            ". Nothing was allocated yet.",
            p.state_bytes + (0 if alone else p.forward_bytes),
        )
    if p.g_method == "none":
        key = p.route.key if p.route else "data.n"
        why = p.route.why if p.route else ""
        if key != "data.n":
            raise ResourceError(key, why + ". Nothing was computed yet.", p.peak_bytes)
        raise ResourceError(
            key,
            f"G is {p.n_params} × {p.n_train * p.out_dim} (N × kd) and no route to its spectrum fits: {why}. "
            f"Use fewer training inputs (data.n) or a smaller model (model.hidden).",
            p.peak_bytes,
        )
    if p.route is not None and not p.route.g_fits:
        return  # the stages after the spectrum are skipped (G does not fit), the Hessian with them
    if p.hessian_mode == "dense" and p.hessian_bytes > SAFETY * p.available - p.peak_bytes:
        raise ResourceError(
            "analysis.hessian",
            f"a dense Hessian for N = {p.n_params} needs about {fmt_bytes(p.hessian_bytes)} "
            f"({p.hessian_bytes} bytes: H, GGN and H − GGN in float64 plus eigh's workspace, 32·N² bytes), "
            f"but only {fmt_bytes(p.available)} is available; use analysis.hessian = \"lanczos\" (extreme "
            f"eigenvalues and a spectral density from Hessian-vector products) or \"off\". Nothing was "
            f"computed yet.",
            p.hessian_bytes,
        )
