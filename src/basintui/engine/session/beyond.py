"""The session's stages beyond the rank (issue 18): symmetry, soft, probe, llc, slices.

Each takes the run's Context and the Report so far and returns its section (plain data or an object with
to_dict()); the arrays a section does not carry in JSON go to `report.arrays` (the NPZ). Progress goes
through the meter on the cancel token, and every loop looks at the cancel token.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import memory, progress
from ..problem.models import flat_params

TRACE_POINTS = 200  # points per chain of the LLC's loss trace kept in the JSON (the NPZ has every draw)
SLICE_SIZE = 21


def symmetry_stage(ctx, report) -> Any:
    from ..analyses import symmetry

    spec, meter = ctx.spectrum, progress.of(ctx.cancel)
    meter.expect(2, "steps")  # the tangents; the split of the kernel
    n = ctx.layout.n_params
    widths = sum(m.out_features for m in ctx.model.modules() if isinstance(m, torch.nn.Linear))
    need = 3 * 8 * n * (widths + symmetry.MAX_TANGENTS)  # the tangents, their basis and Gᵀ times it
    if need > memory.SAFETY * memory.available_bytes(ctx.device):
        why = (f"the tangents ({n} × up to {widths + symmetry.MAX_TANGENTS}, about {need / 2**30:.1f} GiB) do not "
               "fit in memory: no symmetry or dead-unit directions were searched, and the whole kernel counts as "
               "data-dependent (an upper bound)")
        found = symmetry.Found([], [], np.zeros(0, dtype=np.int64), False, [why])
    else:
        found = symmetry.find(ctx.model, ctx.layout, ctx.x, probabilities=ctx.transform is not None)
    ctx.cancel.check()
    meter.update(1, upto=2)
    sigma1 = float(spec.singular_values[0]) if len(spec.singular_values) else 0.0
    out = symmetry.split(found, ctx.G, spec.tolerance, spec.rank, sigma1, rank_exact=spec.rank_exact)
    dead = {u for u in found.dead_units}
    live = [t.vector for t in found.tangents if t.unit is None or t.unit not in dead]
    ctx.extras["symmetry_tangents"] = np.stack(live, axis=1) if live else None
    return out


def soft_stage(ctx, report) -> Any:
    from ..analyses import soft

    progress.of(ctx.cancel).expect(1, "curves")
    return soft.analyse(ctx, report)


def probe_stage(ctx, report) -> Any:
    from ..analyses import probe

    progress.of(ctx.cancel).expect(1, "steps")
    return probe.analyse(ctx, report)


def llc_stage(ctx, report) -> dict[str, Any]:
    from ..analyses import llc

    c, meter = ctx.preset.llc, progress.of(ctx.cancel)
    settings = llc.LLCSettings(chains=c.chains, draws=c.draws, burnin=c.burnin, step=c.step or None,
                               gamma=c.gamma, beta=c.beta or None, seed=ctx.preset.seed)
    meter.expect(c.burnin + c.draws, "SGLD steps")
    loss = llc.model_loss(ctx.model, ctx.layout, ctx.x, ctx.y, ctx.loss)
    res = llc.estimate_llc(loss, flat_params(ctx.model), len(ctx.x), settings,
                           cancel=lambda: ctx.cancel.cancelled, progress=lambda done, total: meter.update(done))
    report.arrays["llc_traces"] = np.asarray(res.traces, dtype=np.float64)
    hess = report.hessian
    dense = hess is not None and getattr(hess, "method", "") == "dense"
    quad = quadratic_llc(hess.eigenvalues, res.nbeta, res.gamma) if dense else None
    return llc_section(res, getattr(hess, "rank", None), quad)


def quadratic_llc(eigenvalues, nbeta: float, gamma: float) -> float:
    """½ Σ nβhᵢ/(nβhᵢ + γ) over H's positive eigenvalues: the sampler's λ̂ if the loss were its quadratic
    model at θ (directions with nβh ≪ γ are held by the localisation and add almost nothing)."""
    h = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None) * nbeta
    return float(0.5 * np.sum(h / (h + gamma))) if gamma > 0 else float(0.5 * np.sum(h > 0))


def llc_section(res, rank_h: int | None, quadratic: float | None = None) -> dict[str, Any]:
    """The `llc` section from an LLCResult, with rank(H)/2, N/2 and the sentence on their relation."""
    traces = np.asarray(res.traces, dtype=np.float64)
    stride = max(1, math.ceil(traces.shape[1] / TRACE_POINTS)) if traces.size else 1
    thinned = [[float(np.mean(row[i: i + stride])) for i in range(0, len(row), stride)] for row in traces]
    half_h = None if rank_h is None else rank_h / 2
    diag = {"chain_estimates": list(res.chain_estimates), "traces": thinned, "trace_stride": stride,
            "init_loss": res.init_loss, "diverged": list(res.diverged), "rhat": res.rhat,
            "step_too_large": res.step_too_large, "rising": res.rising, "below_init": res.below_init,
            "curvature_top": res.curvature_top, "warnings": list(res.warnings), "cancelled": res.cancelled,
            "parallel": res.parallel}
    return {"estimate": res.estimate, "std": res.std, "se": res.se, "chains": res.chains, "draws": res.draws,
            "draws_done": res.draws_done, "burnin": res.burnin, "step": res.step, "step_auto": res.step_auto,
            "gamma": res.gamma, "beta": res.beta, "nbeta": res.nbeta, "n": res.n, "n_params": res.n_params,
            "half_n": res.n_params / 2, "rank_H": rank_h, "half_rank_H": half_h,
            "quadratic": quadratic,
            "relation": relation(res, rank_h, quadratic), "seconds": res.seconds,
            "diagnostics": diag}


def relation(res, rank_h: int | None, quadratic: float | None = None) -> str:
    """llc.meaning (λ̂ beside rank(H)/2 and N/2, three standard errors decide) and, with a dense Hessian, what
    the loss's quadratic model at θ predicts at the sampler's nβ and γ."""
    from ..analyses import llc

    text = llc.meaning(res, rank_h)
    if quadratic is None or not math.isfinite(res.estimate):
        return text
    band = 3 * res.se if math.isfinite(res.se) else 0.0
    agrees = abs(res.estimate - quadratic) <= band
    return text + (f" At the sampler's scale (nβ, γ) the quadratic model of the loss at θ predicts {quadratic:.3g}: "
                   + ("λ̂ agrees, so what the chains see is the curvature H already shows." if agrees else
                      "λ̂ differs, so the chains see beyond the quadratic model (higher-order terms, or chains not yet "
                      "at equilibrium: see the diagnostics)."))


def slices_stage(ctx, report) -> dict[str, Any]:
    from ..analyses import llc, slices

    spec, n = ctx.spectrum, ctx.layout.n_params
    memory.check_fits("analysis.slices", f"an orthonormal basis of null(Gᵀ) ({n} × {n})", 2 * 8 * n * n, ctx.device,
                      "turn off analysis.slices")
    U = torch.linalg.svd(ctx.G, full_matrices=True)[0]
    ctx.cancel.check()
    null = U[:, spec.rank:]
    sym = ctx.extras.get("symmetry_tangents")
    sym_t = None if sym is None else torch.as_tensor(sym, dtype=torch.float64, device=U.device)
    loss = llc.model_loss(ctx.model, ctx.layout, ctx.x, ctx.y, ctx.loss)
    meter = progress.of(ctx.cancel)
    meter.expect(SLICE_SIZE**2, "points")
    res = slices.loss_slice(lambda t: loss(t, None), flat_params(ctx.model), null, U[:, 0], symmetry=sym_t,
                            size=SLICE_SIZE, cancel=lambda: ctx.cancel.cancelled,
                            progress=lambda done, total: meter.update(done))
    report.arrays.update(slice_loss=res.loss, slice_u=res.a, slice_v=res.b, slice_direction_u=res.u,
                         slice_direction_v=res.v)
    return slice_section(res)


def slice_section(res) -> dict[str, Any]:
    flat = "stays flat" if res.rise_u <= 0.1 * max(res.rise_v, 0.0) else "rises too"
    first = (f"Along u ({res.u_kind}) the loss changes by at most {res.rise_u:.3g} within ±{res.extent:.3g}; along "
             f"v ({res.v_kind}) it rises by {res.rise_v:.3g}: u {flat} at this distance.")
    meaning = [first]
    if res.note:
        meaning.append(res.note)
    return {"u_kind": res.u_kind, "v_kind": res.v_kind, "shape": list(res.loss.shape), "extent": res.extent,
            "loss_at_theta": res.center_loss, "loss_min": res.loss_min, "loss_max": res.loss_max,
            "rise_u": res.rise_u, "rise_v": res.rise_v, "note": res.note, "cancelled": res.cancelled,
            "a": res.a.tolist(), "b": res.b.tolist(), "loss": res.loss.tolist(), "meaning": meaning}
