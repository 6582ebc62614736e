"""The critique's examples (seed 003) as models: parameters starting at 0, one output per input that
ignores the input, so θ = 0 is a singular point where G = 0 and rank(G) = 0.

Pick one with `--set model.factory=critique:NAME`:

    bowl    f = a² + b²        level set {0}: a point
    valley  f = a²             the b-axis: a line, a manifold
    flat    f = 0              the whole plane
    cross   f = a² − b²        two lines crossing at 0: dimension 1, not a manifold there
    cone    f = a² + b² − c²   a cone: dimension 2, not a manifold at its tip
"""

from __future__ import annotations

import torch
from torch import nn

FORMULAS = {
    "bowl": (2, lambda p: p[0] ** 2 + p[1] ** 2),
    "valley": (2, lambda p: p[0] ** 2 + 0.0 * p[1]),
    "flat": (2, lambda p: 0.0 * p.sum()),
    "cross": (2, lambda p: p[0] ** 2 - p[1] ** 2),
    "cone": (3, lambda p: p[0] ** 2 + p[1] ** 2 - p[2] ** 2),
}


class Critique(nn.Module):
    def __init__(self, kind: str, out_dim: int) -> None:
        super().__init__()
        n, self.f = FORMULAS[kind]
        self.kind = kind
        self.out_dim = out_dim
        self.p = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(self.p) * torch.ones(x.shape[0], self.out_dim, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def bowl(in_dim: int, out_dim: int) -> nn.Module:
    return Critique("bowl", out_dim)


def valley(in_dim: int, out_dim: int) -> nn.Module:
    return Critique("valley", out_dim)


def flat(in_dim: int, out_dim: int) -> nn.Module:
    return Critique("flat", out_dim)


def cross(in_dim: int, out_dim: int) -> nn.Module:
    return Critique("cross", out_dim)


def cone(in_dim: int, out_dim: int) -> nn.Module:
    return Critique("cone", out_dim)
