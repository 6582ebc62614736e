"""Moved: the engine's events are `basintui.schema.events` (one event type, engine to app). This
module only re-exports them for the importers not yet switched; it goes once none is left."""

from ..schema.events import (  # noqa: F401
    Event,
    Failed,
    Finished,
    Note,
    Partial,
    PlanReady,
    RankProbe,
    Stage,
    TrainProgress,
    TrainStep,
)
