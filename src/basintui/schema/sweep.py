"""A sweep's records, torch-free: one journal row per finished run (`DIR/runs.jsonl`) and the summary
(`DIR/sweep.json`, schema `basintui.sweep/1`).

A row's `point` maps each grid key to its value; (point, seed) names a run. The rank verdicts are
decided where the report is read (basintui.sweep.verdicts) and stored with the raw counts they came from,
so a reader can check them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

SWEEP_SCHEMA = "basintui.sweep/1"
RunStatus = Literal["ok", "failed", "cancelled"]


class RunRow(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One line of runs.jsonl: a run that finished (ok), failed after its retry, or was cancelled."""

    point: dict[str, Any]
    seed: int
    status: RunStatus
    attempts: int
    rank: int | None = None
    kernel_dim: int | None = None
    generic_dim: int | None = None
    n_params: int | None = None
    n_outputs: int | None = None
    near_threshold: int | None = None  # G's singular values within a factor 2 of the rank threshold
    weyl_outside_band: int | None = None  # None: the Hessian was off (or not computed)
    seconds: float | None = None  # wall time of the run in its worker, start-up excluded
    error: str | None = None
    report: str | None = None  # the full report's path (--keep-reports)
    rank_exact: bool | None = None  # False: `rank` is a lower bound (matfree route)
    weyl_outside_band_exact: bool | None = None  # False: the Weyl count is a lower bound (Lanczos)
    full_rank: int | None = None  # min(N, kd): G's rank when its columns are independent
    hessian_full_rank: int | None = None  # the most eigenvalues of H the Weyl count can find outside the band
    g_deficient: bool | None = None  # rank < full_rank; None when undecided (a lower bound below full)
    hessian_deficient: bool | None = None  # weyl_outside_band < hessian_full_rank; None when off or undecided
    engine_seconds: float | None = None  # the report's own `total` timing
    training_status: str | None = None
    final_loss: float | None = None
    worker: str | None = None  # host:pid of the process that ran it


class Interval(msgspec.Struct, kw_only=True):
    """A fraction with its 95% Wilson score interval; all None when no run decided it."""

    count: int  # runs for which the verdict is true
    of: int  # runs for which it was decided
    fraction: float | None
    low: float | None
    high: float | None


class PointSummary(msgspec.Struct, kw_only=True):
    point: dict[str, Any]
    runs: int  # rows with status ok
    failed: int
    cancelled: int
    missing: int  # seeds asked for with no row at all
    n_params: int | None  # None when the runs disagree or none finished
    n_outputs: int | None
    overparam_ratio: float | None  # N / (k·d)
    g_deficient: Interval
    hessian_deficient: Interval
    mean_excess_kernel: float | None  # mean of kernel_dim − generic_dim over ok runs with a generic dimension
    near_threshold_runs: int  # ok runs with at least one singular value of G near the threshold
    mean_seconds: float | None


class SweepSummary(msgspec.Struct, kw_only=True):
    schema: Literal["basintui.sweep/1"] = SWEEP_SCHEMA
    preset: str
    sets: list[str]
    grid: dict[str, list[Any]]
    seeds: list[int]
    backend: str
    complete: bool  # every (point, seed) has an ok or failed row
    definitions: dict[str, str]
    points: list[PointSummary]


def encode_row(row: RunRow) -> bytes:
    return msgspec.json.encode(row)


def decode_row(line: bytes | str) -> RunRow:
    return msgspec.json.decode(line, type=RunRow)


def encode_summary(summary: SweepSummary) -> bytes:
    return msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n"


def decode_summary(data: bytes | str) -> SweepSummary:
    return msgspec.json.decode(data, type=SweepSummary)


__all__ = [
    "SWEEP_SCHEMA",
    "Interval",
    "PointSummary",
    "RunRow",
    "RunStatus",
    "SweepSummary",
    "decode_row",
    "decode_summary",
    "encode_row",
    "encode_summary",
]
