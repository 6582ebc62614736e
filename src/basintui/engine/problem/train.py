"""The training loop. Losses are per-sample ℓ averaged over the batch (the report says so);
`per_sample_loss` is shared with the Hessian analysis, which uses the sum over inputs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...config import TrainConfig
from .. import progress
from ..cancel import CancelToken
from ...schema.events import TrainStep

PROGRESS_EVERY_S = 0.05


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """ℓ(f(θ, x_i), y_i) for each input: mse ‖f − y‖², bce on logits, ce on logits (hard or soft targets)."""
    if kind == "mse":
        return ((out - y) ** 2).sum(dim=1)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(dim=1)
    if kind == "ce":
        return F.cross_entropy(out, y, reduction="none")
    raise ValueError(f"unknown loss {kind!r}")


def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    return per_sample_loss(model(x), y, kind).mean()


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # the loss at each step, before its update
    steps: int = 0
    status: str = "max_steps"  # converged | max_steps | diverged | cancelled
    final_loss: float = float("nan")
    seconds: float = 0.0
    message: str = ""


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=1, history_size=20, line_search_fn="strong_wolfe")


class _Batches:
    """Mini-batches without replacement, reshuffled (by a seeded generator) once an epoch runs out;
    the whole set each step when the batch is at least k."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.y, self.k = x, y, x.shape[0]
        self.batch = batch_size if 0 < batch_size < self.k else self.k
        self.gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        self.order = torch.randperm(self.k, generator=self.gen)
        self.cursor = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch >= self.k:
            return self.x, self.y
        if self.cursor + self.batch > self.k:
            self.order = torch.randperm(self.k, generator=self.gen)
            self.cursor = 0
        idx = self.order[self.cursor: self.cursor + self.batch].to(self.x.device)
        self.cursor += self.batch
        return self.x[idx], self.y[idx]


def _step(opt: torch.optim.Optimizer, model: nn.Module, params: list[torch.Tensor], xb: torch.Tensor,
          yb: torch.Tensor, kind: str, last_good: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    """One optimiser step; returns the loss before it and the parameters to put back should a later loss
    not be finite (updated here only when this loss was finite: no step is taken otherwise)."""
    def closure():
        opt.zero_grad(set_to_none=True)
        loss = per_sample_loss(model(xb), yb, kind).mean()
        loss.backward()
        return loss

    if isinstance(opt, torch.optim.LBFGS):
        with torch.no_grad():
            value = per_sample_loss(model(xb), yb, kind).mean().item()
        if math.isfinite(value):
            last_good = [p.detach().clone() for p in params]
            opt.step(closure)
        return value, last_good
    value = closure().item()
    if math.isfinite(value):
        for dst, p in zip(last_good, params):
            dst.copy_(p.detach())
        opt.step()
    return value, last_good


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    on_event: Callable[[object], None] | None = None,
    cancel: CancelToken | None = None,
    probe: Callable[[int], None] | None = None,
    probe_every: int = 0,
) -> TrainResult:
    """Train in place. A non-finite loss stops with status `diverged` and puts back the last
    parameters whose loss was finite; a cancel stops with `cancelled`; both keep the history."""
    emit = on_event or (lambda e: None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(cfg, params)
    batches = _Batches(x, y, cfg.batch_size, seed)
    result = TrainResult()
    start = time.perf_counter()
    last_emit = 0.0
    last_good = [p.detach().clone() for p in params]
    meter = progress.of(cancel)
    meter.expect(cfg.steps, "steps")
    for step in range(cfg.steps):
        meter.update(step, upto=step + 1)
        if cancel is not None and cancel.cancelled:
            result.status = "cancelled"
            result.message = f"cancelled at step {step} of {cfg.steps}"
            break
        if probe is not None and probe_every > 0 and step % probe_every == 0:
            probe(step)
        xb, yb = batches.next()
        value, last_good = _step(opt, model, params, xb, yb, cfg.loss, last_good)
        if not math.isfinite(value):
            _restore(params, last_good)
            result.status = "diverged"
            result.message = (f"the loss became {value} at step {step}; training stopped and the last "
                              f"parameters with a finite loss (step {max(step - 1, 0)}) were kept")
            break
        result.losses.append(value)
        result.steps = step + 1
        now = time.perf_counter() - start
        if now - last_emit >= PROGRESS_EVERY_S or step + 1 == cfg.steps:
            emit(TrainStep(step + 1, cfg.steps, value, now))
            last_emit = now
        if value < cfg.target_loss:
            result.status = "converged"
            result.message = f"loss {value:.3g} < target_loss {cfg.target_loss:g} at step {step + 1}"
            break
    else:
        result.message = f"ran all {cfg.steps} steps"
    return _finish(result, model, x, y, cfg, start)


def _restore(params: list[torch.Tensor], last_good: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, good in zip(params, last_good):
            p.copy_(good)


def _finish(result: TrainResult, model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
            start: float) -> TrainResult:
    """The loss on the whole set after training; converged also when it, not the last step's, is below target."""
    with torch.no_grad():
        result.final_loss = mean_loss(model, x, y, cfg.loss).item()
    if result.status == "max_steps" and cfg.target_loss > 0 and result.final_loss < cfg.target_loss:
        result.status = "converged"
    result.seconds = time.perf_counter() - start
    return result
