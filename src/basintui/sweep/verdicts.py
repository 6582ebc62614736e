"""What a sweep reads from one typed report: the counts a journal row keeps and the two verdicts.

- G is rank-deficient when rank(G) < min(N, kd) (the rank decided by the report's one rule, in float64).
  When the rank is only a lower bound (the matfree route) and lies below min(N, kd), it is undecided.
- The Hessian is rank-deficient, by the Weyl count at the residual's scale, when fewer of H's eigenvalues
  lie outside the band [−b, b] (b = ‖H − GGN‖₂, or the resolution floor) than the most that can: min(N, kd),
  or min(N, k(d − 1)) for cross-entropy on logits, whose loss Hessian has rank d − 1 per input. At a
  zero-residual point this is rank(H) < its generic value; at a non-zero residual it is the only count that
  the residual cannot move. A lower-bound count (Lanczos) below the cap is undecided. Hessian off: None.
Torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..schema import Report


def hessian_cap(report: Report) -> int | None:
    g, data, h = report.G, report.data, report.hessian
    if g is None or h is None:
        return None
    if h.loss == "ce" and report.config.analysis.ce_output == "logits" and data is not None:
        return min(g.n_params, data.n_train * max(data.out_dim - 1, 0))
    return min(g.n_params, g.n_outputs)


def row_fields(report: Report) -> dict[str, Any]:
    """The journal row's numbers from one report (the status, attempts and timing are the caller's)."""
    g, h = report.G, report.hessian
    out: dict[str, Any] = {"training_status": report.training.status, "final_loss": report.training.final_loss,
                           "engine_seconds": report.total_seconds}
    if g is None:
        return out
    full = min(g.n_params, g.n_outputs)
    out.update(rank=g.rank, kernel_dim=g.kernel_dim, generic_dim=g.generic_dim, n_params=g.n_params,
               n_outputs=g.n_outputs, near_threshold=g.near_threshold, rank_exact=g.rank_exact, full_rank=full,
               g_deficient=(g.rank < full) if (g.rank_exact or g.rank >= full) else None)
    weyl = h.weyl if h is not None else None
    if weyl is not None:
        cap = hessian_cap(report)
        decided = weyl.outside_band_exact or (cap is not None and weyl.outside_band >= cap)
        out.update(weyl_outside_band=weyl.outside_band, weyl_outside_band_exact=weyl.outside_band_exact,
                   hessian_full_rank=cap,
                   hessian_deficient=(weyl.outside_band < cap) if decided and cap is not None else None)
    return out
