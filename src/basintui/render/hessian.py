"""Headless views of the Hessian and level-set sections, read from the report's dict form."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

VERDICT_STYLE = {"holds": "bold green", "fails": "bold red", "not_applicable": "bold yellow"}


def _g(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _yes(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def hessian_view(r: dict[str, Any]) -> RenderableType | None:
    h = r.get("hessian")
    if not h:
        return None
    t = Table(title="Hessian of the total loss vs Gauss-Newton GQGᵀ", show_header=False, title_justify="left",
              box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("rank(H)", Text(f"rank(H) = {_g(h['rank'])}", style="bold") if h["rank"] is not None
              else Text(f"rank(H) not measured ({h['rank_method']})"))
    t.add_row("rank(GGN)", f"rank(GGN) = {h['rank_ggn']}   (rank(G) = {h['rank_G']})")
    t.add_row("rank(H − GGN)", _g(h["rank_residual"]))
    t.add_row("tolerance", f"{h['tolerance']:.3g} = {h['tolerance_rule']}")
    at = h.get("rank_at_rtol")
    if at:
        t.add_row("rank at rtol", "; ".join(f"{key}·σ₁²q_max: H {v['H']}, GGN {v['GGN']}, H − GGN {v['residual']}"
                                            for key, v in at.items()))
    t.add_row("eigenvalues", f"λ_max = {_g(h['lambda_max'], 4)}, λ_min = {_g(h['lambda_min'], 4)}"
              + (f", {h['n_negative']} negative" if h.get("n_negative") is not None else ""))
    t.add_row("method", f"{h['method']}; loss = {h['reduction']}")
    t.add_row("loss in output space", f"{h['loss_formula']} ({h['loss_hessian']})")

    hyp = Table(title="Claim 3's hypotheses", title_justify="left", box=None, pad_edge=False)
    hyp.add_column("hypothesis", style="bold")
    hyp.add_column("measured")
    hyp.add_column("threshold")
    hyp.add_column("holds")
    hs = h["hypotheses"]
    hyp.add_row("critical point ‖∇θL‖", _g(hs["critical_point"]["value"]), _g(hs["critical_point"]["threshold"]),
                _yes(hs["critical_point"]["holds"]))
    hyp.add_row("zero residual ‖∇_Fℓ‖", _g(hs["zero_residual"]["value"]), _g(hs["zero_residual"]["threshold"]),
                _yes(hs["zero_residual"]["holds"]))
    hyp.add_row(f"Q diagonal, positive ({h['loss_hessian']})", f"min eig {_g(hs['loss_hessian_positive']['value'])}",
                _g(hs["loss_hessian_positive"]["threshold"]),
                _yes(hs["loss_hessian_positive"]["holds"] and h["loss_hessian"] != "full"))
    hyp.add_row("‖H − GGN‖ / ‖H‖", _g(h["residual_rel"]), "—", "")

    c3 = h["claim3"]
    verdict = Text.assemble(("Claim 3 (rank H = rank G): ", "bold"), (c3["verdict"], VERDICT_STYLE.get(c3["verdict"], "")))
    why = Text(c3["why"], style="italic")
    notes = [Text(n, style="dim") for n in h.get("notes", [])]
    return Group(t, Text(""), hyp, Text(""), verdict, why, *notes)


def levelset_view(r: dict[str, Any]) -> RenderableType | None:
    ls = r.get("levelset")
    if not ls:
        return None
    t = Table(title="Level set through θ", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("rank locally constant", Text.assemble(_yes(ls["locally_constant_rank"]),
              "  (rank(G) at θ = " + str(ls["rank_at_theta"]) + "; probes: "
              + ", ".join(f"ρ={p['radius']:.0e}: {p['ranks']}" for p in ls["rank_probes"]) + ")"))
    t.add_row("estimated dimension", Text(f"{ls['estimated_dim']}", style="bold"))
    t.add_row("kernel dim N − r", str(ls["kernel_dim"]))
    t.add_row("generic dim N − kd", _g(ls["generic_dim"]))
    t.add_row("how", ls["estimated_dim_method"])
    w = ls["walk"]
    if w["points"]:
        res = [p["residual_after"] for p in w["points"]]
        t.add_row("walk", f"{w['directions']} kernel directions of {w['kernel_directions_total']}, step h = "
                          f"{w['step']:.3g}; {w['converged']} retracted, residual after ≤ {max(res):.2g}")
    c1 = ls["claim1"]
    t.add_row("Claim 1 exponents", f"null directions {_g(c1['null_exponent'])} (expect 2), row space "
                                   f"{_g(c1['row_exponent'])} (expect 1)" + (f"; {c1['why']}" if c1.get("why") else ""))
    return Group(t, Text("\n".join(ls.get("meaning", [])), style="italic"))
