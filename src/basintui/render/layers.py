"""Headless views of the information-loss report (the `layers`, `layers_info` and `dependent_inputs`
sections of the typed report)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..schema._layers import loses_information, rank_drop_parts

if TYPE_CHECKING:
    from ..schema import DependentGroup, DependentInputs, LayerRow, LayersInfo, Report

MAX_GROUP_ROWS = 12
MAX_INDICES = 24
WHERE_WORDS = {"linear": "linear map", "activation": "activation", "both": "both"}
GROUP_WORDS = {"identical": "identical gradients", "zero": "zero gradient", "combination": "linear combination",
               "within_input": "within one input"}


def _bits(v: float) -> str:
    return "0" if v == 0 else f"{v:.3f}"


def _indices(idx: list[int]) -> str:
    shown = ", ".join(str(i) for i in idx[:MAX_INDICES])
    return shown + (f", … ({len(idx)} in all)" if len(idx) > MAX_INDICES else "")


Cell = Callable[["LayerRow", int], "str | Text"]


def _rank_cell(b: LayerRow, d: int) -> str:
    before = b.activation_rank + b.rank_drop
    return f"{before} → {b.activation_rank}"


COLUMNS: dict[str, tuple[str, str, Cell]] = {  # column id -> (header, justify, cell of a row and d)
    "position": ("#", "right", lambda b, d: str(b.position)),
    "name": ("block", "left", lambda b, d: Text(b.name + (" ↷" if b.skip_around else ""))),
    "classes": ("distinct\noutputs", "right", lambda b, d: str(b.classes)),
    "largest": ("largest\nmerge", "right", lambda b, d: str(b.largest_class)),
    "bits": ("bits\nlost\nso far", "right", lambda b, d: _bits(b.bits_lost)),
    "here": ("bits\nlost\nhere", "right", lambda b, d: _bits(b.bits_lost_here)),
    "where": ("merged\nin", "left", lambda b, d: WHERE_WORDS.get(b.collision_kind, "")),
    "rank": ("rank of\n[A, 1]", "right", _rank_cell),
    "forced": ("drop\nforced\nby width", "right", lambda b, d: str(rank_drop_parts(b)[0])),
    "excess": ("drop\nbeyond\nwidth", "right", lambda b, d: str(rank_drop_parts(b)[1])),
    "dead": ("dead\nunits", "right", lambda b, d: str(b.dead_units)),
    "zeros": ("zero\nshare", "right", lambda b, d: f"{b.zero_fraction:.0%}"),
    "bound": ("merged\ncols vs\nbound", "right", lambda b, d: f"{b.largest_class * d} vs {b.dependence_bound}"),
    "class_rank": ("their\nrank", "right",
                   lambda b, d: "—" if b.merged_class_rank is None else str(b.merged_class_rank)),
    "dependent": ("depen-\ndence\nforced", "left", lambda b, d: Text("yes", style="bold red")
                  if b.dependence_guaranteed else Text("no, skip ↷" if b.skip_around else "no")),
    "block_rank": ("rank\nof G_ℓ", "right", lambda b, d: str(b.block_rank)),
    "cum_rank": ("rank of\nG_1..ℓ", "right", lambda b, d: str(b.cumulative_rank)),
}
WIDE = tuple(COLUMNS)
NARROW = (  # (title, or None for the ranking title; columns): each fits 80 columns beside a 26-character name
    (None, ("position", "name", "here", "classes", "largest", "where", "dependent")),
    ("Rank of [A, 1] across each block (same ranking)", ("position", "name", "rank", "forced", "excess", "dead",
                                                         "zeros")),
    ("Merged inputs' columns and ranks of G (same ranking)", ("position", "name", "bits", "bound", "class_rank",
                                                              "block_rank", "cum_rank")),
)


def _table(layers: Sequence[LayerRow], d: int, cols: tuple[str, ...], title: str | None) -> Table:
    t = Table(title=title and Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              show_edge=False, padding=(0, 1, 0, 0), collapse_padding=True)
    for c in cols:
        header, justify, _ = COLUMNS[c]
        width = min(26, max(len(b.name) for b in layers)) if c == "name" else None
        t.add_column(Text(header), justify=justify, no_wrap=True, min_width=width)
    for b in sorted(layers, key=lambda b: b.position):
        style = "bold" if b.position == 1 and loses_information(b) else None
        t.add_row(*(COLUMNS[c][2](b, d) for c in cols), style=style)
    return t


def ranking_title(layers: Sequence[LayerRow]) -> str:
    """The table's title: what position 1 means, or that no block loses information."""
    if any(loses_information(b) for b in layers):
        return ("Information loss by layer (ranked: 1 = most information lost; inputs merged first, then the "
                "rank drop beyond what the width forces)")
    return ("Information loss by layer: no block loses information (no inputs merged, no rank drop beyond "
            "what a block's width forces); ordered by rank deficiency of G_ℓ")


class RankedTable:
    """One wide table where the console is wide enough, else three narrower ones."""

    def __init__(self, layers: Sequence[LayerRow], d: int) -> None:
        self.layers, self.d = layers, d

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        title = ranking_title(self.layers)
        wide = _table(self.layers, self.d, WIDE, title)
        if console.measure(wide, options=options.update(max_width=100_000)).maximum <= options.max_width:
            yield wide
            return
        for sub_title, cols in NARROW:
            yield _table(self.layers, self.d, cols, sub_title or title)


def ranked_table(r: Report) -> RankedTable | None:
    if not r.layers:
        return None
    return RankedTable(r.layers, r.data.out_dim)


def findings(r: Report) -> Text | None:
    if not r.layers:
        return None
    lines = [f"block {b.index}: {b.finding}" for b in r.layers if b.finding]
    info = r.layers_info
    if info is not None and info.raw_classes is not None:
        lines.insert(0, f"raw inputs: {info.raw_classes} distinct of {r.data.n_train} "
                        f"(H(P_0) = {info.raw_entropy_bits:.3f} bits)")
    if info is not None and info.order_rule:
        lines.insert(0, f"blocks: the modules that own parameters; {info.order_rule}")
    if any(b.skip_around for b in r.layers):
        lines.append("↷ skip around: the input also reaches the output around this block, so what it merges is "
                     "no information loss for the network and forces no dependence")
    return Text("\n".join(lines), style="italic")


def _relation(indices: list[int], coefs: list[float | list[float]], most: int = 6) -> str:
    """'+1·x4 − 0.5·x7 … = 0' from one coefficient vector (d-vectors shown by their largest entry)."""
    terms = []
    for i, v in zip(indices, coefs):
        w = v if isinstance(v, (int, float)) else max(v, key=abs)
        if w != 0:
            terms.append((i, w))
    terms.sort(key=lambda t: -abs(t[1]))
    text = " ".join(f"{'−' if w < 0 else '+'}{abs(w):.3g}·x{i}" for i, w in terms[:most])
    return text + (" …" if len(terms) > most else "") + " = 0"


def _coefficients(g: DependentGroup) -> str:
    coefs = g.coefficients
    if g.kind == "identical":
        return "equal gradients (e_first − e_j)"
    if g.kind == "zero":
        return "zero gradient"
    if g.kind == "within_input":
        return g.coefficient_rule or "relations among each input's own outputs"
    c = _relation(g.indices, coefs[0]) if coefs else ""
    return c + (f" (1 of {len(coefs)})" if len(coefs) > 1 else "")


def _where(g: DependentGroup) -> str:
    if g.collided_in is None and g.partly_collided_at is not None:
        return f"partly, from block {g.partly_collided_at}"
    return g.collided_in or "—"


def dependent_section(dep: DependentInputs) -> Group:
    """The null space of GᵀG as groups of dependent training inputs, where each collided, its relation."""
    head = Text(f"Dependent inputs: null space of GᵀG has dimension {dep.null_dim} "
                f"(τ = {dep.tolerance:.3g})", style="bold")
    if not dep.groups:
        return Group(head, Text("none: the behavioural gradients of the training inputs are linearly independent",
                                style="italic"))
    t = Table(show_header=True, box=None, pad_edge=False)
    for name in ("kind", "inputs", "null dims", "collided in", "coefficients"):
        t.add_column(name)
    for g in dep.groups[:MAX_GROUP_ROWS]:  # Text cells: names and rules from the report show literally
        t.add_row(Text(GROUP_WORDS.get(g.kind, g.kind)), Text(_indices(g.indices)), str(g.dimension),
                  Text(_where(g)), Text(_coefficients(g)))
    parts: list[RenderableType] = [head, t]
    more = len(dep.groups) - MAX_GROUP_ROWS + dep.groups_not_listed
    if more > 0:
        parts.append(Text(f"… and {more} more groups (see the JSON report)", style="dim"))
    if dep.explained_dim != dep.null_dim:
        parts.append(Text(f"groups account for {dep.explained_dim} of {dep.null_dim} null directions",
                          style="dim"))
    if dep.unlisted:
        parts.append(Text(dep.unlisted, style="dim"))
    return Group(*parts)


def dependent_view(r: Report) -> RenderableType | None:
    return None if r.dependent_inputs is None else dependent_section(r.dependent_inputs)


def _unavailable(info: LayersInfo | None) -> Text | None:
    if info is None or info.available:
        return None
    return Text(f"Information loss by layer: {info.why_not}", style="yellow")


def layers_view(r: Report) -> RenderableType | None:
    """The ranked per-block table, the findings in words and the dependent groups."""
    if r.layers is None and r.dependent_inputs is None:
        return None
    parts: list[RenderableType] = []
    why_not = _unavailable(r.layers_info)
    if why_not is not None:
        parts.append(why_not)
    table = ranked_table(r)
    if table is not None:
        parts.append(table)
        f = findings(r)
        if f is not None:
            parts.append(f)
    dep = dependent_view(r)
    if dep is not None:
        parts += [Text(""), dep]
    return Group(*parts) if parts else None
