"""Built-in architectures beyond the MLP: a small CNN, a one-layer transformer and a residual MLP.

`build(cfg, in_dim, out_dim)` dispatches on `model.kind` (`cnn`, `transformer`, `resmlp`). Every model
takes a batch first and returns (batch, out_dim); none couples the inputs of a batch. Their parameter
counts are `basintui.planner.zoo_params` (torch-free, so the Setup pane knows N before anything runs):
tests/test_zoo.py checks the two agree. Init is torch's default, drawn from the global RNG, which the
session seeds with the preset's seed just before building.

- `cnn`: for image inputs (batch, C, H, W) (`data.layout = "image"`): one 3×3 Conv2d (padding 1, so
  H × W is kept) per entry of `model.hidden` (its channels), each followed by the activation, then
  flatten and one Linear to the outputs.
- `transformer`: for token inputs (batch, T) (`data.kind = "modular"`: T = 2, tokens a and b in [0, p)).
  Token and position embeddings (width `hidden[0]`), one attention block with `model.heads` heads
  (separate q, k, v, o Linear maps) and a residual, an MLP (width `hidden[1]`) with a residual,
  LayerNorm before each when `model.layernorm` (default true) and before the unembedding, and the
  unembedding read at the last position, so out_dim = p logits. Tokens may arrive as floats holding
  integers (the session keeps inputs in the run's dtype): they are rounded to long before the lookup.
- `resmlp`: for flat inputs (batch, in_dim): a Linear embedding to the width, then one residual block
  x + act(Linear(LayerNorm(x))) per entry of `model.hidden` (all entries equal: the width), a final
  LayerNorm and a Linear head. `model.layernorm = false` drops the LayerNorms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...config import IMAGE_SHAPE, TOKEN_POSITIONS, ModelConfig, zoo_heads, zoo_layernorm
from ..errors import InputError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
               "leaky_relu": nn.LeakyReLU, "linear": nn.Identity}


def _act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


class Conv2d(nn.Conv2d):
    """nn.Conv2d (stride 1, same parameters and state_dict), computed as unfold + matmul: the Hessian's
    vmapped forward-over-reverse products run ~40× faster through a matmul than through conv2d's own
    batching rule (measured: 64 columns of a 1,348-parameter cnn's Hessian, 2.8 s → 0.07 s)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cols = nn.functional.unfold(x, self.kernel_size, padding=self.padding)  # (b, c·kh·kw, h·w)
        out = self.weight.reshape(self.out_channels, -1) @ cols
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.reshape(b, self.out_channels, h, w)


class ConvNet(nn.Module):
    """conv → act → … → conv → act → flatten → Linear, on (batch, C, H, W) images."""

    def __init__(self, image: tuple[int, int, int], channels: tuple[int, ...], out_dim: int, activation: str,
                 bias: bool) -> None:
        super().__init__()
        c, h, w = image
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [Conv2d(c, ch, kernel_size=3, padding=1, bias=bias), _act(activation)]
            c = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, out_dim, bias=bias)
        self.image = image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class Attention(nn.Module):
    """Multi-head self-attention over the positions of one sequence (never across the batch)."""

    def __init__(self, width: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=bias)
        self.k = nn.Linear(width, width, bias=bias)
        self.v = nn.Linear(width, width, bias=bias)
        self.o = nn.Linear(width, width, bias=bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, w = h.shape
        hd = w // self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, self.heads, hd).transpose(1, 2)  # (b, heads, t, hd)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        return self.o((weights @ v).transpose(1, 2).reshape(b, t, w))


class MLPBlock(nn.Module):
    def __init__(self, width: int, inner: int, activation: str, bias: bool) -> None:
        super().__init__()
        self.fc_in = nn.Linear(width, inner, bias=bias)
        self.act = _act(activation)
        self.fc_out = nn.Linear(inner, width, bias=bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.act(self.fc_in(h)))


def _norm(width: int, on: bool) -> nn.Module:
    return nn.LayerNorm(width) if on else nn.Identity()


class Transformer(nn.Module):
    """One-layer transformer on token sequences (batch, T); the logits at the last position."""

    def __init__(self, vocab: int, positions: int, width: int, inner: int, out_dim: int, heads: int,
                 activation: str, bias: bool, layernorm: bool) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(positions, width)
        self.ln_attn = _norm(width, layernorm)
        self.attn = Attention(width, heads, bias)
        self.ln_mlp = _norm(width, layernorm)
        self.mlp = MLPBlock(width, inner, activation, bias)
        self.ln_out = _norm(width, layernorm)
        self.unembed = nn.Linear(width, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x if not x.is_floating_point() else torch.round(x).long()
        t = tokens.shape[1]
        h = self.embed(tokens) + self.pos(torch.arange(t, device=tokens.device))
        h = h + self.attn(self.ln_attn(h))
        h = h + self.mlp(self.ln_mlp(h))
        return self.unembed(self.ln_out(h[:, -1]))


class ResBlock(nn.Module):
    def __init__(self, width: int, activation: str, bias: bool, layernorm: bool) -> None:
        super().__init__()
        self.norm = _norm(width, layernorm)
        self.fc = nn.Linear(width, width, bias=bias)
        self.act = _act(activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.act(self.fc(self.norm(h)))


class ResMLP(nn.Module):
    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int, activation: str, bias: bool,
                 layernorm: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, width, bias=bias)
        self.blocks = nn.Sequential(*[ResBlock(width, activation, bias, layernorm) for _ in range(depth)])
        self.norm = _norm(width, layernorm)
        self.head = nn.Linear(width, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.embed(x))))


def build(cfg: ModelConfig, in_dim: int, out_dim: int) -> nn.Module:
    """The built-in model `cfg.kind` for these inputs (config validation has matched kind and data: a cnn
    gets digits as images, IMAGE_SHAPE; a transformer gets modular tokens with labels as targets, so its
    vocabulary is out_dim = p). `in_dim` is the resmlp's input width."""
    if cfg.kind == "cnn":
        return ConvNet(IMAGE_SHAPE, cfg.hidden, out_dim, cfg.activation, cfg.bias)
    if cfg.kind == "transformer":
        width, inner = cfg.hidden
        return Transformer(out_dim, TOKEN_POSITIONS, width, inner, out_dim, zoo_heads(cfg), cfg.activation,
                           cfg.bias, zoo_layernorm(cfg))
    if cfg.kind == "resmlp":
        return ResMLP(in_dim, cfg.hidden[0], len(cfg.hidden), out_dim, cfg.activation, cfg.bias, zoo_layernorm(cfg))
    raise InputError("model.kind", f"{cfg.kind!r} is not a built-in architecture (cnn, transformer, resmlp)")
