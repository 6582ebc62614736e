"""Messages the bridge posts to the app. Dataclasses; every one carries the run id it belongs to.

`TrainProgress` is a latest-value snapshot (the loss history so far, decimated), so a newer one may
replace one still queued (`can_replace`). Every other message is a result or an event in order and
is never coalesced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass(eq=False)
class RunMessage(Message):
    run_id: int


@dataclass(eq=False)
class RunStarted(RunMessage):
    preset_name: str = ""


@dataclass(eq=False)
class PlanReady(RunMessage):
    """Sizes and memory, measured by the engine before training starts."""

    n_params: int = 0
    n_train: int = 0
    out_dim: int = 0
    g_bytes: int = 0
    method: str = ""
    hessian: str = ""
    hessian_bytes: int = 0


@dataclass(eq=False)
class StageChanged(RunMessage):
    name: str = ""
    done: bool = False
    seconds: float = 0.0
    detail: str = ""


@dataclass(eq=False)
class NotePosted(RunMessage):
    text: str = ""
    level: str = "info"


@dataclass(eq=False)
class TrainProgress(RunMessage):
    """A snapshot of training: the latest step and the (decimated) history up to it."""

    step: int = 0
    total: int = 0
    loss: float = float("nan")
    elapsed: float = 0.0
    steps: tuple[int, ...] = ()
    losses: tuple[float, ...] = ()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrainProgress) and message.run_id == self.run_id


@dataclass(eq=False)
class RankProbed(RunMessage):
    step: int = 0
    rank: int = 0
    sigma_max: float = 0.0
    sigma_min: float = 0.0
    tolerance: float = 0.0


@dataclass(eq=False)
class RunPartial(RunMessage):
    """The report so far (JSON dict) after an analysis stage: panes whose section is in it can show it."""

    stage: str = ""
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class RunFinished(RunMessage):
    """The run's report as the JSON dict (what every pane renders) and the engine's object (for export)."""

    report: dict[str, Any] = field(default_factory=dict)
    handle: Any = None


@dataclass(eq=False)
class RunFailed(RunMessage):
    """The engine raised: `kind` is input (the preset cannot be run as asked) or runtime."""

    kind: str = "runtime"
    message: str = ""
    details: str = ""


@dataclass(eq=False)
class ExportDone(Message):
    paths: tuple[str, ...] = ()


@dataclass(eq=False)
class ExportFailed(Message):
    message: str = ""
