"""The "Information loss by layer" pane: the blocks in ranking order; the highlighted row's details and the
dependent training inputs that collided in that block."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from ...render.summary import why_missing
from .plotting import num

COLUMNS = (
    ("#", "position"),
    ("block", "name"),
    ("classes", "classes"),
    ("bits lost", "bits_lost"),
    ("bits here", "bits_lost_here"),
    ("rank drop", "rank_drop"),
    ("dead", "dead_units"),
    ("dependence", "dependence_guaranteed"),
)
DETAIL_ORDER = (
    "name", "position", "n_params", "classes", "largest_class", "bits_lost", "bits_lost_here", "activation_rank",
    "rank_drop", "dead_units", "zero_fraction", "params_upstream", "dependence_bound", "dependence_guaranteed",
    "block_rank", "cumulative_rank",
)
LAYER_KEYS = ("layer", "collided_at", "layer_name", "block", "collided_in")
INDEX_KEYS = ("indices", "inputs", "members", "weighted_inputs")


def _cell(key: str, v: Any) -> Text | str:
    if key == "dependence_guaranteed":
        return Text("guaranteed", style="bold red") if v else Text("no", style="dim")
    if key in ("bits_lost", "bits_lost_here") and isinstance(v, (int, float)):
        return f"{v:.3f}"
    return num(v)


def _entries(dep: Any) -> list[dict[str, Any]]:
    if dep is None:
        return []
    if isinstance(dep, dict):
        for key in ("vectors", "groups", "items", "entries"):
            if isinstance(dep.get(key), list):
                return [e for e in dep[key] if isinstance(e, dict)]
        return [dep]
    if isinstance(dep, list):
        return [e for e in dep if isinstance(e, dict)]
    return []


def collided_at(entry: dict[str, Any], layer: dict[str, Any], index: int) -> bool:
    """Does this dependent-inputs entry name the block `layer` (by name, network index or position)?"""
    for key in LAYER_KEYS:
        if key in entry:
            v = entry[key]
            if isinstance(v, dict):
                v = v.get("name", v.get("index"))
            number = layer.get("index", index + 1)  # the engine numbers blocks from 1 in network order
            return v == layer.get("name") or (isinstance(v, int) and not isinstance(v, bool) and v == number)
    return False


def describe_entry(entry: dict[str, Any]) -> str:
    idx = next((entry[k] for k in INDEX_KEYS if k in entry), None)
    parts = []
    if isinstance(idx, list):
        shown = ", ".join(str(i) for i in idx[:24]) + (" …" if len(idx) > 24 else "")
        parts.append(f"inputs {shown}")
    weights = entry.get("weights") or entry.get("coefficients")
    if isinstance(weights, list) and weights and all(isinstance(w, (int, float)) for w in weights[:8]):
        parts.append("weights " + ", ".join(f"{w:.2g}" for w in weights[:8]) + (" …" if len(weights) > 8 else ""))
    elif isinstance(weights, list) and weights and isinstance(weights[0], list):
        parts.append(f"{len(weights)} coefficient vector{'s' if len(weights) != 1 else ''}")
    rest = {k: v for k, v in entry.items() if k not in (*INDEX_KEYS, *LAYER_KEYS, "weights", "coefficients")
            and not isinstance(v, (list, dict))}
    parts += [f"{k} {num(v)}" for k, v in rest.items()]
    return "; ".join(parts) or str(entry)


class LayersPane(Vertical):
    """Border title "Information loss by layer"."""

    DEFAULT_CSS = """
    LayersPane #layers-head { height: auto; padding: 0 1; }
    LayersPane DataTable { height: auto; max-height: 50%; }
    LayersPane #layer-detail { height: 1fr; padding: 0 1; border-top: solid $panel; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Information loss by layer"
        self.blocks: list[dict[str, Any]] = []
        self.dependent: list[dict[str, Any]] = []
        self.order: list[int] = []  # table row -> network index

    def compose(self) -> ComposeResult:
        yield Static("No run yet: run a preset (r).", id="layers-head")
        table = DataTable(id="layers-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*[c for c, _ in COLUMNS])
        yield table
        with VerticalScroll(id="layer-detail"):
            yield Static("", id="layer-detail-text")

    def clear(self, why: str) -> None:
        self.blocks, self.dependent, self.order = [], [], []
        self.query_one(DataTable).clear()
        self.query_one("#layers-head", Static).update(why)
        self.query_one("#layer-detail-text", Static).update("")

    def show(self, report: dict[str, Any]) -> None:
        layers = report.get("layers")
        table = self.query_one(DataTable)
        table.clear()
        if not layers:
            enabled = report.get("config", {}).get("analysis", {}).get("layers", True)
            off = "The information-loss analysis is off for this run (analysis.layers = false)."
            why = why_missing(report, "layers", "The information-loss analysis", None if enabled else off, "layers")
            self.clear(why)
            return
        self.blocks = list(layers)
        self.dependent = _entries(report.get("dependent_inputs"))
        self.order = sorted(range(len(layers)), key=lambda i: (layers[i].get("position") or 10**9, i))
        for i in self.order:
            layer = layers[i]
            table.add_row(*[_cell(k, layer.get(k)) for _, k in COLUMNS], key=str(i))
        n_dep = len(self.dependent)
        self.query_one("#layers-head", Static).update(Text.assemble(
            (f"{len(layers)} blocks in ranking order", "bold"),
            " (1 = most information lost in the block itself). ",
            f"{n_dep} group{'s' if n_dep != 1 else ''} of dependent inputs from the null space of GᵀG. "
            "Move the cursor to see a block's details."))
        table.move_cursor(row=0)
        self._detail(self.order[0])

    @on(DataTable.RowHighlighted, "#layers-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None and self.blocks:
            self._detail(int(event.row_key.value))

    def _detail(self, index: int) -> None:
        layer = self.blocks[index]
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        keys = [k for k in DETAIL_ORDER if k in layer] + [k for k in layer if k not in DETAIL_ORDER]
        for k in keys:
            v = layer[k]
            if isinstance(v, (list, dict)):
                continue
            t.add_row(k.replace("_", " "), _cell(k, v))
        bound, guaranteed = layer.get("dependence_bound"), layer.get("dependence_guaranteed")
        parts: list[Any] = [Text(f"Block {layer.get('name', index)}", style="bold")]
        if layer.get("finding"):
            parts.append(Text(str(layer["finding"]), style="italic"))
        if bound is not None:
            parts.append(Text(
                f"The m·d columns of its largest merged class agree on every parameter after this block, so their "
                f"rank is at most {bound}" + (": dependence is guaranteed." if guaranteed else "."), style="italic"))
        hits = [e for e in self.dependent if collided_at(e, layer, index)]
        if hits:
            parts.append(Text(f"Dependent inputs that collided here ({len(hits)} group{'s' if len(hits) != 1 else ''}):",
                              style="bold"))
            parts += [Text(f"  • {describe_entry(e)}") for e in hits]
        elif self.dependent:
            parts.append(Text("No group of dependent inputs collided in this block.", style="dim"))
        else:
            parts.append(Text("No dependent inputs in this report (the null space of GᵀG is empty or was not "
                              "reported).", style="dim"))
        parts += [Text(""), t]
        self.query_one("#layer-detail-text", Static).update(Group(*parts))
