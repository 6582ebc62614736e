"""Any nn.Module, layer by layer (engine/problem/blocks.py + analyses/infoloss.analyse_modules): rows are the
modules that own parameters, named by named_modules(), in parameter order; each answer below is worked out
by hand from the weights."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, jacrev

from basintui.engine.analyses import dependent, infoloss
from basintui.engine.analyses.rfactor import rank_at
from basintui.engine.problem.models import layout_of
from basintui.schema._layers import loses_information


def reference_G(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """G = Jᵀ (N × kd, named_parameters order, columns input-major) from torch.func, independent of the engine."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(p):
        return functional_call(model, p, (x,)).reshape(-1)

    jac = jacrev(f)(params)
    return torch.cat([jac[n].reshape(jac[n].shape[0], -1) for n in params], dim=1).T.contiguous()


def analyse(model: nn.Module, x: torch.Tensor, d: int):
    model = model.to(torch.float64).eval()
    layout = layout_of(model)
    G = reference_G(model, x)
    tol = infoloss.g_tolerance(G)
    la = infoloss.analyse_blocks(model, layout, x, G, tol, d)
    assert la.blocks[-1].cumulative_rank == rank_at(G, tol)  # the invariant, on every model here
    assert [b.n_params for b in la.blocks] and sum(b.n_params for b in la.blocks) == G.shape[0]
    return la, G, tol


def _set(layer: nn.Module, w, b=None) -> nn.Module:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
        if b is not None:
            layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
    return layer


def H(sizes) -> float:
    k = sum(sizes)
    return -sum(s / k * math.log2(s / k) for s in sizes)


# ----------------------------------------------------------------------------- residual: x + g(x)

RELU_X = torch.tensor(
    [[-1.0, 0.3], [-2.0, -0.7], [-0.5, 1.1], [-1.5, 2.0], [-3.0, -1.2], [-0.25, 0.9], [-2.5, 0.1], [-0.75, -2.2],
     [0.5, 0.2], [1.0, -0.4], [1.5, 1.3], [2.5, -1.7]], dtype=torch.float64)


class Residual(nn.Module):
    """head(x + relu(g(x))): g keeps relu(x1) and has a dead unit (weights 0, bias −1), so g merges the 8 inputs
    with x1 < 0, but x + relu(g(x)) is injective (its second coordinate is x2, its first x1 + relu(x1))."""

    def __init__(self):
        super().__init__()
        self.g = _set(nn.Linear(2, 2), [[1.0, 0.0], [0.0, 0.0]], [0.0, -1.0])
        self.act = nn.ReLU()
        self.head = _set(nn.Linear(2, 1), [[0.7, -0.4]], [0.2])

    def forward(self, x):
        return self.head(x + self.act(self.g(x)))


def test_residual_skip_makes_the_merge_no_loss_for_the_network():
    la = analyse(Residual(), RELU_X, 1)[0]
    g, head = la.blocks
    assert (g.module, head.module) == ("g", "head") and "g" in g.name and "Linear(2→2)" in g.name
    # g's output: the 8 inputs with x1 < 0 are all (0, 0); the 4 with x1 > 0 stay apart (relu(x1) distinct)
    assert (g.classes, g.largest_class, g.merged_class) == (5, 8, list(range(8)))
    assert g.bits_lost_here == H([1] * 12) - H([8, 1, 1, 1, 1]) and g.dead_units == 1
    assert g.skip_around and not g.dependence_guaranteed and not loses_information(g)
    assert g.params_upstream == 6 and g.dependence_bound == 7  # the bound is stated, not claimed: 8·1 > 7
    # the merged class's columns: g's rows are 0 there (relu inactive), head's are [x1, x2, 1]: rank 3
    assert g.merged_class_rank == 3
    assert "skip connection" in g.finding and "no information loss for the network" in g.finding
    # through the skip the head still tells all 12 apart, and its output is a cut (nothing goes around it)
    assert (head.classes, head.bits_lost, head.skip_around) == (12, 0.0, False)
    assert head.params_upstream == 9 and not head.dependence_guaranteed
    assert [b.position for b in la.blocks] == [2, 1]  # a skip_around row never outranks a cut one
    assert la.cut == "modules" and not la.call_order_differs


# ----------------------------------------------------------------------------- conv with a dead channel

class ConvNet(nn.Module):
    """conv (3 channels, 3×3 on 4×4) → ReLU → flatten → fc. Channel 2 is dead: weights 0, bias −1. Channels 0, 1
    have positive weights and the inputs are positive, so the ReLU is the identity there: the block output is
    a linear map of the 16 pixels onto 2 × 2×2 = 8 features plus 4 zeros."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv = nn.Conv2d(1, 3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(3, 1, 3, 3, generator=g) + 0.1)
            self.conv.bias.copy_(torch.tensor([0.1, 0.2, -1.0]))
            self.conv.weight[2] = 0.0
        self.act = nn.ReLU()
        self.fc = nn.Linear(12, 1)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


def _images(k: int = 12) -> torch.Tensor:
    return torch.rand(k, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.05


def _check_conv_rows(conv) -> None:
    # rank [X, 1] = 12 (12 generic images in R^16); [A, 1] = 8 live features + the ones column = 9
    assert conv.dead_units == 1 and conv.width == 12
    assert conv.activation_rank == 9 and conv.rank_drop == 3
    assert (conv.forced_rank_drop, conv.excess_rank_drop) == (0, 3)  # width 12 leaves room for 13
    assert conv.classes == 12 and conv.bits_lost_here == 0.0


def test_conv_layer_with_a_dead_channel_counts_it_and_drops_rank_exactly():
    la = analyse(ConvNet(), _images(), 1)[0]
    conv, _fc = la.blocks
    assert conv.module == "conv" and "Conv2d(1→3, 3×3)" in conv.name and not conv.skip_around
    _check_conv_rows(conv)
    assert "1 dead unit" in conv.finding
    # the same network as a flat Sequential: the Sequential path gives the same row (a channel is one unit)
    net = ConvNet()
    seq = nn.Sequential(net.conv, nn.ReLU(), nn.Flatten(), net.fc)
    la_s, _, _ = analyse(seq, _images(), 1)
    assert layout_of(seq).kind == "sequential"
    _check_conv_rows(la_s.blocks[0])


# ----------------------------------------------------------------------------- LayerNorm

class LNChain(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = _set(nn.Linear(2, 3, bias=False), [[1.0, 0.0], [0.0, 1.0], [1.0, -2.0]])
        self.ln = nn.LayerNorm(3, eps=0.0)
        self.out = _set(nn.Linear(3, 1), [[0.3, -0.2, 0.5]], [0.1])

    def forward(self, x):
        return self.out(self.ln(self.lin(x)))


def test_layernorm_merges_inputs_that_differ_by_a_positive_scale():
    """Without a bias, lin(2x) = 2·lin(x), and LayerNorm (eps 0) forgets a positive scale: x and 2x merge."""
    base = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.7, -1.1], [2.0, 0.2]], dtype=torch.float64)
    x = torch.cat([base, 2 * base])
    la = analyse(LNChain(), x, 1)[0]
    lin, ln, out = la.blocks
    assert [b.module for b in la.blocks] == ["lin", "ln", "out"] and "LayerNorm(3)" in ln.name
    assert lin.classes == 8 and ln.classes == 4 and ln.largest_class == 2
    assert ln.bits_lost_here == 1.0 and ln.bits_lost == 1.0 and ln.collision_kind == "linear"
    assert not ln.skip_around and ln.params_upstream == 6 + 6 and ln.dependence_bound == 13
    assert not ln.dependence_guaranteed  # 2·1 ≤ 13
    assert out.classes == 4 and out.bits_lost_here == 0.0
    # the same chain as a flat Sequential gives the same numbers
    net = LNChain()
    la_s, _, _ = analyse(nn.Sequential(net.lin, net.ln, net.out), x, 1)
    for a, b in zip(la.blocks, la_s.blocks):
        assert (a.classes, a.bits_lost_here, a.activation_rank, a.rank_drop, a.block_rank, a.cumulative_rank) == \
               (b.classes, b.bits_lost_here, b.activation_rank, b.rank_drop, b.block_rank, b.cumulative_rank)


# ----------------------------------------------------------------------------- Embedding on tokens

class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        with torch.no_grad():
            self.emb.weight.copy_(torch.tensor([[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [0.0, -1.0, 2.0],
                                                [0.2, 1.0, -0.3], [1.5, 0.5, 0.5]]))  # rows 1 and 3 equal
        self.fc = _set(nn.Linear(3, 2), [[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]], [0.0, 0.1])

    def forward(self, x):
        return self.fc(self.emb(x).flatten(1))


def test_embedding_rows_that_are_equal_merge_their_tokens_exactly():
    x = torch.tensor([[0], [1], [2], [3], [4]])
    la, G, tol = analyse(TokenNet(), x, 2)
    emb, _fc = la.blocks
    assert emb.module == "emb" and "Embedding(5×3)" in emb.name
    assert (emb.classes, emb.largest_class, emb.merged_class) == (4, 2, [1, 3])
    assert emb.bits_lost == math.log2(5) - H([2, 1, 1, 1]) and emb.bits_lost_here == emb.bits_lost
    assert not emb.skip_around and emb.params_upstream == 15 and emb.dependence_bound == 17
    # the 2·2 columns of tokens 1 and 3: identical on fc's rows, W's rows at E[1] vs at E[3]: rank 4
    assert emb.merged_class_rank == 4 and not emb.dependence_guaranteed
    dep = dependent.dependent_inputs(G, tol, 2, la.partitions, [b.name for b in la.blocks], R=la.R)
    assert dep.null_dim == 10 - rank_at(G, tol)


# ----------------------------------------------------------------------------- attention, order, fallback

class TinyTransformer(nn.Module):
    """Token + position embeddings, one attention block with a residual, unembedding of the last position.
    Parameters are registered in another order than the forward pass calls the modules."""

    def __init__(self, vocab: int = 5, dim: int = 4):
        super().__init__()
        self.unembed = nn.Linear(dim, vocab)
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(2, dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.ln = nn.LayerNorm(dim)

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.unembed(self.ln(h)[:, -1])


def test_attention_model_rows_in_parameter_order_with_the_call_order_stated():
    torch.manual_seed(0)
    x = torch.tensor([[a, b] for a in range(5) for b in range(5)][:12])
    la = analyse(TinyTransformer(), x, 5)[0]
    rows = {b.module: b for b in la.blocks}
    assert [b.module for b in la.blocks] == ["unembed", "tok", "pos", "attn", "ln"]  # out_proj joins attn
    assert [b.call_order for b in la.blocks] == [5, 1, 2, 3, 4] and la.call_order_differs
    assert rows["attn"].n_params == 4 * 12 + 12 + 4 * 4 + 4
    assert rows["attn"].skip_around and not rows["attn"].dependence_guaranteed  # the residual goes around it
    assert rows["pos"].classes == 1 and not rows["pos"].skip_around  # input-independent: the same for all
    assert "does not depend on the input" in rows["pos"].finding
    assert not rows["tok"].skip_around and not rows["ln"].skip_around and not rows["unembed"].skip_around
    assert "tuple" in rows["attn"].finding
    cum = [b.cumulative_rank for b in la.blocks]
    assert cum == sorted(cum)  # cumulative over G's rows in order


class Functional(nn.Module):
    """`lin` owns parameters but is never called: its weights are used functionally next to `other`."""

    def __init__(self):
        super().__init__()
        self.other = nn.Linear(2, 2)
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return nn.functional.linear(torch.tanh(self.other(x)), self.lin.weight, self.lin.bias)


def test_a_model_that_cannot_be_cut_gets_one_whole_model_row_and_the_reason():
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    la = analyse(Functional(), x, 1)[0]
    assert la.cut == "whole" and len(la.blocks) == 1 and "'lin'" in la.why_not and "never called" in la.why_not
    assert la.blocks[0].n_params == 9


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Linear(2, 2)
        self.out = nn.Linear(2, 1)

    def forward(self, x):
        return self.out(self.f(torch.tanh(self.f(x))))


def test_a_module_called_twice_is_placed_by_its_first_call_and_says_so():
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    la = analyse(Twice(), x, 1)[0]
    f, out = la.blocks
    assert f.calls == 2 and "called 2 times" in f.finding
    assert not f.skip_around and f.params_upstream == 6 and out.params_upstream == 9  # f(x) is a cut


def test_the_layers_stage_states_the_cut_the_order_and_the_fallback_reason():
    from types import SimpleNamespace

    from basintui.engine.cancel import CancelToken

    def stage(model, x, d):
        model = model.to(torch.float64).eval()
        G = reference_G(model, x)
        ctx = SimpleNamespace(G=G, spectrum=None, layout=layout_of(model), out_dim=d, model=model, x=x,
                              cancel=CancelToken())
        report = SimpleNamespace(notes=[], dependent_inputs=None, layers_info=None)
        rows = infoloss.analyse(ctx, report)
        return rows, report

    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rows, rep = stage(Functional(), x, 1)
    info = rep.layers_info
    assert info["whole_model"] and not info["available"] and info["cut"] == "whole" and len(rows) == 1
    assert "cannot be cut into its modules" in info["why_not"] and "'lin'" in info["why_not"]
    assert any("never called" in n for n in rep.notes)
    torch.manual_seed(0)
    tokens = torch.tensor([[a, b] for a in range(5) for b in range(5)][:12])
    rows, rep = stage(TinyTransformer(), tokens, 5)
    info = rep.layers_info
    assert info["cut"] == "modules" and info["available"] and info["call_order_differs"]
    assert "parameter order" in info["order_rule"] and "another order" in info["order_rule"]
    assert "skip_around" in info["dependence_rule"]
    assert rep.dependent_inputs.null_dim == 60 - rows[-1].cumulative_rank


class CastTokens(nn.Module):
    """Float inputs cast to token ids inside forward: the ids carry the input into `emb` (no autograd path)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 2)
        self.fc = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(self.emb(x[:, 0].long()))


def test_token_ids_cast_inside_forward_are_followed():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    la = analyse(CastTokens(), x, 1)[0]
    assert la.cut == "modules" and not any(b.skip_around for b in la.blocks)
    assert la.blocks[0].params_upstream == 8 and la.blocks[0].classes == 4


class HiddenPath(nn.Module):
    """`fc` sees a detached copy of the input: a path autograd does not record, not integer ids."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(1, 2)
        self.fc = nn.Linear(1, 1)

    def forward(self, x):
        return self.fc(x.detach()) * self.a(x).sum(dim=1, keepdim=True)


def test_an_input_path_autograd_cannot_see_falls_back_with_the_reason():
    x = torch.tensor([[0.5], [1.0], [2.0], [3.0]], dtype=torch.float64)
    la = analyse(HiddenPath(), x, 1)[0]
    assert la.cut == "whole" and "'fc'" in la.why_not and "autograd does not record" in la.why_not
