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
