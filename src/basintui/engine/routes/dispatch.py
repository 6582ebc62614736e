"""G's spectrum on a named route (limits.ROUTES), the one place that dispatches them.

`spectrum_on_route` runs one route end to end and returns the spectrum with what the later stages
may need (G if it was formed, the Linear factors, a way to form G). `auto` takes the route
`limits.choose_route` picks from the memory available now. The session wraps the steps in its
stages (`stage`); benchmarks call it bare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...limits import SAFETY, TOP_K, choose_route, streamed_route
from . import jacobian
from ..numerics import spectrum
from ..cancel import CancelToken
from ..problem.models import Layout

Stage = Callable[[str, Callable[[], Any]], Any]


@dataclass
class RouteResult:
    spectrum: spectrum.Spectrum
    how: str  # how G was reached ("factored linear", "linear", "streamed over 6 parameter chunks", …)
    build_G: Callable[[], torch.Tensor]  # forms G (N × kd) for the stages that need it
    G: torch.Tensor | None = None  # G, when the route formed it
    factors: Any = None  # gram.LinearFactors on the factored route
    warnings: list[str] = field(default_factory=list)


def _bare(_name: str, fn: Callable[[], Any]) -> Any:
    return fn()


def spectrum_on_route(route: str, model: nn.Module, layout: Layout, x: torch.Tensor, *, out_dim: int | None = None,
                      transform: jacobian.Transform = None, cancel: CancelToken | None = None, rtol: float = 0.0,
                      top_k: int = TOP_K, stage: Stage = _bare) -> RouteResult:
    """The spectrum of G for `model` (float64) on `x` by `route`: auto, explicit, factored,
    streamed (over parameters when kd ≤ N, else over inputs), streamed-params, streamed-inputs or
    matfree. Steps that take time run inside `stage("jacobian" | "spectrum", fn)`."""
    if out_dim is None:
        with torch.no_grad():
            out = model(x[:1])
            out_dim = (transform(out) if transform is not None else out).shape[-1]
    N, kd = layout.n_params, x.shape[0] * out_dim

    def form_G() -> torch.Tensor:
        return jacobian.compute_G(model, layout, x, transform=transform, cancel=cancel)[0]

    if route == "auto":
        from ..memory import available_bytes

        route = choose_route(N, kd, jacobian.linear_path_ok(model), SAFETY * available_bytes(x.device),
                             top_k=top_k).route
    if route == "streamed":
        route = streamed_route(N, kd)
    if route == "explicit":
        G, how = stage("jacobian", lambda: jacobian.compute_G(model, layout, x, transform=transform, cancel=cancel))
        spec = stage("spectrum", lambda: spectrum.spectrum_of(G, rtol=rtol, cancel=cancel))
        return RouteResult(spec, how, lambda: G, G=G)
    if route == "matfree":
        from . import matfree

        top = stage("spectrum", lambda: matfree.top_singular_values(model, layout, x, top_k, transform=transform,
                                                                     cancel=cancel))
        spec = spectrum.analyse(top.singular_values, N, kd, rtol=rtol, method=top.method, complete=False)
        warn = [] if top.converged else [f"svds did not converge in {top.products} products; the values are "
                                         "ARPACK's last estimates"]
        return RouteResult(spec, "J and Jᵀ products", form_G, warnings=warn)
    if route == "factored":
        from .gram import linear_factors

        factors = stage("jacobian", lambda: linear_factors(model, layout, x, transform=transform, cancel=cancel))
        sv, method = stage("spectrum", lambda: spectrum.factored_singular_values(factors, cancel, rtol))
        return RouteResult(spectrum.analyse(sv, N, kd, rtol=rtol, method=method), "factored linear",
                           factors.materialize, factors=factors)
    if route == "streamed-params":
        from .stream import param_chunks

        source = param_chunks(model, layout, x, transform=transform)
        how = f"streamed over {source.n_blocks} parameter chunk{'s' if source.n_blocks != 1 else ''}"
    elif route == "streamed-inputs":
        source = jacobian.InputChunks(model, layout, x, transform=transform, out_dim=out_dim)
        how = f"streamed over input chunks of {source.chunk}"
    else:
        raise ValueError(f"unknown spectrum route {route!r}")
    sv, method = stage("spectrum", lambda: spectrum.streamed_singular_values(source, cancel, rtol))
    return RouteResult(spectrum.analyse(sv, N, kd, rtol=rtol, method=method), how, form_G)
