"""The behavioural-gradient matrix G = Jᵀ ∈ R^{N × kd}, column i·d + c = ∇θ f_c(θ, x_i).

Three routes, which agree to ~1e-12 (tests check it):
- `linear`: one batched forward pass keeping every Linear layer's input a, then one backward
  pass per output coordinate giving each layer's output gradient b; per-sample gradients are
  the outer products b_i a_iᵀ (and b_i for the bias). Needs an nn.Sequential of Linear layers
  and elementwise activations.
- `functorch`: vmap over inputs of jacrev of a per-sample `functional_call`, chunked so that
  memory stays bounded. Works for any model without batch coupling.
- `loop`: one `torch.autograd.grad` per (input, output): the plain reference.
G is always float64, whatever the training dtype: the caller passes a float64 copy of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ...limits import STREAM_BYTES
from .. import progress
from ..cancel import CancelToken, run_cancellable
from ..problem.models import Layout, sequence

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.LeakyReLU, nn.Identity, nn.SiLU, nn.Softplus, nn.ELU)
Transform = Callable[[torch.Tensor], torch.Tensor] | None


def linear_path_ok(model: nn.Module) -> bool:
    """An nn.Sequential of Linear layers (each used once) and parameter-free elementwise activations."""
    if not isinstance(model, nn.Sequential):
        return False
    mods = sequence(model)
    linears = [m for m in mods if isinstance(m, nn.Linear)]
    if not linears or len({id(m) for m in linears}) != len(linears):
        return False  # a Linear applied twice shares its weights: its per-sample gradient is a sum
    for m in mods:
        if isinstance(m, nn.Linear):
            if not m.weight.requires_grad or (m.bias is not None and not m.bias.requires_grad):
                return False
        elif not isinstance(m, ELEMENTWISE) or any(True for _ in m.parameters()):
            return False
    return True


def param_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


# functional_call is always given tie_weights=False: a module registered twice in a Sequential
# (tied weights) is then swapped once, and torch 2.13 restores it; with tie_weights=True it left
# plain tensors in the user's model (measured). The canonical names cover every use of the module.


def unflatten(layout: Layout, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    return {p.name: theta[p.offset: p.offset + p.size].view(p.shape) for p in layout.params}


def outputs_at(model: nn.Module, layout: Layout, theta: torch.Tensor, x: torch.Tensor,
               transform: Transform = None) -> torch.Tensor:
    """F(θ): the (k, d) outputs with the parameters replaced by the flat vector θ (differentiable)."""
    buffers = dict(model.named_buffers())
    out = functional_call(model, (unflatten(layout, theta), buffers), (x,), tie_weights=False)
    return transform(out) if transform is not None else out


def _alloc(n_rows: int, n_cols: int, like: torch.Tensor) -> torch.Tensor:
    """G as the transpose of a row-major J (kd × N): every per-sample gradient is a contiguous row
    of J, and G itself is column-major, the layout LAPACK wants for the tall orientation."""
    return torch.empty((n_cols, n_rows), dtype=torch.float64, device=like.device).T


def jacobian_linear(model: nn.Sequential, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                    cancel: CancelToken | None = None) -> torch.Tensor:
    """Per-sample outer products b_i a_iᵀ of the Linear layers' output gradients and inputs."""
    from .gram import linear_factors

    return linear_factors(model, layout, x, transform=transform, cancel=cancel).materialize(cancel)


def jacobian_functorch(model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                       cancel: CancelToken | None = None, chunk_bytes: int = STREAM_BYTES) -> torch.Tensor:
    params = param_dict(model)
    buffers = dict(model.named_buffers())
    names = [p.name for p in layout.params]
    n = layout.n_params

    def f(p, xi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),), tie_weights=False)
        if transform is not None:
            out = transform(out)
        return out.reshape(-1)

    with torch.no_grad():
        d = f(params, x[0]).numel()
    k = x.shape[0]
    G = _alloc(n, k * d, x)
    # Each chunk materialises b·d·N gradient entries (plus jacrev's own working set, ~2×).
    per_input = max(1, 3 * d * n * 8)
    chunk = max(1, min(k, chunk_bytes // per_input))
    meter = progress.of(cancel)
    meter.expect(k, "inputs")
    jac_fn = vmap(jacrev(f), in_dims=(None, 0))
    for i0 in range(0, k, chunk):
        if cancel is not None:
            cancel.check()
        xc = x[i0: i0 + chunk]
        meter.update(i0, upto=i0 + xc.shape[0])
        b = xc.shape[0]
        # one chunk is up to chunk_bytes of per-sample gradients (seconds on a slow CPU): answer a cancel meanwhile
        jac = run_cancellable(lambda xc=xc: jac_fn(params, xc), cancel)
        J = G.T
        offset = 0
        for name in names:
            size = jac[name][0].numel() // d
            J[i0 * d: (i0 + b) * d, offset: offset + size] = jac[name].reshape(b * d, size)
            offset += size
    return G


def jacobian_loop(model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                  cancel: CancelToken | None = None) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    cols = []
    meter = progress.of(cancel)
    meter.expect(x.shape[0], "inputs")
    for i in range(x.shape[0]):
        if cancel is not None:
            cancel.check()
        meter.update(i, upto=i + 1)
        out = model(x[i: i + 1])
        if transform is not None:
            out = transform(out)
        out = out.reshape(-1)
        for c in range(out.numel()):
            g = torch.autograd.grad(out[c], params, retain_graph=c < out.numel() - 1, allow_unused=True)
            cols.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                   for gi, p in zip(g, params)]))
    return torch.stack(cols, dim=1).to(torch.float64)


class InputChunks:
    """Gᵀ = J (kd × N) in row blocks of consecutive inputs, for when N < kd and G would not fit: each
    block is the per-sample gradients of a chunk of inputs (its own small G, transposed), so the
    N × N Gram and the Ritz tail are summed block by block (engine/spectrum.RowBlocks). Each pass
    over the blocks costs one G's worth of per-sample gradients; memory is one block."""

    def __init__(self, model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                 out_dim: int = 1, budget_bytes: int = STREAM_BYTES) -> None:
        self.model, self.layout, self.x, self.transform = model, layout, x, transform
        self.n_rows = x.shape[0] * out_dim
        self.n_cols = layout.n_params
        # a block of b inputs holds b·d·N entries, twice (G_b and its transpose's product)
        self.chunk = max(1, min(x.shape[0], budget_bytes // (2 * 8 * out_dim * max(self.n_cols, 1))))

    def blocks(self, V: torch.Tensor | None = None, cancel: CancelToken | None = None):
        for i0 in range(0, self.x.shape[0], self.chunk):
            if cancel is not None:
                cancel.check()
            with progress.of(cancel).muted():  # the caller counts the blocks
                Gb, _ = compute_G(self.model, self.layout, self.x[i0: i0 + self.chunk], transform=self.transform,
                                  cancel=cancel)
            J = Gb.T  # row-major kd_b × N
            yield J if V is None else J @ V


def compute_G(model: nn.Module, layout: Layout, x: torch.Tensor, *, method: str = "auto",
              transform: Transform = None, cancel: CancelToken | None = None) -> tuple[torch.Tensor, str]:
    """G in float64 and the route taken. `model` and `x` must already be float64 on one device."""
    if method == "auto":
        method = "linear" if linear_path_ok(model) else "functorch"
    if method == "linear":
        return jacobian_linear(model, layout, x, transform=transform, cancel=cancel), method
    if method == "functorch":
        return jacobian_functorch(model, layout, x, transform=transform, cancel=cancel), method
    if method == "loop":
        return jacobian_loop(model, layout, x, transform=transform, cancel=cancel), method
    raise ValueError(f"unknown method {method!r}")
