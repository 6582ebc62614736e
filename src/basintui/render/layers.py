"""Headless views of the information-loss report (the `layers` and `dependent_inputs` sections),
built from the report's JSON (dict) form."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.table import Table
from rich.text import Text

MAX_GROUP_ROWS = 12
MAX_INDICES = 24


def _bits(v: float) -> str:
    return "0" if v == 0 else f"{v:.3f}"


def _indices(idx: list[int]) -> str:
    shown = ", ".join(str(i) for i in idx[:MAX_INDICES])
    return shown + (f", … ({len(idx)} in all)" if len(idx) > MAX_INDICES else "")


COLUMNS = {  # name -> (header, justify, cell)
    "position": ("#", "right", lambda b, d: str(b["position"])),
    "name": ("block", "left", lambda b, d: b["name"]),
    "classes": ("classes", "right", lambda b, d: str(b["classes"])),
    "largest": ("largest\nclass", "right", lambda b, d: str(b["largest_class"])),
    "bits": ("bits\nlost", "right", lambda b, d: _bits(b["bits_lost"])),
    "here": ("bits\nhere", "right", lambda b, d: _bits(b["bits_lost_here"])),
    "where": ("merged\nin", "left", lambda b, d: {"linear": "linear map", "activation": "activation",
                                                   "both": "both"}.get(b.get("collision_kind", "none"), "")),
    "drop": ("rank\ndrop", "right", lambda b, d: f"{b['rank_drop']:+d}"),
    "dead": ("dead", "right", lambda b, d: str(b["dead_units"])),
    "zeros": ("zeros", "right", lambda b, d: f"{b['zero_fraction']:.0%}"),
    "bound": ("m·d vs\nbound", "right", lambda b, d: f"{b['largest_class'] * d} vs {b['dependence_bound']}"),
    "class_rank": ("class\nrank", "right",
                   lambda b, d: "—" if b.get("merged_class_rank") is None else str(b["merged_class_rank"])),
    "dependent": ("m·d >\nbound", "left", lambda b, d: Text("yes", style="bold red") if b["dependence_guaranteed"]
                  else Text("no")),
    "block_rank": ("rank\nG_ℓ", "right", lambda b, d: str(b["block_rank"])),
    "cum_rank": ("cum.\nrank", "right", lambda b, d: str(b["cumulative_rank"])),
}
WIDE = tuple(COLUMNS)
NARROW = (("position", "name", "classes", "largest", "bits", "here", "drop", "dead", "dependent"),
          ("position", "name", "where", "zeros", "bound", "class_rank", "block_rank", "cum_rank"))


def _table(layers: list[dict[str, Any]], d: int, cols: tuple[str, ...], title: str | None) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
              padding=(0, 1, 0, 0), collapse_padding=True)
    for c in cols:
        header, justify, _ = COLUMNS[c]
        if c == "name":
            t.add_column(header, justify=justify, no_wrap=True, min_width=min(26, max(len(b["name"]) for b in layers)))
        else:
            t.add_column(header, justify=justify, no_wrap=True)
    for b in sorted(layers, key=lambda b: b["position"]):
        style = "bold" if b["position"] == 1 and (b["bits_lost_here"] > 0 or b["rank_drop"] > 0) else None
        t.add_row(*(COLUMNS[c][2](b, d) for c in cols), style=style)
    return t


class RankedTable:
    """One wide table where the console is wide enough, else two narrower ones."""

    def __init__(self, layers: list[dict[str, Any]], d: int) -> None:
        self.layers, self.d = layers, d

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        title = "Information loss by layer (ranked: 1 = most information lost)"
        wide = _table(self.layers, self.d, WIDE, title)
        if console.measure(wide, options=options.update(max_width=100_000)).maximum <= options.max_width:
            yield wide
            return
        yield _table(self.layers, self.d, NARROW[0], title)
        yield _table(self.layers, self.d, NARROW[1], "Where, bounds and ranks of G (same ranking)")


def ranked_table(r: dict[str, Any]) -> RankedTable | None:
    layers = r.get("layers")
    if not layers:
        return None
    return RankedTable(layers, r["data"]["out_dim"])


def findings(r: dict[str, Any]) -> Text | None:
    layers = r.get("layers")
    if not layers:
        return None
    lines = [f"block {b['index']}: {b['finding']}" for b in layers if b.get("finding")]
    info = r.get("layers_info") or {}
    if info.get("raw_classes") is not None:
        k = r["data"]["n_train"]
        lines.insert(0, f"raw inputs: {info['raw_classes']} distinct of {k} "
                        f"(H(P_0) = {info['raw_entropy_bits']:.3f} bits)")
    return Text("\n".join(lines), style="italic")


def _relation(indices: list[int], coefs: list[Any], most: int = 6) -> str:
    """'+1·x4 − 0.5·x7 … = 0' from one coefficient vector (d-vectors shown by their largest entry)."""
    terms = []
    for i, v in zip(indices, coefs):
        w = v if isinstance(v, (int, float)) else max(v, key=abs)
        if w != 0:
            terms.append((i, w))
    terms.sort(key=lambda t: -abs(t[1]))
    text = " ".join(f"{'−' if w < 0 else '+'}{abs(w):.3g}·x{i}" for i, w in terms[:most])
    return text + (" …" if len(terms) > most else "") + " = 0"


def dependent_view(r: dict[str, Any]) -> RenderableType | None:
    dep = r.get("dependent_inputs")
    if dep is None:
        return None
    groups = dep.get("groups", [])
    head = Text(f"Dependent inputs: null space of GᵀG has dimension {dep['null_dim']} "
                f"(τ = {dep['tolerance']:.3g})", style="bold")
    if not groups:
        return Group(head, Text("none: the behavioural gradients of the training inputs are linearly independent",
                                style="italic"))
    t = Table(show_header=True, box=None, pad_edge=False)
    for name in ("kind", "inputs", "null dims", "collided in", "coefficients"):
        t.add_column(name)
    for g in groups[:MAX_GROUP_ROWS]:
        coefs = g["coefficients"]
        if g["kind"] == "identical":
            c = "equal gradients (e_first − e_j)"
        elif g["kind"] == "zero":
            c = "zero gradient"
        elif g["kind"] == "within_input":
            c = g.get("coefficient_rule", "") or "relations among each input's own outputs"
        else:
            c = _relation(g["indices"], coefs[0]) if coefs else ""
            if len(coefs) > 1:
                c += f" (1 of {len(coefs)})"
        where = g.get("collided_in")
        if where is None and g.get("partly_collided_at") is not None:
            where = f"partly, from block {g['partly_collided_at']}"
        t.add_row(g["kind"], _indices(g["indices"]), str(g["dimension"]), where or "—", c)
    parts: list[RenderableType] = [head, t]
    more = len(groups) - MAX_GROUP_ROWS + dep.get("groups_not_listed", 0)
    if more > 0:
        parts.append(Text(f"… and {more} more groups (see the JSON report)", style="dim"))
    if dep["explained_dim"] != dep["null_dim"]:
        parts.append(Text(f"groups account for {dep['explained_dim']} of {dep['null_dim']} null directions",
                          style="dim"))
    return Group(*parts)


def layers_view(r: dict[str, Any]) -> RenderableType | None:
    """The ranked per-block table, the findings in words and the dependent groups."""
    info = r.get("layers_info")
    if r.get("layers") is None and r.get("dependent_inputs") is None:
        return None
    parts: list[RenderableType] = []
    if info and not info.get("available", True):
        parts.append(Text(f"Information loss by layer: {info.get('why_not')}", style="yellow"))
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
