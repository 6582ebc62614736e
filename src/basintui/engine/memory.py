"""Memory estimates made before any large allocation, and the guard that refuses what won't fit."""

from __future__ import annotations

import torch

from ..config import Preset
from ..limits import SAFETY, fmt_bytes, host_available_bytes, input_bytes
from ..planner import Sizes
from ..planner import plan as plan_sizes
from ..schema.plan import Plan
from .errors import ResourceError

__all__ = ["available_bytes", "check_fits", "check_inputs_fit", "dgemm_gflops", "fmt_bytes",
           "guard", "plan"]


def available_bytes(device: torch.device) -> int:
    """Memory free for this process now: MemAvailable on Linux, free GPU memory on CUDA."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available_bytes()


def plan(preset: Preset, n_params: int, n_train: int, out_dim: int, device: torch.device,
         linear_ok: bool = False, width_sum: int = 0, forward_bytes: int = 0, state_bytes: int = 0) -> Plan:
    """The planner's decision for the sizes of the model the session built, with this device's free
    memory and float64 matrix-multiply rate (for the time estimate), before anything is allocated in
    proportion to k."""
    sizes = Sizes(n_params, n_train, out_dim, linear_ok=linear_ok, width_sum=width_sum,
                  forward_bytes=forward_bytes, state_bytes=state_bytes)
    return plan_sizes(preset, sizes, available_bytes(device), gflops=dgemm_gflops(device))


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


def guard(p: Plan) -> None:
    """Refuse, with the estimate and the way out, a run whose forward pass, training state, G stage or
    dense Hessian would not fit."""
    _guard_forward(p)
    _guard_state(p)
    _guard_route(p)
    if p.g_fits:  # else the stages after the spectrum are skipped (G does not fit), the Hessian with them
        _guard_hessian(p)


def _guard_forward(p: Plan) -> None:
    if p.forward_bytes > SAFETY * p.available_bytes:
        raise ResourceError(
            "data.n",
            f"a forward and backward pass over the k = {p.n_train} training inputs needs about "
            f"{fmt_bytes(p.forward_bytes)}, but only {fmt_bytes(p.available_bytes)} is available. Use fewer "
            f"training inputs (data.n) or a narrower model (model.hidden).",
            p.forward_bytes,
        )


def _guard_state(p: Plan) -> None:
    avail = p.available_bytes
    if not p.state_bytes or p.state_bytes + p.forward_bytes <= SAFETY * avail:
        return
    way_out = ("a narrower or shallower model (model.hidden)" if p.state_key == "model.hidden" else
               "a smaller model from the factory (model.factory)")
    alone = p.state_bytes > SAFETY * avail
    key = p.state_key if alone or p.state_bytes >= p.forward_bytes else "data.n"
    raise ResourceError(
        key,
        f"the model has N = {p.n_params:,} parameters: they, their gradients and the optimiser's state need "
        f"about {fmt_bytes(p.state_bytes)}" + ("" if alone else
                                                f", and a forward and backward pass over the k = {p.n_train} "
                                                f"inputs {fmt_bytes(p.forward_bytes)} more") +
        f", but only {fmt_bytes(avail)} is available ({fmt_bytes(SAFETY * avail)} usable). "
        f"Use {way_out}" + ("" if alone else " or fewer training inputs (data.n)") +
        ". Nothing was allocated yet.",
        p.state_bytes + (0 if alone else p.forward_bytes),
    )


def _guard_route(p: Plan) -> None:
    if p.route != "none":
        return
    if p.route_key != "data.n":
        raise ResourceError(p.route_key, p.route_why + ". Nothing was computed yet.", p.peak_bytes)
    raise ResourceError(
        "data.n",
        f"G is {p.n_params} × {p.kd} (N × kd) and no route to its spectrum fits: {p.route_why}. "
        f"Use fewer training inputs (data.n) or a smaller model (model.hidden).",
        p.peak_bytes,
    )


def _guard_hessian(p: Plan) -> None:
    if p.hessian_mode == "dense" and p.hessian_bytes > SAFETY * p.available_bytes - p.peak_bytes:
        raise ResourceError(
            "analysis.hessian",
            f"a dense Hessian for N = {p.n_params} needs about {fmt_bytes(p.hessian_bytes)} "
            f"({p.hessian_bytes} bytes: H, GGN and H − GGN in float64 plus eigh's workspace, 32·N² bytes), "
            f"but only {fmt_bytes(p.available_bytes)} is available; use analysis.hessian = \"lanczos\" (extreme "
            f"eigenvalues and a spectral density from Hessian-vector products) or \"off\". Nothing was "
            f"computed yet.",
            p.hessian_bytes,
        )
