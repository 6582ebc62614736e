"""Ranks of G's parts from triangular factors (G = QR, Q orthonormal: any subset of columns or leading rows
of G has the singular values of the matching part of R), at G's absolute tolerance."""

from __future__ import annotations

import torch

from ..numerics.spectrum import count_above, svdvals


def qr_r(M: torch.Tensor) -> torch.Tensor:
    if M.shape[0] == 0:
        return M
    return torch.linalg.qr(M, mode="r")[1]


def rank_at(M: torch.Tensor, tol: float) -> int:
    """The report's one rank rule (spectrum.count_above) on M's singular values, at G's tolerance."""
    if M.numel() == 0:
        return 0
    return count_above(svdvals(M), tol)


def column_factor(G: torch.Tensor) -> torch.Tensor:
    """A matrix with G's columns' geometry (the same singular values of any column subset, the same
    column null space and distances): R of G = QR when G has more rows than columns (kd × kd instead of
    N × kd), G itself otherwise (Q would be square: nothing to gain, and no copy)."""
    return qr_r(G) if G.shape[0] > G.shape[1] else G


class LeadingRows:
    """Ranks of G's leading rows G[:s] (N × kd), asked for increasing s (the layer report's cumulative
    ranks over blocks in parameter order), each paid once:

    - s ≤ kd: from one QR of the leading columns of Gᵀ, Gᵀ[:, :S] = Q T (S the largest such s asked for,
      given up front): G[:s] has the singular values of T[:s, :s], an s × s triangle;
    - s > kd: from R of G[:s] = QR, kd × kd, brought up to date block by block.

    (The old way, R of the stacked rows refactored and decomposed at every block, cost s²·kd per block
    while s < kd: minutes on a transformer with kd in the tens of thousands.)"""

    def __init__(self, G: torch.Tensor, bounds: list[int]) -> None:
        self.G = G
        kd = G.shape[1]
        S = max((s for s in bounds if s <= kd), default=0)
        self.T = qr_r(G[:S].T.contiguous()) if S else G[:0, :0]
        self.R: torch.Tensor | None = None
        self.upto = 0  # rows of G that R covers

    def rank(self, s: int, tol: float) -> int:
        if s <= self.T.shape[1]:
            return rank_at(self.T[:s, :s], tol)
        start = self.upto if self.R is not None else 0
        stacked = self.G[start:s] if self.R is None else torch.cat([self.R, self.G[start:s]], dim=0)
        self.R, self.upto = qr_r(stacked)[: self.G.shape[1]], s
        return rank_at(self.R, tol)

    def column_factor(self) -> torch.Tensor:
        """column_factor(G), reusing R when it already covers every row."""
        if self.R is not None and self.upto == self.G.shape[0] and self.R.shape[0] <= self.G.shape[1]:
            return self.R
        return column_factor(self.G)
