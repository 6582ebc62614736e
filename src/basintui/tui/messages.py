"""Messages the bridge posts to the app: one carries an engine event, the others are the app's own.

`EngineEvent(run_id, event)` carries one `basintui.schema.events` event of run `run_id` (the app
drops a stale run's by id). A `TrainProgress` event is a latest-value snapshot (the loss history so
far, decimated), so a newer one may replace one of the same run still queued (`can_replace`), and so
may a `StageProgress` one of the same run and stage; every other event is a result or an event in
order and is never coalesced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from ..schema.events import Event, StageProgress, TrainProgress


@dataclass(eq=False)
class RunMessage(Message):
    run_id: int


@dataclass(eq=False)
class RunStarted(RunMessage):
    preset_name: str = ""


@dataclass(eq=False)
class EngineEvent(RunMessage):
    """One event of the run (Stage, TrainProgress, RankProbe, Note, PlanReady, Partial, Finished, Failed).

    `handle` comes with Finished only: the engine's own report (a bridge.ReportHandle), for export."""

    event: Event | None = None
    handle: Any = None

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, EngineEvent) or message.run_id != self.run_id:
            return False
        mine, theirs = self.event, message.event
        if isinstance(mine, TrainProgress):
            return isinstance(theirs, TrainProgress)
        return isinstance(mine, StageProgress) and isinstance(theirs, StageProgress) and theirs.name == mine.name


@dataclass(eq=False)
class ExportDone(Message):
    paths: tuple[str, ...] = ()


@dataclass(eq=False)
class ExportFailed(Message):
    message: str = ""
