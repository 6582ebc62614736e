"""What a run will compute, decided once, before anything large is allocated: the Plan.

The torch-free planner (`basintui.planner.plan`) fills it, from the preset alone for the Setup pane
and the CLI, or from the sizes of the built model for the engine (`engine/session/resources.plan`).
It travels in the PlanReady event and in the report (`report.plan`). Torch-free, JSON-friendly.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Route = Literal["factored", "explicit", "streamed-params", "streamed-inputs", "matfree", "none"]
HessianMode = Literal["dense", "lanczos", "off"]
StateKey = Literal["model.hidden", "model.factory"]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The route to G's spectrum, the Hessian mode, the memory and time estimates behind them.

    `known` is False when the sizes can only be measured by the run (a data file, a model factory):
    the size fields are then None and `why_unknown` says what is missing."""

    known: bool = True
    why_unknown: str = ""
    n_params: int | None = None  # N
    n_train: int | None = None  # k, duplicates included
    out_dim: int | None = None  # d
    kd: int | None = None
    linear_ok: bool = False  # a network of Linear layers and elementwise activations (the factored route)
    route: Route | None = None  # limits.ROUTES, or "none" when nothing fits; None when unknown
    route_why: str = ""
    route_key: str = "data.n"  # the preset key to change when route is "none"
    g_fits: bool = False  # whether G itself can be formed for the stages after the spectrum
    hessian_mode: HessianMode | None = None  # `auto` resolved; None when unknown
    hessian_why: str = ""  # how `auto` was resolved ("" when the preset asked for a mode)
    g_bytes: int | None = None  # G itself, float64 (8·N·kd)
    peak_bytes: int | None = None  # the largest working set of the G + spectrum stages on the route
    hessian_bytes: int | None = None  # the dense Hessian's working set (0 unless dense)
    state_bytes: int = 0  # parameters, gradients, optimiser state, teacher, float64 copies
    state_key: StateKey = "model.hidden"  # the preset key that sets the model's size
    forward_bytes: int = 0  # a full-batch forward and backward pass
    available_bytes: int = 0  # memory free when planned (the planner uses SAFETY of it)
    flops: float = 0.0  # the route's dominant arithmetic
    gflops: float | None = None  # the float64 matrix-multiply rate measured on the device, if any
    seconds: float | None = None  # flops / gflops, when a rate was measured
    # The planner's estimate of each stage's seconds (data, train, jacobian, spectrum, hessian, layers,
    # levelset), where a rate was measured; a stage it cannot estimate is absent. The engine's progress
    # starts from these (StageProgress.eta_source = "plan") until it has measured its own rate.
    stage_seconds: dict[str, float] = msgspec.field(default_factory=dict)
    notes: list[str] = msgspec.field(default_factory=list)


def decode_plan(data: bytes | str | dict) -> Plan:
    """A Plan from its JSON text or its builtins form (msgspec.ValidationError names the field)."""
    if isinstance(data, dict):
        return msgspec.convert(data, Plan)
    return msgspec.json.decode(data, type=Plan)
