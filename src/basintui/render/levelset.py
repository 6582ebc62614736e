"""Headless views of the level-set section (report["levelset"], its dict form): the answer (dimension,
manifold yes / no / cannot tell with the reason, whether it depends on the probe radius) and the
per-radius table. Shared by the CLI summary and the TUI's Level set pane; every key is optional, so an
older report without the per-radius keys still renders."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .fmt import fmt


def _g(v: Any, digits: int = 3) -> str:
    return fmt(v, digits)


def manifold_text(ls: dict[str, Any]) -> Text:
    """yes / no / cannot tell, coloured, for the top-level verdict (absent in older reports: not measured)."""
    if "manifold" not in ls:
        return Text("not in this report (an older probe)", style="dim")
    m = ls.get("manifold")
    if ls.get("radius_dependent"):
        return Text("depends on the probe radius", style="bold yellow")
    if m is True:
        return Text("yes", style="bold green")
    if m is False:
        return Text("no", style="bold red")
    return Text("cannot tell", style="bold yellow")


def dimension_text(ls: dict[str, Any]) -> Text:
    if ls.get("radius_dependent"):
        return Text("depends on the probe radius (see the table)", style="bold yellow")
    d = ls.get("estimated_dim")
    if d is None:
        return Text("not measured", style="bold yellow")
    return Text(str(d), style="bold")


def radius_warning(ls: dict[str, Any]) -> Text | None:
    """One line, only when the answer changes with the probe radius."""
    if not ls.get("radius_dependent"):
        return None
    return Text("⚠ The answer depends on the probe radius: no single dimension or verdict is given; "
                "read the per-radius table.", style="bold yellow")


def _short(v: Any) -> Text:
    if v is True:
        return Text("yes", style="green")
    if v is False:
        return Text("no", style="red")
    return Text("?", style="yellow")


def by_radius_table(ls: dict[str, Any], why: bool = True) -> Table | None:
    """One row per probe radius: ρ, dimension, manifold, points (converged / returned to θ*), branch
    dimensions seen (dimension × count), the largest angle between tangent spaces and the reason."""
    rows = ls.get("by_radius") or []
    if not rows:
        return None
    t = Table(title="By probe radius", title_justify="left", box=None, pad_edge=False, header_style="bold")
    t.add_column("ρ", no_wrap=True)
    t.add_column("dim", justify="right")
    t.add_column("manifold")
    t.add_column("conv/pts", justify="right", no_wrap=True)
    t.add_column("at θ*", justify="right")
    t.add_column("branches", no_wrap=True)
    t.add_column("angle", justify="right", no_wrap=True)
    if why:
        t.add_column("why", ratio=1)
    for e in rows:
        branches = ", ".join(f"{d}×{c}" for d, c in (e.get("branch_dims") or {}).items()) or "—"
        angle = e.get("max_angle_deg")
        cells = [f"{e.get('radius', 0.0):.0e}", _g(e.get("dimension")), _short(e.get("manifold")),
                 f"{e.get('converged', '—')}/{e.get('points', '—')}", _g(e.get("returned")), branches,
                 "—" if angle is None else f"{angle:.1f}°"]
        if why:
            cells.append(Text(str(e.get("why", "")), style="dim"))
        t.add_row(*cells)
    return t


def facts_table(ls: dict[str, Any], title: str | None = "Level set through θ") -> Table:
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("dimension", dimension_text(ls))
    t.add_row("manifold", manifold_text(ls))
    if ls.get("manifold_why"):
        t.add_row("why", Text(ls["manifold_why"], style="italic"))
    if "locally_constant_rank" in ls:
        const = ls["locally_constant_rank"]
        probes = ls.get("rank_probes") or []
        detail = ""
        if probes:
            detail = ("  (rank(G) at θ = " + _g(ls.get("rank_at_theta")) + "; probes: "
                      + ", ".join(f"ρ={p['radius']:.0e}: {p['ranks']}" for p in probes) + ")")
        t.add_row("rank locally constant", Text.assemble(_short(const), detail))
    t.add_row("kernel dim N − r", _g(ls.get("kernel_dim")) + "  (an upper bound on any smooth piece)")
    t.add_row("generic dim N − kd", _g(ls.get("generic_dim")))
    if ls.get("estimated_dim_method") and ls.get("estimated_dim_method") != ls.get("manifold_why"):
        t.add_row("how", ls["estimated_dim_method"])
    w = ls.get("walk") or {}
    if w.get("radii"):
        ev = w.get("evaluations") or {}
        secs = w.get("seconds")
        t.add_row("walk", f"{w.get('points_per_radius')} points per radius ({w.get('radius_rule', '')}); "
                          f"{w.get('converged')} of {w.get('directions')} retracted"
                          + (f"; {ev.get('F')} evaluations of F, {ev.get('J')} of J" if ev else "")
                          + (f"; {secs:.1f} s" if isinstance(secs, (int, float)) else ""))
    elif w:
        t.add_row("walk", ", ".join(f"{k} {_g(v)}" for k, v in w.items() if not isinstance(v, (list, dict))))
    c1 = ls.get("claim1")
    if c1:
        t.add_row("Claim 1 exponents", f"null directions {_g(c1.get('null_exponent'))} (expect 2), row space "
                                       f"{_g(c1.get('row_exponent'))} (expect 1)"
                  + (f"; {c1['why']}" if c1.get("why") else ""))
    return t


def levelset_view(r: dict[str, Any]) -> RenderableType | None:
    ls = r.get("levelset")
    if not ls:
        return None
    parts: list[RenderableType] = []
    warn = radius_warning(ls)
    if warn is not None:
        parts.append(warn)
    parts.append(facts_table(ls))
    table = by_radius_table(ls)
    if table is not None:
        parts += [Text(""), table]
    if ls.get("meaning"):
        parts += [Text(""), Text("\n".join(ls["meaning"]), style="italic")]
    return Group(*parts)
