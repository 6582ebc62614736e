"""Models: the MLP builder, user factories, and the bookkeeping of parameters and blocks.

Parameters are flattened in `named_parameters()` order, so every block owns a contiguous slice
of θ (and of the rows of G). A block of a flat `nn.Sequential` is one module with parameters together
with the parameter-free modules after it; any other model has one block per module that owns
parameters directly (engine/problem/blocks.py), or, when it cannot be cut, one whole-model block.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...config import ZOO_KINDS, ModelConfig, factory_ok
from ..errors import InputError
from . import zoo

ACTIVATION_MODULES = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def build_mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str, bias: bool) -> nn.Sequential:
    """Linear → act → … → Linear. `hidden = ()` gives a linear model; `activation = 'linear'` none."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=bias))
        if activation != "linear":
            layers.append(ACTIVATION_MODULES[activation]())
        width = h
    layers.append(nn.Linear(width, out_dim, bias=bias))
    return nn.Sequential(*layers)


def _cwd() -> Path | None:
    try:
        return Path.cwd().resolve()
    except OSError:  # the working directory was removed
        return None


def _installed_path() -> list[str]:
    """sys.path without the working directory ('' and '.' and the cwd itself): `python -m basintui.cli`
    puts the directory it was started from first, where any file could shadow the intended module."""
    cwd = _cwd()
    keep = []
    for entry in sys.path:
        if entry in ("", "."):
            continue
        try:
            if cwd is not None and Path(entry).resolve() == cwd:
                continue
        except (OSError, RuntimeError, ValueError):
            continue
        keep.append(entry)
    return keep


def _inside(path: Path, folder: str) -> bool:
    try:
        return path.is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def _import_installed(mod_name: str, source_dir: str):
    """Import `mod_name` from installed packages only: sys.path minus the working directory. A module
    that was already imported from the working directory (and from nowhere else on the path) is refused."""
    allowed = _installed_path()
    saved = list(sys.path)
    sys.path[:] = allowed
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        where = f"{source_dir} (the preset's folder) and" if source_dir else ""
        raise InputError("model.factory", f"cannot import module {mod_name!r}: not found in {where} the installed "
                         f"packages (the working directory is not searched): {exc}") from None
    except (Exception, SystemExit) as exc:  # user code: report it in words
        raise InputError("model.factory", f"importing {mod_name!r} failed: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
    finally:
        sys.path[:] = saved + [p for p in sys.path if p not in saved]  # keep what the import added
    file = getattr(module, "__file__", None)
    cwd = _cwd()
    if file and cwd is not None:
        origin = Path(file).resolve()
        if origin.is_relative_to(cwd) and not any(_inside(origin, entry) for entry in allowed):
            raise InputError("model.factory", f"module {mod_name!r} was imported from {origin}, in the working "
                             "directory, which is never searched for factories: put the file next to the preset "
                             "or install it as a package")
    return module, (str(Path(file).resolve()) if file else f"<built-in module {mod_name}>")


def resolve_factory(spec: str, source_dir: str) -> tuple[Any, str]:
    """'module:function' -> (the function, the file it was imported from). The module is looked up in
    the preset's own folder first (`source_dir/module.py`, dots as folders), then among installed
    packages; never in the working directory, and never relative to anything (no leading dot)."""
    if not factory_ok(spec):
        raise InputError("model.factory", f"{spec[:200]!r} is not 'module:function' with the module a dotted "
                         "name of Python identifiers and the function an identifier")
    mod_name, _, fn_name = spec.partition(":")
    module = None
    file = ""
    if source_dir:
        candidate = Path(source_dir) / (mod_name.replace(".", "/") + ".py")
        if candidate.is_file():
            file = str(candidate.resolve())
            unique = f"basintui_user_{abs(hash(file))}_{mod_name.replace('.', '_')}"
            loader_spec = importlib.util.spec_from_file_location(unique, candidate)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[unique] = module
            try:
                loader_spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:  # user code: report it in words
                sys.modules.pop(unique, None)
                raise InputError("model.factory", f"importing {candidate} failed: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
    if module is None:
        module, file = _import_installed(mod_name, source_dir)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise InputError("model.factory", f"module {mod_name!r} ({file}) has no function {fn_name!r}")
    return fn, file


def make_model(cfg: ModelConfig, in_dim: int, out_dim: int, source_dir: str,
               info: dict[str, str] | None = None, in_shape: tuple[int, ...] | None = None) -> nn.Module:
    """The MLP, or the user's factory called as function(in_dim=…, out_dim=…). `in_dim` is the number of
    input features (an image's pixels times channels); a factory that takes an `in_shape` argument (or
    **kwargs) also gets one input's shape, e.g. (1, 8, 8). `info`, when given, receives `factory_file`:
    the file the factory was imported from."""
    if cfg.kind == "mlp":
        return build_mlp(in_dim, cfg.hidden, out_dim, cfg.activation, cfg.bias)
    if cfg.kind in ZOO_KINDS:  # the built-in cnn, transformer and resmlp (engine/problem/zoo.py)
        return zoo.build(cfg, in_dim, out_dim)
    fn, file = resolve_factory(cfg.factory, source_dir)
    if info is not None:
        info["factory_file"] = file
    kwargs: dict[str, Any] = {"in_dim": in_dim, "out_dim": out_dim}
    if in_shape is not None and _accepts(fn, "in_shape"):
        kwargs["in_shape"] = tuple(in_shape)
    try:
        model = fn(**kwargs)
    except (Exception, SystemExit) as exc:
        called = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise InputError("model.factory", f"{cfg.factory}({called}) raised "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
    if not isinstance(model, nn.Module):
        raise InputError("model.factory", f"{cfg.factory} returned {type(model).__name__}, not a torch.nn.Module")
    if sum(p.numel() for p in model.parameters() if p.requires_grad) == 0:
        raise InputError("model.factory", f"{cfg.factory} returned a model with no trainable parameters")
    return model


def _accepts(fn: Any, name: str) -> bool:
    """Whether `fn` takes a keyword argument `name` (by name, or through **kwargs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.kind == p.VAR_KEYWORD
               for p in params)


def check_output(model: nn.Module, x_one: torch.Tensor, out_dim: int, what: str = "the model",
                 key: str = "model.factory") -> str:
    """One forward pass on a single input, before anything is trained: the output must be one floating
    tensor of shape (1, out_dim) with finite values. A tuple / list (its first tensor is used) or a dict
    (its 'output' entry is used) is accepted and described in the returned words ("" for a tensor): the
    caller wraps the model with `output_of` so that everything downstream sees that tensor. A 1-D output,
    a wrong width, something that is not a tensor, or a dict without 'output' is refused in words instead
    of failing after training."""
    shape_in = tuple(x_one.shape)
    try:
        with torch.enable_grad():
            out = model(x_one)
    except (Exception, SystemExit) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise InputError(key, f"{what} fails on one input of shape {shape_in} (batch of 1, in_dim = "
                         f"{math.prod(shape_in[1:])}): {type(exc).__name__}: {first}") from None
    want = f"one tensor of shape (batch, out_dim) = (1, {out_dim})"
    out, how = _the_tensor(out, what, key, want)
    _check_tensor(out, out_dim, what, key, want)
    return how


def _the_tensor(out: Any, what: str, key: str, want: str) -> tuple[Any, str]:
    """The tensor basintui analyses out of what the model returned, and words for how it was taken."""
    if isinstance(out, (tuple, list)):
        kind = type(out).__name__
        at = next((i for i, item in enumerate(out) if isinstance(item, torch.Tensor)), None)
        if at is None:
            raise InputError(key, f"{what} returns a {kind} of {len(out)} items on one input and none of them is a "
                             f"tensor; basintui needs {want}")
        which = "its first item" if at == 0 else f"item {at}, its first tensor"
        return out[at], f"{what} returns a {kind} of {len(out)} items; basintui uses {which}"
    if isinstance(out, Mapping):
        keys = ", ".join(repr(k) for k in list(out)[:8])
        if OUTPUT_KEY not in out:
            raise InputError(key, f"{what} returns a dict ({keys}) on one input; basintui uses a dict's "
                             f"{OUTPUT_KEY!r} entry, which it lacks: return {want}, or put it under {OUTPUT_KEY!r}")
        return out[OUTPUT_KEY], f"{what} returns a dict ({keys}); basintui uses its {OUTPUT_KEY!r} entry"
    return out, ""


def _check_tensor(out: Any, out_dim: int, what: str, key: str, want: str) -> None:
    if not isinstance(out, torch.Tensor):
        raise InputError(key, f"{what} returns {type(out).__name__} on one input; basintui needs {want}")
    if out.ndim != 2:
        hint = (" (a 1-D output has lost the batch dimension: keep it, e.g. out.reshape(-1, out_dim))"
                if out.ndim == 1 else "")
        raise InputError(key, f"{what} returns shape {tuple(out.shape)} on one input; basintui needs {want}{hint}")
    if tuple(out.shape) != (1, out_dim):
        raise InputError(key, f"{what} returns shape {tuple(out.shape)} on one input, {out.shape[1]} outputs where "
                         f"the data needs out_dim = {out_dim}; basintui needs {want}")
    if not out.is_floating_point():
        raise InputError(key, f"{what} returns a {out.dtype} tensor; basintui needs floating-point outputs to "
                         "differentiate")
    if not out.requires_grad:
        raise InputError(key, f"{what} returns an output that does not depend on its trainable parameters through "
                         "autograd (detached, computed under no_grad, or through numpy): nothing could be trained or "
                         "differentiated")
    out = out.detach()
    if not bool(torch.isfinite(out).all()):
        raise InputError(key, f"{what} returns non-finite values ({out.flatten()[:4].tolist()}) on the first "
                         "training input at its initial parameters")


OUTPUT_KEY = "output"  # the entry of a dict output that basintui analyses


def one_output(out: Any) -> torch.Tensor:
    """The rule check_output states, applied on every call: a tensor as is, a tuple / list's first tensor,
    a dict's 'output' entry."""
    if isinstance(out, (tuple, list)):
        out = next((item for item in out if isinstance(item, torch.Tensor)), None)
    elif isinstance(out, Mapping):
        out = out.get(OUTPUT_KEY)
    if not isinstance(out, torch.Tensor):
        raise TypeError("the model's output has no tensor where check_output found one")
    return out


def output_of(model: nn.Module) -> nn.Module:
    """`model` itself, its forward returning `one_output(...)` of what it returned: its class becomes a
    subclass of its own with that forward and the same name, so parameter and module names (the
    checkpoint's keys, the layer report's rows), hooks and isinstance stay the user's own. Idempotent."""
    cls = type(model)
    if getattr(cls, "_basintui_one_output", False):
        return model

    def forward(self, *args, **kwargs):
        return one_output(super(wrapped, self).forward(*args, **kwargs))

    wrapped = type(cls.__name__, (cls,), {"forward": forward, "_basintui_one_output": True,
                                         "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    model.__class__ = wrapped
    return model


@dataclass(frozen=True)
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


@dataclass(frozen=True)
class Block:
    """One analysis block: modules [first, last] of a Sequential, one parameter-owning module of any other
    model (engine/problem/blocks.py), or the whole model."""

    index: int  # 1-based position in parameter order (the rows of G)
    name: str  # e.g. "1: Linear(8→16) + ReLU" or "2: blocks.0.ln · LayerNorm(16)"
    modules: tuple[int, ...]  # indices into the Sequential ((), for a module or whole-model block)
    start: int  # first row of θ / G owned by the block
    stop: int  # one past the last row
    module: str = ""  # the owning module's name in named_modules() ("" for the whole model)

    @property
    def n_params(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Layout:
    params: tuple[ParamInfo, ...]
    blocks: tuple[Block, ...]
    sequential: bool  # an nn.Sequential of parameterised modules + parameter-free ones after them
    why_not_sequential: str = ""
    kind: str = ""  # "sequential", "modules" (one block per parameter-owning module), "whole" (one block)

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params)

    @property
    def per_block(self) -> bool:
        return self.kind in ("sequential", "modules") or (not self.kind and self.sequential)


def sequence(model: nn.Sequential) -> list[nn.Module]:
    """The modules a Sequential runs, in order, repeats included (`children()` drops a module object
    that appears twice, e.g. one ReLU reused after every layer)."""
    return [m for m in model._modules.values() if m is not None]


def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features}→{m.out_features}{'' if m.bias is not None else ', no bias'})"
    if isinstance(m, nn.modules.conv._ConvNd):
        ks = "×".join(str(s) for s in m.kernel_size)
        return f"{type(m).__name__}({m.in_channels}→{m.out_channels}, {ks})"
    if isinstance(m, nn.Embedding):
        return f"Embedding({m.num_embeddings}×{m.embedding_dim})"
    if isinstance(m, nn.LayerNorm):
        return f"LayerNorm({'×'.join(str(s) for s in m.normalized_shape)})"
    return type(m).__name__


def _trainable(model: nn.Module) -> tuple[list[ParamInfo], int]:
    params, offset = [], 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        params.append(ParamInfo(name, tuple(p.shape), offset, p.numel()))
        offset += p.numel()
    return params, offset


def _flat_sequential(model: nn.Module) -> bool:
    """A plain nn.Sequential whose children own their parameters directly (no nested containers with
    parameters): the chain of blocks is then the whole computation, each block's output the next's input."""
    if type(model).forward is not nn.Sequential.forward or not isinstance(model, nn.Sequential):
        return False
    return all(not any(p.requires_grad for c in m.children() for p in c.parameters()) for m in sequence(model))


def whole_model(params: list[ParamInfo], n: int, model: nn.Module, why: str) -> Layout:
    block = Block(1, f"1: {type(model).__name__} (whole model)", (), 0, n)
    return Layout(tuple(params), (block,), False, why, kind="whole")


def _module_layout(model: nn.Module, params: list[ParamInfo], n: int) -> Layout:
    """One block per module that owns trainable parameters directly, in parameter order (each module's
    own parameters are contiguous in named_parameters()); the forward order is read by blocks.trace."""
    from .blocks import module_blocks  # here: blocks.py imports this module

    blocks, why = module_blocks(model, params)
    if len(blocks) == 1 and blocks[0].module == "":
        why = f"{type(model).__name__} owns all its parameters itself: no sub-module to cut it into"
    if not blocks or why:
        return whole_model(params, n, model, why)
    return Layout(tuple(params), tuple(blocks), False, f"{type(model).__name__} is not an nn.Sequential",
                  kind="modules")


def layout_of(model: nn.Module) -> Layout:
    params, offset = _trainable(model)
    if not _flat_sequential(model):
        return _module_layout(model, params, offset)
    owner = {p.name: p.name.split(".", 1)[0] for p in params}
    children = sequence(model)
    groups: list[list[int]] = []
    for i, m in enumerate(children):
        has_params = any(p.requires_grad for p in m.parameters())
        if has_params or not groups:
            groups.append([i])
        else:
            groups[-1].append(i)
    blocks = []
    for bi, grp in enumerate(groups, start=1):
        names = {str(i) for i in grp}
        rows = [p for p in params if owner[p.name] in names]
        start = rows[0].offset if rows else (blocks[-1].stop if blocks else 0)
        stop = rows[-1].offset + rows[-1].size if rows else start
        label = " + ".join(_describe(children[i]) for i in grp)
        blocks.append(Block(bi, f"{bi}: {label}", tuple(grp), start, stop, str(grp[0])))
    # Parameters must be contiguous per block for the row slices to mean anything.
    ordered = all(blocks[i].stop <= blocks[i + 1].start for i in range(len(blocks) - 1))
    if not ordered:  # pragma: no cover - Sequential registers children in order
        return whole_model(params, offset, model, "parameters are not ordered by block")
    return Layout(tuple(params), tuple(blocks), True, kind="sequential")


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def set_flat_params(model: nn.Module, theta: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            if not p.requires_grad:
                continue
            n = p.numel()
            p.copy_(theta[offset: offset + n].view_as(p))
            offset += n


def activation_numel(model: nn.Module, x_small: torch.Tensor) -> int:
    """Numbers every leaf module outputs per input (a forward pass on a couple of inputs): the
    memory a full-batch forward and backward pass keeps is about 3× this per input."""
    total = [0]

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x_small)
    finally:
        for h in handles:
            h.remove()
    return max(1, total[0] // max(1, x_small.shape[0]))


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
BATCH_COUPLING_RTOL = 1e-9  # float64 outputs, batch vs one at a time: rounding stays near 1e-16 relative


def _stochastic_modules(model: nn.Module) -> list[str]:
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, _DROPOUT) and m.training and m.p > 0]


def _batchnorm_modules(model: nn.Module) -> list[str]:
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def check_batch_independent(model: nn.Module, x: torch.Tensor, n_check: int = 8) -> None:
    """Per-sample gradients mean nothing when a forward pass is random (Dropout in train mode) or mixes
    inputs (BatchNorm in train mode, attention over the batch, …). Each cause is refused with its own
    reason; any other coupling is caught by comparing a batch's outputs with the same inputs one at a
    time, in float64 on a copy (so a float32 model is judged at float64 rounding, not at its own)."""
    dropout = _stochastic_modules(model)
    if dropout:
        raise InputError(
            "model",
            f"Dropout in train mode ({', '.join(dropout)}) makes the output random, so f(θ, x) and its "
            "behavioural gradients are not functions of θ: put those layers in eval mode (model.eval() in the "
            "factory) or remove them.")
    batchnorm = _batchnorm_modules(model)
    if batchnorm:
        raise InputError(
            "model",
            f"BatchNorm in train mode ({', '.join(batchnorm)}) normalises each input by the statistics of the "
            "whole batch, so an input's output depends on the other inputs in the batch and per-sample "
            "behavioural gradients are meaningless: put those layers in eval mode or remove them.")
    n = min(n_check, x.shape[0])
    if n < 2:
        return
    m64 = copy.deepcopy(model).to(torch.float64)
    x64 = x[:n].to(torch.float64)
    with torch.no_grad():
        together = m64(x64)
        try:
            alone = torch.cat([m64(x64[i: i + 1]) for i in range(n)], dim=0)
        except (RuntimeError, ValueError) as exc:
            raise InputError(
                "model",
                f"the model cannot run on one input at a time ({str(exc).splitlines()[0]}); per-sample "
                "behavioural gradients need a model whose output for an input does not depend on the rest "
                "of the batch.") from None
    scale = max(together.abs().max().item(), alone.abs().max().item())
    diff = (together - alone).abs().max().item()
    if not diff <= BATCH_COUPLING_RTOL * scale:
        raise InputError(
            "model",
            "the model's output for an input depends on the other inputs in the batch "
            f"(batch vs one-at-a-time outputs differ by {diff:.3g} of {scale:.3g}, in float64). Per-sample "
            "behavioural gradients are meaningless for such a model: remove the coupling.")