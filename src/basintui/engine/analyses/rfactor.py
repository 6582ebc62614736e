"""Ranks of G's parts from its triangular factor R (G = QR, Q orthonormal: any subset of columns or
leading rows of G has the singular values of the matching part of R), at G's absolute tolerance."""

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
