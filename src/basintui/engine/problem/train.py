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
    k = x.shape[0]
    batch = cfg.batch_size if 0 < cfg.batch_size < k else k
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    order = torch.randperm(k, generator=gen)
    cursor = 0
    result = TrainResult()
    start = time.perf_counter()
    last_emit = 0.0
    last_good = [p.detach().clone() for p in params]

    for step in range(cfg.steps):
        if cancel is not None and cancel.cancelled:
            result.status = "cancelled"
            result.message = f"cancelled at step {step} of {cfg.steps}"
            break
        if probe is not None and probe_every > 0 and step % probe_every == 0:
            probe(step)
        if batch < k:
            if cursor + batch > k:
                order = torch.randperm(k, generator=gen)
                cursor = 0
            idx = order[cursor: cursor + batch].to(x.device)
            cursor += batch
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = per_sample_loss(model(xb), yb, cfg.loss).mean()
            loss.backward()
            return loss

        if isinstance(opt, torch.optim.LBFGS):
            with torch.no_grad():
                value = per_sample_loss(model(xb), yb, cfg.loss).mean().item()
            if math.isfinite(value):
                last_good = [p.detach().clone() for p in params]
                opt.step(closure)
        else:
            loss = closure()
            value = loss.item()
            if math.isfinite(value):
                for dst, p in zip(last_good, params):
                    dst.copy_(p.detach())
                opt.step()
        if not math.isfinite(value):
            with torch.no_grad():
                for p, good in zip(params, last_good):
                    p.copy_(good)
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
    with torch.no_grad():
        result.final_loss = mean_loss(model, x, y, cfg.loss).item()
    if result.status == "max_steps" and cfg.target_loss > 0 and result.final_loss < cfg.target_loss:
        result.status = "converged"
    result.seconds = time.perf_counter() - start
    return result
