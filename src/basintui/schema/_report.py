"""The top level of a report: `Report` (one field per top-level JSON key) and `RunError`."""

from __future__ import annotations

from typing import Literal

import msgspec

from ._beyond import (
    LlcSection,
    ProbeSection,
    SliceSection,
    SoftSection,
    SymmetrySection,
)
from ._hessian import HessianSection
from ._layers import DependentInputs, LayerRow, LayersInfo
from ._levelset import LevelSet
from ._sections import (
    DataSection,
    ModelSection,
    PresetRecord,
    Section,
    SpectrumSection,
    TrainingSection,
)
from ._words import ErrorKind
from .plan import Plan

SCHEMA = "basintui.report/2"
SCHEMAS = ("basintui.report/1", SCHEMA)  # the versions decode_report reads


class RunError(Section, kw_only=True):
    """`error`: an analysis stage failed (the sections before it are kept)."""

    kind: ErrorKind  # input: a preset key is at fault (CLI exit 2); runtime: the computation failed (exit 1)
    key: str | None = None  # input errors: the dotted preset key
    message: str


class Report(Section, kw_only=True):
    """The report of one run. Sections a run did not compute are None."""

    schema: Literal["basintui.report/1", "basintui.report/2"] = SCHEMA
    config: PresetRecord
    device: str | None  # None: cancelled before the device was chosen
    model: ModelSection | None
    data: DataSection | None
    training: TrainingSection
    G: SpectrumSection | None = None
    hessian: HessianSection | None = None
    layers: list[LayerRow] | None = None
    dependent_inputs: DependentInputs | None = None
    levelset: LevelSet | None = None
    timings: dict[str, float] = msgspec.field(default_factory=dict)  # stage name -> seconds
    notes: list[str] = msgspec.field(default_factory=list)
    error: RunError | None = None
    layers_info: LayersInfo | None = None
    skipped: dict[str, str] | None = None  # stage -> why it was skipped (G does not fit in memory)
    plan: Plan | None = None  # what the run decided to compute (None in basintui.report/1 files)
    symmetry: SymmetrySection | None = None  # beyond the rank (issue 18): None when off or not computed
    soft: SoftSection | None = None
    probe: ProbeSection | None = None
    llc: LlcSection | None = None
    slice: SliceSection | None = None

    @property
    def status(self) -> str:
        return self.training.status

    @property
    def total_seconds(self) -> float | None:
        """The run's wall time (the `total` timing), None where the run ended before it was taken."""
        return self.timings.get("total")

