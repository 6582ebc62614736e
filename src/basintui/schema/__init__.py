"""basintui's typed contract, torch-free: the report (report.py), the plan (plan.py), the events
(events.py), and the preset types from basintui.config. Everything the engine hands to the UI, the
CLI and files is one of these."""

from __future__ import annotations

from ..config import (
    AnalysisConfig,
    DataConfig,
    ModelConfig,
    Preset,
    PresetError,
    TrainConfig,
)
from .events import (
    Event,
    Failed,
    Finished,
    Note,
    Partial,
    PlanReady,
    RankProbe,
    Stage,
    StageProgress,
    TrainProgress,
    TrainStep,
    decode_event,
    encode_event,
)
from .plan import Plan
from .report import *  # the report and every section Struct (report.__all__)

from .report import __all__ as _report_names

__all__ = [
    *_report_names,
    "AnalysisConfig", "DataConfig", "ModelConfig", "Preset", "PresetError", "TrainConfig",
    "Event", "Failed", "Finished", "Note", "Partial", "PlanReady", "RankProbe", "Stage", "StageProgress", "TrainProgress",
    "TrainStep", "decode_event", "encode_event",
]
