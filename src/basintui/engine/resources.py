"""Memory estimates made before any large allocation, and the guard that refuses what won't fit."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from ..config import Preset
from ..limits import (  # noqa: F401 (re-exported)
    DENSE_HESSIAN_MAX_PARAMS,
    fmt_bytes,
    hessian_bytes,
    spectrum_peak_bytes,
)
from .errors import ResourceError

SAFETY = 0.8  # use at most this fraction of the memory available


def available_bytes(device: torch.device) -> int:
    """Memory free for this process now: MemAvailable on Linux, free GPU memory on CUDA."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
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


@dataclass(frozen=True)
class ResourcePlan:
    n_params: int
    n_train: int
    out_dim: int
    g_bytes: int  # G itself, float64
    peak_bytes: int  # the largest working set of the G + spectrum stages
    available: int
    g_method: str
    hessian_mode: str  # dense | lanczos | off
    hessian_bytes: int
    notes: list[str] = field(default_factory=list)
    forward_bytes: int = 0  # a full-batch forward + backward pass (targets, training, G's factors)


def plan(preset: Preset, n_params: int, n_train: int, out_dim: int, device: torch.device,
         factored: bool = False, width_sum: int = 0, forward_bytes: int = 0) -> ResourcePlan:
    kd = n_train * out_dim
    g = 8 * n_params * kd
    peak = spectrum_peak_bytes(n_params, kd, factored, width_sum)
    notes = []
    if factored:
        notes.append(f"spectrum by the factored Gram (kd × kd = {kd} × {kd}, about {fmt_bytes(peak)}); "
                     f"G itself ({fmt_bytes(g)}) is formed only for the stages that need it")
    hb = hessian_bytes(n_params)
    avail = available_bytes(device)
    mode, why = choose_hessian_mode(preset.analysis.hessian, n_params, avail, peak)
    if why:
        notes.append(why)
    return ResourcePlan(n_params, n_train, out_dim, g, peak, avail, "factored" if factored else "explicit", mode,
                        hb if mode == "dense" else 0, notes, forward_bytes)


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
    if p.peak_bytes > SAFETY * p.available:
        raise ResourceError(
            "data.n",
            f"G is {p.n_params} × {p.n_train * p.out_dim} (N × kd) and its spectrum needs about "
            f"{fmt_bytes(p.peak_bytes)}, but only {fmt_bytes(p.available)} is available. Use fewer training "
            f"inputs (data.n) or a smaller model (model.hidden).",
            p.peak_bytes,
        )
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
