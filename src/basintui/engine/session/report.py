"""The result of a run, its typed form (`Report.to_schema()` -> basintui.schema.Report, JSON schema
basintui.report/2) and atomic JSON/NPZ writers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ... import schema
from ...schema.plan import Plan
from ...schema.report import (
    SCHEMA,
    decode_report,
    encode_report,
    load_report,
    report_to_builtins,
)
from ...atomic import write_atomic
from ...schema.events import RankProbe
from ..numerics.spectrum import Spectrum

__all__ = ["SCHEMA", "DataInfo", "ModelInfo", "Report", "ReportSchemaError", "TrainingInfo", "decode_report",
           "interpret", "json_bytes", "load_json", "load_report", "spectrum_dict", "write_json", "write_npz"]


@dataclass(frozen=True)
class ModelInfo:
    n_params: int
    kind: str
    description: str
    blocks: list[dict[str, Any]]
    params: list[dict[str, Any]]
    sequential: bool
    why_not_sequential: str
    factory_file: str | None = None  # model.kind = python: the file the factory was imported from
    checkpoint: str | None = None  # model.checkpoint as the preset gave it (None: no checkpoint)
    checkpoint_path: str | None = None  # the file it resolved to
    checkpoint_sha256: str | None = None  # SHA-256 of the bytes that were loaded


@dataclass(frozen=True)
class DataInfo:
    n_train: int
    out_dim: int
    in_dim: int
    description: str
    targets: str
    duplicate_of: dict[int, int]


@dataclass
class TrainingInfo:
    final_loss: float
    steps: int
    status: str
    message: str
    losses: list[float]
    seconds: float
    reduction: str
    rank_history: list[RankProbe] = field(default_factory=list)
    cancelled_stage: str | None = None  # status cancelled: the stage that was running (data, train, jacobian, …)


@dataclass
class Report:
    config: dict[str, Any]
    device: str
    model: ModelInfo
    data: DataInfo
    training: TrainingInfo
    G: Spectrum | None = None
    G_route: str = ""
    G_on: str = "outputs"
    hessian: Any = None  # object with to_dict(), or None when off / not computed
    layers: Any = None  # list of per-block results with to_dict(), or None
    dependent_inputs: Any = None
    levelset: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: dict[str, Any] | schema.RunError | None = None  # {"kind", "key"?, "message"}
    theta: np.ndarray | None = None  # the analysed parameters (float64)
    plan: Plan | None = None  # the planner's decision for this run (report.plan)
    layers_info: dict[str, Any] | schema.LayersInfo | None = None  # how the layers table was made
    skipped: dict[str, str] | None = None  # stage -> why it was skipped (G does not fit in memory)
    symmetry: Any = None  # beyond the rank (issue 18): sections with to_dict() or plain data, None when off
    soft: Any = None
    probe: Any = None
    llc: Any = None
    slice: Any = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # NPZ-only arrays (llc_traces, slice_*)

    @property
    def status(self) -> str:
        return self.training.status

    def to_schema(self) -> schema.Report:
        """The typed report. Every section is validated here, at the engine's boundary: a value of the wrong
        type, or a key the schema does not have, raises ReportSchemaError naming it."""
        raw = self._raw()
        try:
            typed = msgspec.convert(raw, schema.Report, strict=False)
        except msgspec.ValidationError as exc:
            raise ReportSchemaError(f"the engine's report does not fit the schema: {exc}") from None
        dropped = _dropped_keys(raw, msgspec.to_builtins(typed))
        if dropped:
            raise ReportSchemaError("the engine's report has keys the schema does not: " + ", ".join(dropped))
        return typed

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON form (plain data): report_to_builtins(to_schema())."""
        return report_to_builtins(self.to_schema())

    def _raw(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "config": self.config,
            "device": self.device,
            "model": _model_dict(self.model),
            "data": _data_dict(self.data),
            "training": _training_dict(self.training),
            "G": spectrum_dict(self.G, self.G_route, self.G_on, self.plan.route if self.plan is not None else None)
            if self.G is not None else None,
            "hessian": _maybe(self.hessian),
            "layers": _maybe(self.layers),
            "dependent_inputs": _maybe(self.dependent_inputs),
            "levelset": _maybe(self.levelset),
            "timings": dict(self.timings),
            "notes": list(self.notes),
            "error": _maybe(self.error),
            "layers_info": _maybe(self.layers_info),
            "skipped": None if self.skipped is None else dict(self.skipped),
            "plan": _maybe(self.plan),
            **{key: _maybe(getattr(self, key)) for key in BEYOND},
        }
        return _clean(out)


BEYOND = ("symmetry", "soft", "probe", "llc", "slice")  # the sections beyond the rank (issue 18)


class ReportSchemaError(ValueError):
    """The engine built a report the schema does not describe (a bug in the engine or the schema)."""


def _model_dict(m: ModelInfo) -> dict[str, Any]:
    return {"n_params": m.n_params, "kind": m.kind, "description": m.description, "blocks": m.blocks,
            "params": m.params, "sequential": m.sequential, "why_not_sequential": m.why_not_sequential or None,
            "factory_file": m.factory_file, "checkpoint": m.checkpoint, "checkpoint_path": m.checkpoint_path,
            "checkpoint_sha256": m.checkpoint_sha256}


def _data_dict(d: DataInfo) -> dict[str, Any]:
    return {"n_train": d.n_train, "out_dim": d.out_dim, "in_dim": d.in_dim, "description": d.description,
            "targets": d.targets, "duplicate_of": {str(k): v for k, v in d.duplicate_of.items()}}


def _training_dict(t: TrainingInfo) -> dict[str, Any]:
    return {
        "final_loss": t.final_loss, "steps": t.steps, "status": t.status, "cancelled_stage": t.cancelled_stage,
        "message": t.message, "reduction": t.reduction, "seconds": t.seconds, "losses": t.losses,
        "rank_history": [{"step": p.step, "rank": p.rank, "sigma_max": p.sigma_max, "sigma_min": p.sigma_min,
                          "tolerance": p.tolerance} for p in t.rank_history],
    }


def _dropped_keys(raw: Any, typed: Any, path: str = "$") -> list[str]:
    """Keys of `raw` (the engine's plain data) that the typed form lost: fields the schema lacks."""
    if isinstance(raw, dict) and isinstance(typed, dict):
        out = []
        for key, value in raw.items():
            if key not in typed:
                out.append(f"{path}.{key}")
            else:
                out += _dropped_keys(value, typed[key], f"{path}.{key}")
        return out
    if isinstance(raw, list) and isinstance(typed, list):
        return [k for i, (a, b) in enumerate(zip(raw, typed)) for k in _dropped_keys(a, b, f"{path}[{i}]")]
    return []


def spectrum_dict(s: Spectrum, route: str, on: str, route_word: str | None = None) -> dict[str, Any]:
    """G's section: `route` is how G was reached in words, `route_word` the planner's route (plan.route)."""
    gap = s.largest_gap
    return {
        "singular_values": s.singular_values.tolist(),
        "tolerance": s.tolerance,
        "tolerance_rule": s.tolerance_rule,
        "rank": s.rank,
        "rank_at_rtol": dict(s.rank_at_rtol),
        "largest_gap": None if gap is None else {
            "decades": gap.decades, "after": gap.after, "above": gap.above, "below": gap.below},
        "effective_rank": s.effective_rank,
        "regime": s.regime,
        "submersion": s.submersion,
        "kernel_dim": s.kernel_dim,
        "generic_dim": s.generic_dim,
        "rank_deficiency": s.rank_deficiency,
        "n_params": s.n_params,
        "n_outputs": s.n_outputs,
        "method": f"{route} + {s.method}" if route else s.method,
        "on": on,
        "meaning": interpret(s),
        "complete": s.complete,
        "rank_exact": s.rank_exact,
        "rank_at_rtol_exact": None if s.rank_at_rtol_exact is None else dict(s.rank_at_rtol_exact),
        "rank_rule": s.rule.to_dict(),
        "near_threshold": s.near_threshold,
        "route": route_word,
    }


def interpret(s: Spectrum) -> list[str]:
    """What the rank means, in words (DESIGN §1), with the caveats the critique insists on."""
    N, kd, r = s.n_params, s.n_outputs, s.rank
    if not s.complete:
        return _interpret_top(s)
    lines = [f"rank(G) = {r} of at most min(N, kd) = {min(N, kd)} (N = {N} parameters, kd = {kd} outputs)."]
    if r == 0:
        lines.append("rank(G) = 0: every behavioural gradient vanishes at θ, so to first order no parameter moves "
                     "any output. The rank says nothing about the level set's dimension here: at such a point it "
                     "can be a point, a curve or everything (seed 003: f = a² + b², a², 0 at the origin all have "
                     "rank 0); analysis.levelset measures it.")
    if s.regime == "under":
        lines.append(
            f"Under-parameterised (N < kd): F is never a submersion. Where the rank is locally constant, "
            f"rank(G) = {r} is the local dimension of the image of parameter space in behaviour space R^{kd}; "
            f"where it drops, nearby points have a higher rank.")
    else:
        lines.append(
            f"Kernel dimension N − r = {s.kernel_dim}: an upper bound on the dimension of any smooth piece of "
            f"the set of parameters with the same behaviour on the training set (Claim 2). It equals that "
            f"dimension only where the rank is locally constant (constant-rank theorem).")
        if s.submersion:
            lines.append(f"Full rank: F is a submersion here, so the behaviour level set is a manifold of the "
                         f"generic dimension N − kd = {s.generic_dim} near θ.")
        else:
            lines.append(f"Rank-deficient by {s.rank_deficiency}: the behavioural gradients are linearly dependent; "
                         f"the bound {s.kernel_dim} exceeds the generic dimension N − kd = {s.generic_dim}.")
    near = s.near_threshold
    if near:
        lines.append(f"{near} singular value{'s lie' if near > 1 else ' lies'} within a factor 2 of the tolerance "
                     f"({s.tolerance:.3g}): the rank there is decided by rounding, anywhere from "
                     f"{s.rank_at(s.tolerance * 2)} to {s.rank_at(s.tolerance / 2)}.")
    at = s.rank_at_rtol
    if len(set(at.values()) | {r}) > 1:
        lines.append("The rank depends on the tolerance: " + ", ".join(f"{v} at rtol {k}" for k, v in at.items())
                     + f"; {r} at the tolerance used ({s.tolerance:.3g}).")
    return lines


def _interpret_top(s: Spectrum) -> list[str]:
    """The words for a spectrum known only at its top (the matrix-free route)."""
    N, kd, r, found = s.n_params, s.n_outputs, s.rank, len(s.singular_values)
    lines = [(f"Only the top {found} of min(N, kd) = {min(N, kd)} singular values were computed, by the "
              f"matrix-free route (N = {N} parameters, kd = {kd} outputs); the run's notes say why.")]
    if s.rank_exact:
        lines.append(f"rank(G) = {r} exactly: σ_{found} = {s.singular_values[-1]:.3g} is at or below the tolerance "
                     f"{s.tolerance:.3g}, so every smaller singular value is too. Kernel dimension N − r = "
                     f"{s.kernel_dim} bounds the behaviour level set's dimension (Claim 2).")
    else:
        lines.append(f"rank(G) ≥ {r}: all {found} values found exceed the tolerance {s.tolerance:.3g}, so the rank "
                     f"is only bounded below, and N − r ≤ {s.kernel_dim} bounds the kernel from above. Raise "
                     f"analysis.top_k, or use fewer inputs so that a Gram fits, to get the rank itself.")
    at = s.rank_at_rtol
    exact = s.rank_at_rtol_exact or {}
    lines.append("At other tolerances: " + ", ".join(f"{'' if exact.get(k, True) else '≥ '}{v} at rtol {k}"
                                                     for k, v in at.items()) + ".")
    return lines


def _maybe(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, msgspec.Struct):
        return msgspec.to_builtins(x)
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, (list, tuple)):
        return [_maybe(v) for v in x]
    return x


def _clean(x: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to strings JSON can carry."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


AnyReport = Report | schema.Report | dict[str, Any]


def as_schema(report: AnyReport) -> schema.Report:
    """The typed report of an engine Report, a schema.Report, or a report's JSON form (validated)."""
    if isinstance(report, Report):
        return report.to_schema()
    if isinstance(report, schema.Report):
        return report
    return decode_report(report)


def json_bytes(report: AnyReport) -> bytes:
    """The report's JSON text, as written to a file or stdout (encode_report of its typed form)."""
    return encode_report(as_schema(report))


def write_json(report: AnyReport, path: str | os.PathLike) -> Path:
    data = json_bytes(report)
    return write_atomic(path, lambda fh: fh.write(data))


def write_npz(report: AnyReport, path: str | os.PathLike) -> Path:
    if not isinstance(report, Report):
        return write_atomic(path, lambda fh: np.savez(fh, **_npz_from_schema(as_schema(report))))
    arrays: dict[str, np.ndarray] = {
        "losses": np.asarray(report.training.losses, dtype=np.float64),
        "rank_history": np.asarray([[p.step, p.rank, p.sigma_max, p.sigma_min]
                                    for p in report.training.rank_history], dtype=np.float64).reshape(-1, 4),
    }
    if report.G is not None:
        arrays["singular_values"] = report.G.singular_values
    if report.theta is not None:
        arrays["theta"] = report.theta
    hess = report.hessian
    if hess is not None and getattr(hess, "eigenvalues", None) is not None:
        arrays["hessian_eigenvalues"] = np.asarray(hess.eigenvalues, dtype=np.float64)
    arrays.update({k: np.asarray(v, dtype=np.float64) for k, v in report.arrays.items()})
    return write_atomic(path, lambda fh: np.savez(fh, **arrays))


def _npz_from_schema(r: schema.Report) -> dict[str, np.ndarray]:
    """The NPZ arrays a typed report holds (no parameters: θ is not in the JSON)."""
    t = r.training
    arrays = {
        "losses": np.asarray(t.losses, dtype=np.float64),
        "rank_history": np.asarray([[p.step, p.rank, p.sigma_max, p.sigma_min] for p in t.rank_history],
                                   dtype=np.float64).reshape(-1, 4),
    }
    if r.G is not None:
        arrays["singular_values"] = np.asarray(r.G.singular_values, dtype=np.float64)
    if r.hessian is not None:
        arrays["hessian_eigenvalues"] = np.asarray(r.hessian.eigenvalues, dtype=np.float64)
    if r.slice is not None and r.slice.loss:  # the grid (the directions u, v are only in a run's own NPZ)
        arrays.update(slice_loss=np.asarray(r.slice.loss, dtype=np.float64),
                      slice_u=np.asarray(r.slice.a, dtype=np.float64), slice_v=np.asarray(r.slice.b, dtype=np.float64))
    return arrays


def load_json(path: str | os.PathLike) -> dict[str, Any]:
    """A report file's JSON form as plain data, validated (load_report gives the typed report)."""
    return report_to_builtins(load_report(path))
