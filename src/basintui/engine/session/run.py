"""One run: data → model → train → analyse. `run(preset, on_event, cancel) -> Report`.

Config is inert; all work happens in `run`, which emits events (basintui.schema.events) and returns
a Report. Whatever was computed is kept: a cancelled or diverged run, or a failing analysis stage,
still returns a report whose `training.status` / `error` say what happened.

The process-wide settings a run needs are scoped to it (`run_scope`): TF32 is off while it runs and
the previous flags come back after; the seeded draws (model init, teacher) use the global torch RNG
inside a fork of it, so the caller's RNG state is the same after the run as before.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ...config import Preset
from ...planner import beyond_words
from ...limits import fmt_bytes, forward_pass_bytes, mlp_shape, model_state_bytes
from ...schema.events import Finished, Note, Partial, PlanReady, RankProbe, Stage
from ...schema.plan import Plan
from .. import memory as resources
from .. import progress
from ..cancel import CancelToken
from ..errors import Cancelled, EngineError, InputError
from ..numerics import spectrum
from ..problem import data as data_mod
from ..problem.checkpoint import load_checkpoint
from ..problem.models import (
    Layout,
    activation_numel,
    check_batch_independent,
    check_output,
    flat_params,
    layout_of,
    make_model,
    output_of,
)
from ..problem.train import TrainResult, mean_loss, train
from ..routes import jacobian
from .report import DataInfo, ModelInfo, Report, TrainingInfo

Emit = Callable[[object], None]


@dataclass
class Context:

    """Everything an analysis stage reads: the trained model as a float64 copy, the data, G."""

    preset: Preset
    device: torch.device
    model: nn.Module  # float64 copy at the analysed parameters
    layout: Layout
    x: torch.Tensor  # (k, dim) float64
    y: torch.Tensor  # targets, float64 (or int64 classes for ce)
    loss: str
    out_dim: int
    spectrum: spectrum.Spectrum | None = None
    transform: Any = None  # applied to outputs before G (ce on probabilities)
    cancel: CancelToken = field(default_factory=CancelToken)
    emit: Emit = lambda e: None
    inputs: data_mod.Inputs | None = None
    factors: Any = None  # gram.LinearFactors when the factored route computed the spectrum
    g_source: Callable[[], torch.Tensor] | None = None  # builds G on first use (factored route)
    extras: dict[str, Any] = field(default_factory=dict)  # what one stage hands a later one (symmetry tangents)
    _G: torch.Tensor | None = field(default=None, repr=False)

    @property
    def G(self) -> torch.Tensor:
        """G (N × kd, float64). After the factored route it is formed on first use only."""
        if self._G is None:
            if self.g_source is None:
                raise EngineError("G is not available before the jacobian stage")
            self._G = self.g_source()
        return self._G

    @G.setter
    def G(self, value: torch.Tensor) -> None:
        self._G = value



def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("device", "'cuda' was asked for but no CUDA device is available to torch "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
                             "use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cpu")


@contextlib.contextmanager
def run_scope(device: torch.device) -> Iterator[None]:
    """The process-wide torch settings one run needs, for that run only.

    Rank decisions need full float64/float32 precision: no TF32 shortcuts while the run computes (the
    caller's flags are restored after). The run seeds the global RNG (model init, teacher): it does so
    inside a fork, so the caller's RNG state is unchanged by the run."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


@dataclass
class _Run:
    """One run's bookkeeping: the preset, where events go, the cancel token, the clock, timings, notes."""

    preset: Preset
    emit: Emit
    cancel: CancelToken
    device: torch.device
    t_start: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meter: progress.Meter = progress.SILENT  # the running stage's progress (also on cancel.meter)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.preset.dtype == "float64" else torch.float32

    def note(self, text: str, level: str = "info") -> None:
        self.notes.append(text)
        self.emit(Note(text, level))


@dataclass
class _Problem:
    """What the data stage made: the inputs and targets, the (untrained) model, its layout and the plan."""

    inputs: data_mod.Inputs
    d: int
    x_train: torch.Tensor
    model: nn.Module
    layout: Layout
    factory: dict[str, str]  # what make_model says about a factory (its file)
    plan: Plan  # the planner's decision for this model and these inputs
    y_np: np.ndarray
    y_train: torch.Tensor
    x64: torch.Tensor  # the inputs in float64 (G, the probes and the analyses)
    transform: Any  # applied to outputs before G (ce on probabilities)


def run(preset: Preset, on_event: Emit | None = None, cancel: CancelToken | None = None) -> Report:
    """Run `preset`: emits its events (basintui.schema.events; Finished last) and returns the Report."""
    t_start = time.perf_counter()
    device = resolve_device(preset.device)
    emit = progress.serialized(on_event or (lambda e: None))  # the progress heartbeat emits from its thread
    r = _Run(preset, emit, cancel or CancelToken(), device, t_start, meter=progress.Meter(emit))
    r.cancel.meter = r.meter
    try:
        with run_scope(device), r.meter.running():
            return _run(r)
    finally:
        r.meter.abandon()
        r.cancel.meter = None


def _run(r: _Run) -> Report:
    """The stages in order: data (with the plan), train, then the analyses unless training was cancelled."""
    prob = _data_stage(r)
    infos = _infos(r, prob)
    result, rank_history = _train_stage(r, prob)
    model64 = copy.deepcopy(prob.model).to(torch.float64)
    report = _report(r, prob, infos, result, rank_history)
    report.theta = flat_params(model64).cpu().numpy()
    if result.status != "cancelled":
        _analyses(r, prob, report, model64)
    return _finish(report, r.t_start, r.emit)


# --------------------------------------------------------------------------- data, plan and model


def _data_stage(r: _Run) -> _Problem:
    r.emit(Stage("data"))
    r.meter.begin("data", 3, "steps")  # the inputs; the plan and the model; the targets
    t0 = time.perf_counter()
    inputs, d, x_train = _inputs(r)
    r.meter.update(1, upto=2)
    model, factory, plan = _plan_and_build(r, inputs, d, x_train)
    layout = layout_of(model)
    check_batch_independent(model, x_train)
    r.meter.update(2, upto=3)
    y_np = _targets(r.preset, inputs, model, d, x_train)
    y_train = _y_tensor(y_np, r.preset.train.loss, r.dtype, r.device)
    r.meter.end()
    r.timings["data"] = time.perf_counter() - t0
    r.emit(Stage("data", done=True, seconds=r.timings["data"], detail=inputs.description))
    return _Problem(inputs, d, x_train, model, layout, factory, plan, y_np, y_train,
                    x_train.to(torch.float64), _transform(r.preset))


def _inputs(r: _Run) -> tuple[data_mod.Inputs, int, torch.Tensor]:
    """The training inputs (priced before they are made), the output dimension d, the inputs on the device."""
    preset = r.preset
    shape = data_mod.input_shape(preset.data)
    if shape is not None:  # priced before they are made (a file is priced by its own size on disk)
        resources.check_inputs_fit(*shape, key="data.dim" if shape[1] > shape[0] else "data.n")
    inputs = data_mod.make_inputs(preset.data, preset.seed, preset.source_dir)
    d = data_mod.out_dim_for(preset.data, preset.train.loss, inputs)
    if preset.train.loss == "ce" and d < 2:
        raise InputError("data.out_dim", f"ce needs at least 2 outputs (classes), got {d}")
    return inputs, d, torch.as_tensor(inputs.x, dtype=r.dtype, device=r.device)


def _plan_and_build(r: _Run, inputs: data_mod.Inputs, d: int, x_train: torch.Tensor) -> tuple[nn.Module, dict, Plan]:
    """The memory plan, before anything allocates in proportion to N or k (the model, the optimiser's
    state, targets, training, G, the Hessian), then the model. An MLP is priced from its widths before
    it is built; a factory's model is built first (its size is the factory's to say) and priced before
    anything else. Emits PlanReady and the plan's notes; refuses (resources.guard) what won't fit."""
    preset, m_cfg = r.preset, r.preset.model
    factory: dict[str, str] = {}
    build = functools.partial(_build, r, x_train, d, factory)
    model: nn.Module | None = None
    if m_cfg.kind == "mlp":
        mlp = mlp_shape(int(inputs.x.shape[1]), m_cfg.hidden, d, m_cfg.bias, m_cfg.activation)
        N, widths, per_input, linear_ok = mlp.n_params, mlp.width_sum, mlp.per_input, True
    else:
        model = build()
        N, widths, per_input, linear_ok = _measure(model, x_train, m_cfg.factory)
    k, item = len(inputs.x), x_train.element_size()
    state = model_state_bytes(N, item, preset.train.optimizer, teacher=preset.data.targets == "teacher")
    plan = resources.plan(preset, N, k, d, r.device, linear_ok=linear_ok, width_sum=widths,
                          forward_bytes=forward_pass_bytes(k, per_input, item), state_bytes=state)
    r.emit(PlanReady(plan))
    r.meter.plan_seconds = dict(plan.stage_seconds)
    for text in plan.notes:
        r.note(text)
    if beyond_words(plan.stage_seconds):  # the stages beyond the rank, estimated before they run
        r.note(beyond_words(plan.stage_seconds) + " (the planner's estimate at the measured rate)")
    resources.guard(plan)
    return (model if model is not None else build()), factory, plan


def _build(r: _Run, x_train: torch.Tensor, d: int, factory: dict[str, str]) -> nn.Module:
    """The model, its init drawn from the preset's seed (in the run's fork of the RNG), checked on one input."""
    m_cfg = r.preset.model
    torch.manual_seed(r.preset.seed)
    shape = tuple(int(n) for n in x_train.shape[1:])
    built = make_model(m_cfg, math.prod(shape), d, r.preset.source_dir, info=factory,
                       in_shape=shape).to(r.device, r.dtype)
    what = "the model" if m_cfg.kind == "mlp" else f"the model from {m_cfg.factory}"
    if m_cfg.checkpoint:  # before the checks, so that they judge the loaded network
        ckpt = load_checkpoint(built, m_cfg.checkpoint, r.preset.source_dir, what)
        factory.update(checkpoint=ckpt.given, checkpoint_path=ckpt.path, checkpoint_sha256=ckpt.sha256)
        r.note(f"loaded {ckpt.describe()}, into {what}")
    check_batch_independent(built, x_train[:1])  # on one input: Dropout / BatchNorm in train mode, in words
    how = check_output(built, x_train[:1], d, what, key="model" if m_cfg.kind == "mlp" else "model.factory")
    if how:  # a tuple / list or dict output: every later call sees the tensor check_output checked
        output_of(built)
        r.note(how)
    return built


def _measure(model: nn.Module, x_train: torch.Tensor, factory: str) -> tuple[int, int, int, bool]:
    """A factory's model: N, the widths of its Linear layers, its activations per input, whether the
    factored route applies."""
    N = layout_of(model).n_params
    widths = sum(m.in_features + m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    try:
        per_input = activation_numel(model, x_train[:2])
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code that ran on one input but not on two
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise InputError("model.factory", f"the model from {factory} runs on one input but fails on a "
                         f"batch of {len(x_train[:2])}: {type(exc).__name__}: {first}") from None
    return N, widths, per_input, jacobian.linear_path_ok(model)


def _infos(r: _Run, prob: _Problem) -> tuple[ModelInfo, DataInfo]:
    """The report's model and data sections (taken before training, as the model is described)."""
    preset, model, layout, inputs = r.preset, prob.model, prob.layout, prob.inputs
    model_info = ModelInfo(
        n_params=prob.plan.n_params,
        kind=preset.model.kind,
        description=str(model).replace("\n", " ")[:400],
        blocks=[{"index": b.index, "name": b.name, "start": b.start, "stop": b.stop, "n_params": b.n_params}
                for b in layout.blocks],
        params=[{"name": p.name, "shape": list(p.shape), "offset": p.offset} for p in layout.params],
        sequential=layout.sequential,
        why_not_sequential=layout.why_not_sequential,
        factory_file=prob.factory.get("factory_file"),
        checkpoint=prob.factory.get("checkpoint"),
        checkpoint_path=prob.factory.get("checkpoint_path"),
        checkpoint_sha256=prob.factory.get("checkpoint_sha256"),
    )
    data_info = DataInfo(n_train=len(inputs.x), out_dim=prob.d, in_dim=math.prod(int(n) for n in inputs.x.shape[1:]),
                         description=inputs.description, targets=preset.data.targets,
                         duplicate_of=inputs.duplicate_of)
    return model_info, data_info


# --------------------------------------------------------------------------- training


def _train_stage(r: _Run, prob: _Problem) -> tuple[TrainResult, list[RankProbe]]:
    """Training, with live rank probes; a cancel during a probe ends it as cancelled."""
    preset, cancel = r.preset, r.cancel
    rank_history: list[RankProbe] = []
    probe = functools.partial(_probe, r, prob, rank_history)
    if cancel.cancelled and cancel.cancelled_stage is None:
        cancel.cancelled_stage = "data"  # cancelled before training started
    cancel.stage = "train"
    r.emit(Stage("train", detail=f"{preset.train.steps} steps of {preset.train.optimizer}"))
    r.meter.begin("train", preset.train.steps, "steps")
    t0 = time.perf_counter()
    every = _auto_probe_every(preset, prob.plan.n_params, len(prob.inputs.x) * prob.d)
    try:
        result = train(prob.model, prob.x_train, prob.y_train, preset.train, seed=preset.seed, on_event=r.emit,
                       cancel=cancel, probe=probe, probe_every=every)
    except Cancelled:
        result = TrainResult(status="cancelled", message="cancelled during a rank probe")
        with torch.no_grad():
            result.final_loss = mean_loss(prob.model, prob.x_train, prob.y_train, preset.train.loss).item()
    if result.status == "cancelled":
        r.meter.abandon()
    else:
        r.meter.end()
    r.timings["train"] = time.perf_counter() - t0
    r.emit(Stage("train", done=True, seconds=r.timings["train"], detail=result.message))
    if result.status == "diverged":
        r.note(result.message, "warn")
    return result, rank_history


def _probe(r: _Run, prob: _Problem, history: list[RankProbe], step: int) -> None:
    """rank(G) now, on a float64 copy of the model being trained."""
    m64 = copy.deepcopy(prob.model).to(torch.float64)
    try:
        with r.meter.muted():  # a probe is part of a training step's progress
            G, _ = jacobian.compute_G(m64, prob.layout, prob.x64, transform=prob.transform, cancel=r.cancel)
            spec = spectrum.spectrum_of(G, rtol=r.preset.analysis.rtol, cancel=r.cancel)
    except Cancelled:
        return  # train() sees the cancel before its next step and keeps the history so far
    sv = spec.singular_values
    event = RankProbe(step, spec.rank, float(sv[0]) if len(sv) else 0.0,
                      float(sv[-1]) if len(sv) else 0.0, spec.tolerance)
    history.append(event)
    r.emit(event)


# --------------------------------------------------------------------------- report and analyses


def _report(r: _Run, prob: _Problem, infos: tuple[ModelInfo, DataInfo], result: TrainResult,
            rank_history: list[RankProbe]) -> Report:
    """The report after training (its timings and notes are the run's own, filled on by later stages)."""
    preset, cancel = r.preset, r.cancel
    training = TrainingInfo(final_loss=result.final_loss, steps=result.steps, status=result.status,
                            message=result.message, losses=result.losses, seconds=result.seconds,
                            reduction="mean over training inputs of the per-input loss", rank_history=rank_history,
                            cancelled_stage=_stage_of(cancel) if result.status == "cancelled" else None)
    return Report(config=preset.to_dict(), device=str(r.device), model=infos[0], data=infos[1],
                  training=training, timings=r.timings, notes=r.notes, plan=prob.plan,
                  G_on=("probabilities" if prob.transform is not None else
                        "logits" if preset.train.loss in ("ce", "bce") else "outputs"))


def _analyses(r: _Run, prob: _Problem, report: Report, model64: nn.Module) -> None:
    """The spectrum and the stages after it; a cancel or an error keeps what was computed before it."""
    cancel = r.cancel
    ctx = Context(preset=r.preset, device=r.device, model=model64, layout=prob.layout, x=prob.x64,
                  y=_y_tensor(prob.y_np, r.preset.train.loss, torch.float64, r.device), loss=r.preset.train.loss,
                  out_dim=prob.d, transform=prob.transform, cancel=cancel, emit=r.emit, inputs=prob.inputs)
    try:
        _analyse(ctx, report, r.timings, prob.plan)
        # A cancel asked for during the last stage, which finished before it looked: the stage's result
        # is kept, and the run still ends as cancelled (the user asked for it; the CLI exits 130).
        ctx.cancel.check()
    except Cancelled:
        _mark_cancelled(report, cancel)
    except InputError as exc:
        report.error = {"kind": "input", "key": exc.key, "message": str(exc)}
    except (EngineError, RuntimeError, ValueError, MemoryError, np.linalg.LinAlgError) as exc:
        if cancel.cancelled:  # a stage that turned the cancel into another error (e.g. a swallowed Cancelled)
            _mark_cancelled(report, cancel)
        else:
            report.error = {"kind": "runtime", "message": f"{type(exc).__name__}: {exc}"}
    cancel.stage = None



def _targets(preset: Preset, inputs: data_mod.Inputs, model: nn.Module, d: int, x: torch.Tensor) -> np.ndarray:
    cfg, loss = preset.data, preset.train.loss
    if cfg.targets == "labels":
        return data_mod.labels_to_targets(inputs, loss, d)
    if cfg.targets == "random":
        return data_mod.random_targets(len(inputs.x), d, loss, np.random.default_rng(preset.seed + 7))
    if cfg.targets == "self":
        with torch.no_grad():
            out = model(x).double().cpu().numpy()
        return data_mod.outputs_to_targets(out, loss, soft=True)
    # teacher: a random net of the same shape, drawn from its own seed
    torch.manual_seed(preset.seed + 1_000_003)
    teacher = output_of(make_model(preset.model, inputs.x.shape[1], d, preset.source_dir).to(x.device, x.dtype))
    with torch.no_grad():
        out = teacher(x).double().cpu().numpy()
    return data_mod.outputs_to_targets(out, loss, soft=False)


def _y_tensor(y: np.ndarray, loss: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if loss == "ce" and y.ndim == 1:
        return torch.as_tensor(y, dtype=torch.long, device=device)
    return torch.as_tensor(y, dtype=dtype, device=device)


def _transform(preset: Preset):
    if preset.train.loss == "ce" and preset.analysis.ce_output == "probabilities":
        return lambda out: torch.softmax(out, dim=-1)
    return None


def _auto_probe_every(preset: Preset, n_params: int, kd: int) -> int:
    a, steps = preset.analysis, preset.train.steps
    if a.rank_every == -1 or steps == 0:
        return 0
    if a.rank_every > 0:
        return a.rank_every
    # Automatic: about 20 probes, only where one probe is cheap (G of at most 4M entries).
    if n_params * kd > 4_000_000:
        return 0
    return max(1, steps // 20)


def _stage_of(cancel: CancelToken) -> str:
    return cancel.cancelled_stage or cancel.stage or "data"


def _mark_cancelled(report: Report, cancel: CancelToken) -> None:
    """training.status = cancelled, with the stage that was running when the cancel came; the sections
    computed before it are kept (the stage's own section is null unless it finished)."""
    stage = _stage_of(cancel)
    ended = report.training.status
    report.training.status = "cancelled"
    report.training.cancelled_stage = stage
    report.training.message += (f"; training ended with status {ended}, then the run was cancelled during the "
                                f"{stage} stage (what was computed is kept)")


def _stage(name: str, ctx: Context, timings: dict[str, float], fn, detail: str = ""):
    ctx.cancel.check()
    ctx.cancel.stage = name
    ctx.emit(Stage(name, detail=detail))
    meter = progress.of(ctx.cancel)
    meter.begin(name)
    t0 = time.perf_counter()
    try:
        out = fn()
    except BaseException:
        meter.abandon()
        raise
    meter.end()
    timings[name] = time.perf_counter() - t0
    ctx.emit(Stage(name, done=True, seconds=timings[name]))
    return out


def _analyse(ctx: Context, report: Report, timings: dict[str, float], plan: Plan) -> None:
    from ..routes.dispatch import spectrum_on_route

    kd = ctx.x.shape[0] * ctx.out_dim
    result = spectrum_on_route(plan.route, ctx.model, ctx.layout, ctx.x, out_dim=ctx.out_dim,
                               transform=ctx.transform, cancel=ctx.cancel, rtol=ctx.preset.analysis.rtol,
                               top_k=ctx.preset.analysis.top_k,
                               stage=lambda name, fn: _stage(name, ctx, timings, fn))
    for text in result.warnings:
        ctx.emit(Note(text, "warn"))
        report.notes.append(text)
    report.G_route = result.how
    ctx.factors = result.factors
    if result.G is not None:
        ctx.G = result.G
    else:
        ctx.g_source = _lazy_G(ctx, kd, result.build_G)
    spec = result.spectrum
    ctx.spectrum = spec
    report.G = spec
    ctx.emit(Partial("spectrum", report.to_schema()))
    for name, fn in analysis_stages(ctx.preset, plan.hessian_mode, plan.hessian_why or ""):
        attr = REPORT_FIELD.get(name, name)
        setattr(report, attr, None)
        if not plan.g_fits and name not in WITHOUT_G:
            why = (f"skipped, because it needs G ({fmt_bytes(plan.g_bytes)}), which does not fit in the memory "
                   f"available ({fmt_bytes(plan.available_bytes)}); the spectrum of G is kept")
            report.skipped = {**(report.skipped or {}), name: why}
            report.notes.append(f"{name}: {why}")
            ctx.emit(Note(f"{name}: {why}", "warn"))
            continue
        value = _stage(name, ctx, timings, lambda fn=fn: fn(ctx, report))
        if value is not None:
            setattr(report, attr, value)
        ctx.emit(Partial(name, report.to_schema()))


def _lazy_G(ctx: Context, kd: int, build: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """G for the stages after a spectrum that did not need it, formed on first use if it fits."""
    def materialize() -> torch.Tensor:
        resources.check_fits("analysis", f"G ({ctx.layout.n_params} × {kd}) for the stages after the spectrum",
                             8 * ctx.layout.n_params * kd, ctx.device,
                             "turn off analysis.layers / analysis.hessian / analysis.levelset, or use fewer "
                             "inputs (data.n); the spectrum above is kept")
        with progress.of(ctx.cancel).muted():  # a step of whichever stage asked for G first
            return build()

    return materialize


REPORT_FIELD = {"slices": "slice"}  # a stage whose report section has another name
WITHOUT_G = ("soft", "llc")  # stages that run when G does not fit (the spectrum and the loss are enough)


def analysis_stages(preset: Preset, hessian_mode: str, hessian_why: str = ""
                    ) -> list[tuple[str, Callable[[Context, Report], Any]]]:
    """The stages after G's spectrum, in order; each returns the report section it fills. The Hessian
    stage computes in the planner's mode (`hessian_mode`: dense or lanczos), never a mode of its own, and
    its section's notes open with the planner's reason for that mode (`hessian_why`, as before)."""
    stages: list[tuple[str, Callable[[Context, Report], Any]]] = []
    if preset.analysis.hessian != "off":
        stages.append(("hessian", functools.partial(_hessian_stage, mode=hessian_mode, why=hessian_why)))
    if preset.analysis.layers:
        from ..analyses import infoloss

        stages.append(("layers", infoloss.analyse))
    if preset.analysis.levelset:
        from ..analyses import levelset

        stages.append(("levelset", levelset.analyse))
    return stages + beyond_stages(preset)


def beyond_stages(preset: Preset) -> list[tuple[str, Callable[[Context, Report], Any]]]:
    """The stages beyond the rank (issue 18), each on its analysis key, in the order they can use each other:
    the symmetry tangents feed the slice; the Hessian (before) feeds soft and llc."""
    from . import beyond

    a = preset.analysis
    on = (("symmetry", a.symmetry, beyond.symmetry_stage), ("soft", a.soft, beyond.soft_stage),
          ("probe", bool(a.probe), beyond.probe_stage), ("llc", a.llc, beyond.llc_stage),
          ("slices", a.slices, beyond.slices_stage))
    return [(name, fn) for name, enabled, fn in on if enabled]


def _hessian_stage(ctx: Context, report: Report, *, mode: str, why: str) -> Any:
    from ..analyses import hessian

    result = hessian.analyse(ctx, report, mode=mode)
    if why:
        result.notes.insert(0, why)
    return result


def _finish(report: Report, t_start: float, emit: Emit) -> Report:
    report.timings["total"] = time.perf_counter() - t_start
    emit(Finished(report.to_schema()))
    return report
