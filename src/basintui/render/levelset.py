"""Headless views of the level-set section of the typed report (schema.Report.levelset): the answer
(dimension, manifold yes / no / cannot tell with the reason, whether it depends on the probe radius)
and the per-radius table. Shared by the CLI summary and the TUI's Level set pane."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .fmt import fmt

if TYPE_CHECKING:
    from ..schema import LevelSet, RadiusVerdict, Report, Walk
    from ..schema._levelset import Claim1


def _g(v: float | int | str | None, digits: int = 3) -> str:
    return fmt(v, digits)


def manifold_text(ls: LevelSet) -> Text:
    """yes / no / cannot tell, coloured, for the top-level verdict."""
    if ls.radius_dependent:
        return Text("depends on the probe radius", style="bold yellow")
    if ls.manifold is True:
        return Text("yes", style="bold green")
    if ls.manifold is False:
        return Text("no", style="bold red")
    return Text("cannot tell", style="bold yellow")


def dimension_text(ls: LevelSet) -> Text:
    if ls.radius_dependent:
        return Text("depends on the probe radius (see the table)", style="bold yellow")
    if ls.estimated_dim is None:
        return Text("not measured", style="bold yellow")
    return Text(str(ls.estimated_dim), style="bold")


def radius_warning(ls: LevelSet) -> Text | None:
    """One line, only when the answer changes with the probe radius."""
    if not ls.radius_dependent:
        return None
    return Text("⚠ The answer depends on the probe radius: no single dimension or verdict is given; "
                "read the per-radius table.", style="bold yellow")


def _short(v: bool | None) -> Text:
    if v is True:
        return Text("yes", style="green")
    if v is False:
        return Text("no", style="red")
    return Text("?", style="yellow")


def _radius_cells(e: RadiusVerdict) -> list[str | Text]:
    branches = ", ".join(f"{d}×{c}" for d, c in e.branch_dims.items()) or "—"
    angle = e.max_angle_deg
    return [f"{e.radius:.0e}", _g(e.dimension), _short(e.manifold), f"{e.converged}/{e.points}",
            _g(e.returned), branches, "—" if angle is None else f"{angle:.1f}°"]


def by_radius_table(ls: LevelSet, why: bool = True) -> Table | None:
    """One row per probe radius: ρ, dimension, manifold, points (converged / returned to θ*), branch
    dimensions seen (dimension × count), the largest angle between tangent spaces and the reason."""
    if not ls.by_radius:
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
    for e in ls.by_radius:
        cells = _radius_cells(e)
        if why:
            cells.append(Text(e.why, style="dim"))
        t.add_row(*cells)
    return t


def _rank_detail(ls: LevelSet) -> str:
    if not ls.rank_probes:
        return ""
    return ("  (rank(G) at θ = " + _g(ls.rank_at_theta) + "; probes: "
            + ", ".join(f"ρ={p.radius:.0e}: {p.ranks}" for p in ls.rank_probes) + ")")


def walk_text(w: Walk) -> str:
    ev = w.evaluations
    return (f"{w.points_per_radius} points per radius ({w.radius_rule}); {w.converged} of {w.directions} retracted"
            + f"; {ev.F} evaluations of F, {ev.J} of J"
            + (f"; {w.seconds:.1f} s" if w.seconds is not None else ""))


def claim1_text(c1: Claim1) -> str:
    return (f"null directions {_g(c1.null_exponent)} (expect 2), row space {_g(c1.row_exponent)} (expect 1)"
            + (f"; {c1.why}" if c1.why else ""))


def facts_table(ls: LevelSet, title: str | None = "Level set through θ") -> Table:
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("dimension", dimension_text(ls))
    t.add_row("manifold", manifold_text(ls))
    if ls.manifold_why:
        t.add_row("why", Text(ls.manifold_why, style="italic"))
    t.add_row("rank locally constant", Text.assemble(_short(ls.locally_constant_rank), _rank_detail(ls)))
    t.add_row("kernel dim N − r", _g(ls.kernel_dim) + "  (an upper bound on any smooth piece)")
    t.add_row("generic dim N − kd", _g(ls.generic_dim))
    if ls.estimated_dim_method and ls.estimated_dim_method != ls.manifold_why:
        t.add_row("how", ls.estimated_dim_method)
    t.add_row("walk", walk_text(ls.walk))
    t.add_row("Claim 1 exponents", claim1_text(ls.claim1))
    return t


def levelset_section(ls: LevelSet) -> Group:
    parts: list[RenderableType] = []
    warn = radius_warning(ls)
    if warn is not None:
        parts.append(warn)
    parts.append(facts_table(ls))
    table = by_radius_table(ls)
    if table is not None:
        parts += [Text(""), table]
    if ls.meaning:
        parts += [Text(""), Text("\n".join(ls.meaning), style="italic")]
    return Group(*parts)


def levelset_view(r: Report) -> RenderableType | None:
    return None if r.levelset is None else levelset_section(r.levelset)
