"""Report sections: config (the resolved preset), model, data, training and G's spectrum."""

from __future__ import annotations

import msgspec

from .plan import Route
from ._words import (
    Activation,
    CeOutput,
    DataKind,
    DeviceName,
    DType,
    HessianSetting,
    Layout,
    LossName,
    ModelKind,
    On,
    Optimizer,
    Regime,
    RouteSetting,
    TargetKind,
    TrainingStatus,
)


class Section(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every report Struct: keyword construction, immutable, unknown keys ignored on read."""


# --------------------------------------------------------------------------- config (the resolved preset)


class DataSettings(Section, kw_only=True):
    kind: DataKind
    n: int | None
    dim: int | None
    rank: int | None
    out_dim: int
    targets: TargetKind
    duplicates: int
    path: str
    layout: Layout = "flat"
    p: int | None = None
    train_fraction: float | None = None


class ModelSettings(Section, kw_only=True):
    kind: ModelKind
    hidden: list[int]
    activation: Activation
    bias: bool
    factory: str
    checkpoint: str = ""
    heads: int | None = None
    layernorm: bool = True


class TrainSettings(Section, kw_only=True):
    loss: LossName
    optimizer: Optimizer
    lr: float
    steps: int
    batch_size: int
    target_loss: float


class AnalysisSettings(Section, kw_only=True):
    rtol: float
    hessian: HessianSetting
    layers: bool
    levelset: bool
    rank_every: int
    ce_output: CeOutput
    route: RouteSetting
    top_k: int
    symmetry: bool = False  # the keys below: False / 0 in reports written before them
    soft: bool = False
    probe: int | str = 0
    llc: bool = False
    slices: bool = False


class LlcSettings(Section, kw_only=True):
    """[llc]: the SGLD settings of the local learning coefficient (step, beta: 0 = automatic)."""

    chains: int = 4
    draws: int = 400
    burnin: int = 200
    step: float = 0.0
    gamma: float = 1.0
    beta: float = 0.0


class PresetRecord(Section, kw_only=True):
    """`config`: the resolved preset the run used (Preset.to_dict())."""

    name: str
    description: str
    seed: int
    device: DeviceName
    dtype: DType
    data: DataSettings
    model: ModelSettings
    train: TrainSettings
    analysis: AnalysisSettings
    llc: LlcSettings = msgspec.field(default_factory=LlcSettings)


# --------------------------------------------------------------------------- model, data, training


class BlockInfo(Section, kw_only=True):
    index: int
    name: str
    start: int
    stop: int
    n_params: int


class ParamInfo(Section, kw_only=True):
    name: str
    shape: list[int]
    offset: int


class ModelSection(Section, kw_only=True):
    n_params: int
    kind: ModelKind
    description: str
    blocks: list[BlockInfo]
    params: list[ParamInfo]
    sequential: bool
    why_not_sequential: str | None = None
    factory_file: str | None = None
    checkpoint: str | None = None  # model.checkpoint as given; None when the model was not loaded from a file
    checkpoint_path: str | None = None  # the file it resolved to
    checkpoint_sha256: str | None = None  # SHA-256 of the file's bytes, as loaded


class DataSection(Section, kw_only=True):
    n_train: int
    out_dim: int
    in_dim: int
    description: str
    targets: TargetKind
    duplicate_of: dict[str, int]  # a duplicated input's index (as a string) -> the input it copies


class RankHistoryEntry(Section, kw_only=True):
    step: int
    rank: int
    sigma_max: float
    sigma_min: float
    tolerance: float


class TrainingSection(Section, kw_only=True):
    final_loss: float | None  # None: cancelled before training began
    steps: int
    status: TrainingStatus
    cancelled_stage: str | None = None  # status cancelled: the stage that was running
    message: str
    reduction: str
    seconds: float
    losses: list[float]
    rank_history: list[RankHistoryEntry]


# --------------------------------------------------------------------------- G's spectrum


class Gap(Section, kw_only=True):
    decades: float
    after: int
    above: float
    below: float


class RankRule(Section, kw_only=True):
    rule: str
    rtol: float
    scale: float
    threshold: float
    near_factor: float


class SpectrumSection(Section, kw_only=True):
    """`G`: the singular values of G, its numerical rank and what it means."""

    singular_values: list[float]
    tolerance: float
    tolerance_rule: str
    rank: int
    rank_at_rtol: dict[str, int]
    largest_gap: Gap | None
    effective_rank: float
    regime: Regime
    submersion: bool | None
    kernel_dim: int
    generic_dim: int | None
    rank_deficiency: int
    n_params: int
    n_outputs: int
    method: str
    on: On
    meaning: list[str]
    complete: bool
    rank_exact: bool
    rank_at_rtol_exact: dict[str, bool] | None
    rank_rule: RankRule
    near_threshold: int
    route: Route | None = None  # the planner's route (plan.route): typed, where `method` is prose; None in /1 files


__all__ = [
    "AnalysisSettings", "BlockInfo", "DataSection", "DataSettings", "Gap", "LlcSettings", "ModelSection",
    "ModelSettings",
    "ParamInfo", "PresetRecord", "RankHistoryEntry", "RankRule", "Section", "SpectrumSection",
    "TrainSettings", "TrainingSection",
]
