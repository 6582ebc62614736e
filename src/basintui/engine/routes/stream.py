"""G streamed over parameter chunks: row blocks of G = Jᵀ (N × kd) for a model of any architecture.

For when G itself (N × kd float64) would not fit in memory but the kd × kd Gram does. θ is cut
into consecutive row ranges [start, stop) of near-equal length; each block G[start:stop] is
computed by vmap over inputs of jacrev of a per-sample `functional_call`, differentiated with
respect to that slice of θ only (each touched parameter tensor is rebuilt as
cat(fixed head, free slice, fixed tail), so only the slice is a jacrev input). Rows and columns
follow jacobian.py: row = parameter in layout order, column i·d + c = ∇θ f_c(θ, x_i); float64;
functional_call(tie_weights=False) under the layout's canonical names, so a module used twice
gives the same G as `compute_G(method="functorch")`.

Chunking rule (`budget_bytes`, default 256 MiB): half the budget holds one block, so a block has
at most max(1, budget/2 // (8·kd)) rows (and at most budget/2 // (24·d), for one input's jacrev
working set); θ is split into n_blocks = ceil(N / that) near-equal ranges, which may cross tensor
boundaries (so small tensors share a block and no pass is spent on a short remainder). Within a
block the inputs go in chunks sized by the other half of the budget, at
24·d·(2·|touched tensors| + |slice|) bytes per input (measured: jacrev holds about 3× the entries
it forms): autograd forms the gradient of each touched tensor in full before cutting the slice out
of it, so a block that cuts a huge tensor still holds d × that tensor's size per input
transiently (one input at a time at worst, whatever the budget).

Cost: each block is one jacrev pass over all k inputs (a forward pass and d backward passes per
input), so about n_blocks × the cost of `compute_G(method="functorch")` (a pass that cuts a large
tensor costs nearly a whole one). Memory: about the budget (measured peak 1.1× on a 93k-parameter
MLP), plus kd² × 8 bytes for the Gram in `gram()`. `blocks(V)` never holds a whole block (the
products accumulate per input chunk); `blocks()` yields each block as it is formed, so a consumer
that keeps the previous block while asking for the next holds two.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ...limits import STREAM_BYTES
from .. import progress
from ..cancel import CancelToken, run_cancellable
from .jacobian import Transform, param_dict
from ..problem.models import Layout


@dataclass(frozen=True)
class _Piece:
    """The part of one parameter tensor inside a block: its flat entries [a, b)."""

    name: str
    shape: tuple[int, ...]
    size: int  # the whole tensor's number of entries
    a: int
    b: int

    @property
    def whole(self) -> bool:
        return self.a == 0 and self.b == self.size


def _rows_per_block(n_cols: int, d: int, budget_bytes: int) -> int:
    half = max(1, budget_bytes // 2)
    return max(1, min(half // (8 * n_cols), half // (24 * d)))


def _split(n: int, n_max: int) -> list[tuple[int, int]]:
    m = -(-n // n_max)
    cuts = [(j * n) // m for j in range(m + 1)]
    return [(cuts[j], cuts[j + 1]) for j in range(m)]


class ParamChunks:
    """Row blocks of G: consecutive ranges of parameters, each block computed by vmap(jacrev) with
    respect to that slice of θ only."""

    def __init__(self, model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                 budget_bytes: int = STREAM_BYTES) -> None:
        self.model = model
        self.layout = layout
        self.x = x
        self.transform = transform
        self.budget_bytes = int(budget_bytes)
        self._params = param_dict(model)
        self._buffers = dict(model.named_buffers())
        with torch.no_grad():
            self.d = self._f({}, x[0]).numel()
        self.k = x.shape[0]
        self.n_rows = layout.n_params
        self.n_cols = self.k * self.d
        self.rows_per_block = _rows_per_block(self.n_cols, self.d, self.budget_bytes)
        self._ranges = _split(self.n_rows, self.rows_per_block) if self.n_rows else []
        self.n_blocks = len(self._ranges)

    # -- the per-sample function -------------------------------------------------------------

    def _f(self, subs: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        params = dict(self._params)
        params.update(subs)
        out = functional_call(self.model, (params, self._buffers), (xi.unsqueeze(0),), tie_weights=False)
        if self.transform is not None:
            out = self.transform(out)
        return out.reshape(-1)

    def _pieces(self, start: int, stop: int) -> list[_Piece]:
        pieces = []
        for p in self.layout.params:
            a, b = max(start, p.offset), min(stop, p.offset + p.size)
            if a < b:
                pieces.append(_Piece(p.name, p.shape, p.size, a - p.offset, b - p.offset))
        return pieces

    def _jac_fn(self, pieces: list[_Piece]):
        flats = {pc.name: self._params[pc.name].reshape(-1) for pc in pieces if not pc.whole}

        def g(slices: tuple[torch.Tensor, ...], xi: torch.Tensor) -> torch.Tensor:
            subs = {}
            for pc, s in zip(pieces, slices):
                if pc.whole:
                    subs[pc.name] = s.view(pc.shape)
                else:
                    flat = flats[pc.name]
                    subs[pc.name] = torch.cat([flat[: pc.a], s, flat[pc.b:]]).view(pc.shape)
            return self._f(subs, xi)

        return vmap(jacrev(g), in_dims=(None, 0))

    def _input_chunk(self, pieces: list[_Piece], n_c: int) -> int:
        touched = sum(pc.size for pc in pieces)
        per_input = 24 * self.d * (2 * touched + n_c)  # measured: jacrev holds ~3× the entries it forms
        return max(1, min(self.k, (self.budget_bytes // 2) // per_input))

    def _chunks(self, start: int, stop: int, cancel: CancelToken | None) -> Iterator[tuple[int, torch.Tensor]]:
        """(first column, J rows) per input chunk: J rows = G[start:stop, cols]ᵀ, (b·d × n_c)."""
        pieces = self._pieces(start, stop)
        n_c = stop - start
        slices = tuple(self._params[pc.name].reshape(-1)[pc.a: pc.b] for pc in pieces)
        jac_fn = self._jac_fn(pieces)
        chunk = self._input_chunk(pieces, n_c)
        for i0 in range(0, self.k, chunk):
            if cancel is not None:
                cancel.check()
            xc = self.x[i0: i0 + chunk]
            b = xc.shape[0]
            jac = jac_fn(slices, xc)  # tuple of (b, d, |piece|)
            rows = jac[0] if len(jac) == 1 else torch.cat(jac, dim=2)
            yield i0 * self.d, rows.reshape(b * self.d, n_c)

    def _block(self, start: int, stop: int, cancel: CancelToken | None) -> torch.Tensor:
        # Stored as the transpose of a row-major (kd × n_c) array, as jacobian._alloc does.
        Jc = torch.empty((self.n_cols, stop - start), dtype=torch.float64, device=self.x.device)
        for c0, rows in self._chunks(start, stop, cancel):
            Jc[c0: c0 + rows.shape[0]] = rows
        return Jc.T

    # -- the row-block source ----------------------------------------------------------------

    def ranges(self) -> list[tuple[int, int]]:
        """[start, stop) rows of G per block, covering 0..N in order."""
        return list(self._ranges)

    def blocks(self, V: torch.Tensor | None = None, cancel: CancelToken | None = None) -> Iterator[torch.Tensor]:
        """G[start:stop] (n_c × kd) per range, or G[start:stop] @ V (n_c × s) when V (kd × s) is given."""
        if V is not None:
            if V.shape[0] != self.n_cols:
                raise ValueError(f"V has {V.shape[0]} rows; G has {self.n_cols} columns")
            V = V.to(device=self.x.device, dtype=torch.float64)
            squeeze = V.dim() == 1
            V2 = V.unsqueeze(1) if squeeze else V
        for start, stop in self._ranges:
            if cancel is not None:
                cancel.check()
            if V is None:
                yield self._block(start, stop, cancel)
                continue
            out = torch.zeros((stop - start, V2.shape[1]), dtype=torch.float64, device=self.x.device)
            for c0, rows in self._chunks(start, stop, cancel):
                out.addmm_(rows.to(torch.float64).T, V2[c0: c0 + rows.shape[0]])
            yield out.squeeze(1) if squeeze else out

    def gram(self, cancel: CancelToken | None = None) -> torch.Tensor:
        """K = GᵀG (kd × kd), accumulated block by block with a symmetric rank-n_c update."""
        m = self.n_cols
        meter = progress.of(cancel)
        meter.expect(self.n_rows, "rows of G")
        if self.x.is_cuda:
            K = torch.zeros((m, m), dtype=torch.float64, device=self.x.device)
            for start, stop in self._ranges:
                if cancel is not None:
                    cancel.check()
                meter.update(start, upto=stop)
                Gc = self._block(start, stop, cancel)
                K.addmm_(Gc.T, Gc)
                del Gc  # not alive while the next block is formed
            return K
        from scipy.linalg.blas import dsyrk

        K = np.zeros((m, m), dtype=np.float64, order="F")
        for start, stop in self._ranges:
            if cancel is not None:
                cancel.check()
            meter.update(start, upto=stop)
            a = self._block(start, stop, cancel).numpy()  # F-ordered (n_c × kd): trans=1, no copy
            # one rank-n_c update of a kd × kd K can take a second or more: answer a cancel meanwhile
            K = run_cancellable(lambda a=a, K=K: dsyrk(1.0, a, beta=1.0, c=K, trans=1, lower=0, overwrite_c=1),
                                cancel)
            del a  # not alive while the next block is formed
        # dsyrk filled the upper triangle (column-major): mirror it, a strip at a time.
        step = 1024
        for j0 in range(0, m, step):
            j1 = min(m, j0 + step)
            K[j0:j1, :j0] = K[:j0, j0:j1].T
            blk = K[j0:j1, j0:j1]
            blk[np.tril_indices(j1 - j0, -1)] = blk.T[np.tril_indices(j1 - j0, -1)]
        return torch.from_numpy(np.ascontiguousarray(K.T))  # symmetric: the transpose is C-ordered, no copy


def param_chunks(model: nn.Module, layout: Layout, x: torch.Tensor, *, transform: Transform = None,
                 budget_bytes: int = STREAM_BYTES) -> ParamChunks:
    """The row-block source for G. `model` and `x` must already be float64 on one device."""
    return ParamChunks(model, layout, x, transform=transform, budget_bytes=budget_bytes)
