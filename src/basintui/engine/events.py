"""Frozen dataclasses the session emits, in order. Progress events carry snapshots, not deltas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """A stage started (`done` False) or finished (`done` True, with its seconds)."""

    name: str
    done: bool = False
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class TrainStep:
    step: int
    total: int
    loss: float
    elapsed: float


@dataclass(frozen=True)
class RankProbe:
    """rank(G) measured during training on the training inputs."""

    step: int
    rank: int
    sigma_max: float
    sigma_min: float
    tolerance: float


@dataclass(frozen=True)
class Note:
    """Something the user should read: a fallback taken, a warning, a plan (level: info|warn)."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class Plan:
    """What the run will compute, before it starts: sizes and memory estimates."""

    n_params: int
    n_train: int
    out_dim: int
    g_bytes: int
    method: str
    hessian: str
    hessian_bytes: int
    peak_bytes: int = 0  # the G + spectrum stages' working set for the route taken


@dataclass(frozen=True)
class Partial:
    """The report so far (its JSON form), after an analysis stage: the spectrum can be read while
    the Hessian and the later stages still run."""

    stage: str
    report: dict


@dataclass(frozen=True)
class Finished:
    report: Any  # report.Report
