"""G streamed over parameter chunks (engine/routes/stream.py) against the whole G of jacobian.compute_G."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from basintui.engine.cancel import CancelToken
from basintui.engine.errors import Cancelled
from basintui.engine.routes.jacobian import compute_G
from basintui.engine.problem.models import layout_of
from basintui.engine.routes.stream import param_chunks


class ConvRes(nn.Module):
    """Not a Sequential: Conv1d, a residual Conv1d, a buffer and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv1d(3, 3, 3, padding=1)
        self.head = nn.Linear(18, 2)
        self.register_buffer("scale", torch.tensor(0.7))

    def forward(self, x):
        h = torch.tanh(self.conv1(x.unsqueeze(1)))
        h = h + self.scale * torch.tanh(self.conv2(h))
        return self.head(h.flatten(1))


def _mlp():
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))


def _tied():
    shared = nn.Linear(4, 4)
    return nn.Sequential(shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(4, 2))


def _softmax(out):
    return torch.softmax(out, dim=-1)


CASES = {
    # name: (model factory, input dim, transform)
    "mlp": (_mlp, 3, None),
    "conv_residual": (ConvRes, 6, None),
    "softmax": (lambda: nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)), 3, _softmax),
    "tied": (_tied, 4, None),
}


def _setup(name: str, k: int = 10):
    factory, in_dim, transform = CASES[name]
    torch.manual_seed(1)
    model = factory().double()
    x = torch.randn(k, in_dim, dtype=torch.float64)
    layout = layout_of(model)
    G, _ = compute_G(model, layout, x, transform=transform)
    return model, layout, x, transform, G


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _tiny_budget(n_cols: int, rows: int = 5) -> int:
    """A budget whose half holds `rows` rows of G: forces several blocks per tensor."""
    return 2 * 8 * n_cols * rows


def _check_ranges(pc, n_rows: int):
    r = pc.ranges()
    assert len(r) == pc.n_blocks
    assert r[0][0] == 0 and r[-1][1] == n_rows
    assert all(a < b for a, b in r)
    assert all(r[i][1] == r[i + 1][0] for i in range(len(r) - 1))


@pytest.mark.parametrize("name,tiny", [  # the convolution split into 5-row blocks (many small vmaps) is slow
    pytest.param(name, tiny, id=f"{'tiny' if tiny else 'default'}_budget-{name}",
                 marks=pytest.mark.slow if tiny and name == "conv_residual" else ())
    for tiny in (False, True) for name in CASES])
def test_blocks_gram_and_products_equal_the_whole_G(name, tiny):
    model, layout, x, transform, G = _setup(name)
    N, m = G.shape
    budget = _tiny_budget(m) if tiny else 256 * 2**20
    pc = param_chunks(model, layout, x, transform=transform, budget_bytes=budget)
    with torch.no_grad():
        d = model(x).shape[1]
    assert (pc.n_rows, pc.n_cols) == (N, m) == (layout.n_params, x.shape[0] * d)
    _check_ranges(pc, N)
    if tiny:
        assert pc.n_blocks > len(layout.params)
        assert max(b - a for a, b in pc.ranges()) <= 5
        # some block lies strictly inside one tensor: tensors really are split
        assert any(p.offset < a and b < p.offset + p.size for a, b in pc.ranges() for p in layout.params)
    else:
        assert pc.n_blocks == 1

    blocks = list(pc.blocks())
    assert [tuple(b.shape) for b in blocks] == [(b - a, m) for a, b in pc.ranges()]
    assert all(b.dtype == torch.float64 for b in blocks)
    assert _rel(torch.cat(blocks), G) < 1e-12

    K = pc.gram()
    assert K.shape == (m, m) and K.dtype == torch.float64
    assert _rel(K, G.T @ G) < 1e-12
    assert torch.equal(K, K.T)

    V = torch.randn(m, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    GV = G @ V
    prods = list(pc.blocks(V))
    for (a, b), P in zip(pc.ranges(), prods, strict=True):
        assert P.shape == (b - a, 3)
        assert ((P - GV[a:b]).abs().max() / GV.abs().max()).item() < 1e-12
    assert _rel(torch.cat(prods), GV) < 1e-12
    v = V[:, 0]
    assert _rel(torch.cat(list(pc.blocks(v))), G @ v) < 1e-12


def test_tied_weights_match_the_loop_reference_and_leave_the_model_intact():
    model, layout, x, _, G = _setup("tied")
    G_loop, _ = compute_G(model, layout, x, method="loop")
    before = [(n, p.detach().clone()) for n, p in model.named_parameters()]
    pc = param_chunks(model, layout, x, budget_bytes=_tiny_budget(G.shape[1], rows=3))
    assert _rel(torch.cat(list(pc.blocks())), G_loop) < 1e-12
    assert model[0] is model[2] and isinstance(model[0].weight, nn.Parameter)
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in before)


def test_block_size_follows_the_budget():
    model, layout, x, _, G = _setup("mlp", k=16)
    m = G.shape[1]  # 32 columns
    for rows in (1, 7, 40):
        pc = param_chunks(model, layout, x, budget_bytes=_tiny_budget(m, rows))
        sizes = [b - a for a, b in pc.ranges()]
        assert max(sizes) <= rows and min(sizes) >= max(sizes) - 1  # near-equal ranges
        assert pc.n_blocks == -(-layout.n_params // rows)


def test_a_cancelled_token_stops_blocks_products_and_gram():
    model, layout, x, _, G = _setup("mlp")
    pc = param_chunks(model, layout, x, budget_bytes=_tiny_budget(G.shape[1]))
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        next(pc.blocks(cancel=tok))
    with pytest.raises(Cancelled):
        next(pc.blocks(torch.ones(G.shape[1], 2, dtype=torch.float64), cancel=tok))
    with pytest.raises(Cancelled):
        pc.gram(cancel=tok)

    # cancelled between blocks: the block already formed was right, the next one never comes
    tok2 = CancelToken()
    it = pc.blocks(cancel=tok2)
    a, b = pc.ranges()[0]
    assert _rel(next(it), G[a:b]) < 1e-12
    tok2.cancel()
    with pytest.raises(Cancelled):
        next(it)


def test_a_V_with_the_wrong_rows_is_refused():
    model, layout, x, _, G = _setup("mlp")
    pc = param_chunks(model, layout, x)
    with pytest.raises(ValueError, match="columns"):
        next(pc.blocks(torch.ones(G.shape[1] + 1, 2, dtype=torch.float64)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_blocks_and_gram_match_the_cpu_G():
    model, layout, x, _, G = _setup("conv_residual", k=12)
    dev = torch.device("cuda")
    model_d, x_d = model.to(dev), x.to(dev)
    pc = param_chunks(model_d, layout, x_d, budget_bytes=_tiny_budget(G.shape[1]))
    assert pc.n_blocks > len(layout.params)
    blocks = list(pc.blocks())
    assert all(b.device.type == "cuda" and b.dtype == torch.float64 for b in blocks)
    assert _rel(torch.cat(blocks).cpu(), G) < 1e-12
    K = pc.gram()
    assert K.device.type == "cuda"
    assert _rel(K.cpu(), G.T @ G) < 1e-12
    V = torch.randn(G.shape[1], 2, dtype=torch.float64)
    assert _rel(torch.cat(list(pc.blocks(V.to(dev)))).cpu(), G @ V) < 1e-12
