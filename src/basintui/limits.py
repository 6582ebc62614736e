"""Sizes and limits shared by the engine and the app, free of torch so the app can import them."""

from __future__ import annotations

DENSE_HESSIAN_MAX_PARAMS = 6000  # hessian = auto: a dense N×N Hessian (H, GGN, H − GGN) up to here


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def factored_route_applies(n_params: int, kd: int) -> bool:
    """The factored Gram serves a network of Linear layers when its kd × kd Gram is the small side
    (kd ≤ N/4); engine/session.py adds the check that the model is such a network."""
    return 4 * kd <= n_params


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
