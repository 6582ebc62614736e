"""The one event type that crosses from the engine to the app (and the CLI's progress lines).

msgspec Structs, a tagged union (`Event`): the engine constructs them (positionally for the progress
events), the engine process puts them on the queue as they are (they pickle; `encode_event` /
`decode_event` give the msgpack form), and the app receives each inside one Textual message.
Progress events carry snapshots, not deltas. Torch-free.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .plan import Plan
from .report import Report


class _Event(msgspec.Struct, frozen=True, tag=True):
    """Base: every event is tagged with its class name (`"type"` in the encoded form)."""


class Stage(_Event):
    """A stage started (`done` False) or finished (`done` True, with its seconds)."""

    name: str
    done: bool = False
    seconds: float = 0.0
    detail: str = ""


class TrainStep(_Event):
    """One optimiser step (the engine emits every step; the bridge sends `TrainProgress` snapshots)."""

    step: int
    total: int
    loss: float
    elapsed: float


class TrainProgress(_Event):
    """A snapshot of training: the latest step and the (decimated) loss history up to it."""

    step: int
    total: int
    loss: float
    elapsed: float
    steps: tuple[int, ...] = ()
    losses: tuple[float, ...] = ()


class RankProbe(_Event):
    """rank(G) measured during training on the training inputs."""

    step: int
    rank: int
    sigma_max: float
    sigma_min: float
    tolerance: float


class StageProgress(_Event):
    """How far a stage has got: `done` of `total` units (columns, iterations, blocks, steps), the
    seconds it has run and an estimate of the seconds left (None when nothing can be said yet).

    Emitted at least once a second while a stage runs (a snapshot: a newer one replaces an older
    one still queued). `eta_source` says where the estimate comes from: the planner's estimate
    before any work was measured ("plan"), or the measured rate ("measured")."""

    name: str
    done: float
    total: float
    unit: str = ""
    elapsed: float = 0.0
    eta: float | None = None
    eta_source: Literal["plan", "measured", "none"] = "none"


class Note(_Event):
    """Something the user should read: a fallback taken, a warning, a plan."""

    text: str
    level: Literal["info", "warn"] = "info"


class PlanReady(_Event):
    """What the run will compute (the planner's Plan), decided before anything large is allocated."""

    plan: Plan


class Partial(_Event):
    """The report so far, after an analysis stage: the spectrum can be read while the Hessian and the
    later stages still run."""

    stage: str
    report: Report


class Finished(_Event):
    """The run's report (the last event of a run that returned)."""

    report: Report


class Failed(_Event):
    """The run raised: `kind` is input (the preset cannot be run as asked) or runtime."""

    kind: Literal["input", "runtime"]
    message: str
    details: str = ""


Event = Stage | StageProgress | TrainStep | TrainProgress | RankProbe | Note | PlanReady | Partial | Finished | Failed

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """The msgpack form of an event (what may cross a process boundary as bytes)."""
    return _ENCODER.encode(event)


def decode_event(data: bytes) -> Event:
    """An event from its msgpack form, validated against the union."""
    return _DECODER.decode(data)
