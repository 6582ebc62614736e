"""basintui's typed contract, torch-free: the report (report.py), the plan (plan.py), the events
(events.py), and the preset types from basintui.config. Everything the engine hands to the UI, the
CLI and files is one of these."""

from __future__ import annotations

from ._codec import ReportError, decode_report, encode_report, load_report, report_to_builtins
from ._hessian import Claim3, Density, HessianSection, Hypotheses, Weyl
from ._layers import DependentGroup, DependentInputs, LayerRow, LayersInfo
from ._levelset import LevelSet, RadiusVerdict, Walk, WalkPoint
from ._sections import DataSection, ModelSection, PresetRecord, RankHistoryEntry, SpectrumSection, TrainingSection
from ..config import AnalysisConfig, DataConfig, ModelConfig, Preset, PresetError, TrainConfig
from .events import (
    Event, Failed, Finished, Note, Partial, PlanReady, RankProbe, Stage, TrainProgress, TrainStep, decode_event,
    encode_event,
)
from .plan import Plan
from .report import SCHEMA, SCHEMAS, Report, RunError

__all__ = [
    "SCHEMA", "SCHEMAS", "Report", "ReportError", "RunError", "decode_report", "encode_report", "load_report",
    "report_to_builtins", "PresetRecord", "ModelSection", "DataSection", "TrainingSection", "RankHistoryEntry",
    "SpectrumSection", "HessianSection", "Hypotheses", "Claim3", "Weyl", "Density", "LayerRow", "LayersInfo",
    "DependentInputs", "DependentGroup", "LevelSet", "RadiusVerdict", "Walk", "WalkPoint", "Plan",
    "Event", "Stage", "TrainStep", "TrainProgress", "RankProbe", "Note", "PlanReady", "Partial", "Finished", "Failed",
    "encode_event", "decode_event",
    "Preset", "DataConfig", "ModelConfig", "TrainConfig", "AnalysisConfig", "PresetError",
]
