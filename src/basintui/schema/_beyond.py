"""Report sections beyond the rank (issue 18): `symmetry` (the kernel split), `soft` (N_eff and log det
curves), `probe` (rank on other inputs), `llc` (the local learning coefficient with its diagnostics) and
`slice` (a 2-D loss slice's metadata; the grid itself is in the NPZ as slice_loss, slice_u, slice_v)."""

from __future__ import annotations

import msgspec

from ._sections import Section


class SymmetryKind(Section, kw_only=True):
    """One kind of symmetry tangent: how many were found and the largest ‖Gᵀt‖/(‖G‖₂‖t‖) among them."""

    kind: str  # rescale | gl | layernorm-shift | layernorm-scale | softmax-shift
    count: int
    max_residual: float


class SymmetrySection(Section, kw_only=True):
    """`symmetry`: kernel_dim = dim (symmetries) + dead_dim (dead units, beyond the symmetries) +
    data_dependent_dim, each counted at G's tolerance."""

    dim: int
    dead_dim: int
    data_dependent_dim: int
    kernel_dim: int
    max_residual: float | None  # None: no tangents
    tangents: int
    span_rank: int  # rank of the tangents' span (float64, numpy rule), before the flatness check
    dead_units: int
    dead_params: int
    dead_max_row: float
    tolerance: float
    dim_range: list[int]  # dim at τ/2 and at 2τ
    complete: bool  # False: the model was not (fully) searched; `why` says what was left out
    kinds: list[SymmetryKind]
    why: list[str]
    meaning: list[str]


class CurvePoint(Section, kw_only=True):
    z: float
    value: float


class EpsPoint(Section, kw_only=True):
    eps: float
    value: float


class NEffCurve(Section, kw_only=True):
    of: str
    threshold: float
    rank: int
    points: list[CurvePoint]
    n_eigenvalues: int
    left_out: int
    cliff: bool
    window: list[float]


class SoftSection(Section, kw_only=True):
    """`soft`: N_eff(z) of the GGN (or GGᵀ) with the rank's threshold, of H where dense, log det(GGᵀ + εI)."""

    of: str  # what n_eff is of: "GGN" (the Hessian stage ran) or "GGᵀ"
    n_eff: list[CurvePoint]
    threshold: float
    rank: int
    cliff: bool
    window: list[float]  # N_eff at threshold·100 and at threshold/100
    n_eigenvalues: int
    n_eff_H: NEffCurve | None
    logdet: list[EpsPoint]
    eps_threshold: float
    n_params: int
    meaning: list[str]
    complete: bool = True  # False: only G's top singular values were known (the curves are lower bounds)


class ProbeSection(Section, kw_only=True):
    """`probe`: rank(G) on the training set, on the probe inputs and on both."""

    source: str
    n_probe: int  # columns of G_probe (probe inputs × outputs)
    n_params: int
    rank_train: int
    rank_probe: int
    rank_both: int
    flat_on_train: int
    flat_on_both: int
    tolerance_probe: float
    tolerance_both: float
    near_threshold: int
    meaning: list[str]


class LlcDiagnostics(Section, kw_only=True):
    """How far to trust λ̂: each chain's estimate and (thinned) loss trace, divergence, R̂, warnings."""

    chain_estimates: list[float]
    traces: list[list[float]]  # per chain, at most TRACE_POINTS means of consecutive draws (the NPZ has all)
    trace_stride: int  # draws per trace point
    init_loss: float
    diverged: list[int]
    rhat: float
    step_too_large: bool
    rising: bool
    below_init: bool
    curvature_top: float
    warnings: list[str]
    cancelled: bool
    parallel: str


class LlcSection(Section, kw_only=True):
    """`llc`: the SGLD estimate λ̂ = nβ(E[Lₙ(w)] − Lₙ(θ)) beside rank(H)/2 and N/2."""

    estimate: float
    std: float
    se: float
    chains: int
    draws: int
    draws_done: int
    burnin: int
    step: float
    step_auto: bool
    gamma: float
    beta: float
    nbeta: float
    n: int
    n_params: int
    half_n: float  # N/2: a regular model's λ
    rank_H: int | None  # rank(H) from the Hessian stage (None: not computed)
    half_rank_H: float | None
    quadratic: float | None  # ½ Σ nβh/(nβh + γ) over H's eigenvalues (dense Hessian only): λ̂ of the quadratic model
    relation: str
    seconds: float
    diagnostics: LlcDiagnostics


class SliceSection(Section, kw_only=True):
    """`slice`: a loss slice L(θ + a·u + b·v) on a small grid (also in the NPZ as slice_loss, slice_u, slice_v;
    the unit directions u and v, N numbers each, only in the NPZ as slice_direction_u, slice_direction_v)."""

    u_kind: str  # what u is (e.g. data-dependent null direction of Gᵀ)
    v_kind: str
    shape: list[int]
    extent: float  # both axes run over [−extent, extent]
    loss_at_theta: float
    loss_min: float
    loss_max: float
    rise_u: float  # max |L(θ + a u) − L(θ)| along u
    rise_v: float  # max of L(θ ± extent·v) − L(θ)
    note: str
    cancelled: bool
    a: list[float] = msgspec.field(default_factory=list)  # offsets along u (rows of loss)
    b: list[float] = msgspec.field(default_factory=list)  # offsets along v (columns of loss)
    loss: list[list[float]] = msgspec.field(default_factory=list)  # loss[i][j] = L(θ + a[i]·u + b[j]·v)
    meaning: list[str] = msgspec.field(default_factory=list)


__all__ = ["CurvePoint", "EpsPoint", "LlcDiagnostics", "LlcSection", "NEffCurve", "ProbeSection", "SliceSection",
           "SoftSection", "SymmetryKind", "SymmetrySection"]
