"""Shared helpers for the benchmarks: peak-memory windows and a DGEMM speed measurement."""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager

import numpy as np
import torch


def _vm(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def peak_rss():
    """Peak resident memory (bytes) inside the block: resets VmHWM first (Linux)."""
    box = {"peak": 0, "seconds": 0.0}
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - t0
    box["peak"] = _vm("VmHWM")


def dgemm_gflops(n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n))
    a @ a
    t0 = time.perf_counter()
    a @ a
    return 2 * n**3 / (time.perf_counter() - t0) / 1e9


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, numpy {np.__version__}")
