"""The "Information loss by layer" pane: the blocks in ranking order; the highlighted row's details and the
dependent training inputs that collided in that block."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from ...render.layers import GROUP_WORDS, WHERE_WORDS
from ...render.summary import why_missing
from ...schema._layers import loses_information, rank_drop_parts
from .plotting import num

if TYPE_CHECKING:
    from ...schema import DependentGroup, LayerRow, Report


def _bits(v: float) -> str:
    return f"{v:.3f}"


def _guaranteed(v: bool, skip: bool = False) -> Text:
    return Text("guaranteed", style="bold red") if v else Text("no, skip ↷" if skip else "no", style="dim")


def _name(b: LayerRow) -> Text:
    return Text(b.name + (" ↷" if b.skip_around else ""))  # a Text, so a name like `net[i]` shows literally (a str cell is read as markup)


def _excess(b: LayerRow) -> str:
    return num(rank_drop_parts(b)[1])


COLUMNS: tuple[tuple[str, Callable[[LayerRow], str | Text]], ...] = (
    ("#", lambda b: num(b.position)),
    ("block", _name),
    ("distinct outputs", lambda b: num(b.classes)),
    ("bits lost", lambda b: _bits(b.bits_lost)),
    ("bits here", lambda b: _bits(b.bits_lost_here)),
    ("rank drop", lambda b: num(b.rank_drop)),
    ("beyond width", _excess),
    ("dead", lambda b: num(b.dead_units)),
    ("dependence", lambda b: _guaranteed(b.dependence_guaranteed, b.skip_around)),
)


def _rank_rows(b: LayerRow) -> list[tuple[str, str | Text]]:
    forced, excess = rank_drop_parts(b)
    return [
        ("rank of [A, 1]", f"{b.activation_rank + b.rank_drop} → {b.activation_rank}"),
        ("rank drop", num(b.rank_drop)), ("  forced by the width", num(forced)), ("  beyond the width", num(excess)),
        ("rank tolerance of [A, 1]", num(b.activation_rank_tolerance)),
    ]


def detail_rows(b: LayerRow) -> list[tuple[str, str | Text]]:
    """Every scalar of a block in words: the ranking's measures first, then how they were measured."""
    return [
        ("block", _name(b)), ("position", num(b.position)), ("network index", num(b.index)),
        ("parameters", num(b.n_params)), ("width", num(b.width)), ("distinct outputs", num(b.classes)),
        ("largest merged class", num(b.largest_class)), ("bits lost so far", _bits(b.bits_lost)),
        ("bits lost here", _bits(b.bits_lost_here)), ("  in the linear map", num(b.bits_lost_linear)),
        ("  in the activation", num(b.bits_lost_activation)),
        ("merged in", WHERE_WORDS.get(b.collision_kind, "nothing merged")),
        ("distinct before the activation", num(b.classes_before_activation)),
        *_rank_rows(b),
        ("dead units", num(b.dead_units)), ("constant units", num(b.constant_units)),
        ("zero share", num(b.zero_fraction)), ("parameters upstream", num(b.params_upstream)),
        ("bound on merged columns' rank", num(b.dependence_bound)),
        ("their measured rank", num(b.merged_class_rank)), ("dependence", _guaranteed(b.dependence_guaranteed)),
        ("rank of G_ℓ", num(b.block_rank)), ("G_ℓ short of min(n_ℓ, kd) by", num(b.block_rank_deficiency)),
        ("rank of G_1..ℓ", num(b.cumulative_rank)), ("activations equal when", Text(b.atol_rule)),
        *_module_rows(b),
    ]


def _module_rows(b: LayerRow) -> list[tuple[str, str | Text]]:
    """Where a block of any nn.Module differs from a Sequential's: its place in the forward pass, a skip around it."""
    rows: list[tuple[str, str | Text]] = []
    if b.call_order and b.call_order != b.index:
        rows.append(("called in the forward pass", f"{num(b.call_order)} (rows follow the parameters)"))
    if b.calls > 1:
        rows.append(("calls", f"{num(b.calls)} (the first is analysed)"))
    if b.skip_around:
        rows.append(("skip around it", Text("yes: the input also reaches the output around it; what it merges "
                                            "is no loss for the network and forces no dependence")))
    return rows


def collided_at(group: DependentGroup, layer: LayerRow) -> bool:
    """Did this group of dependent inputs collide in the block `layer` (the engine numbers blocks from 1)?"""
    return group.collided_at is not None and group.collided_at == layer.index


def describe_group(g: DependentGroup) -> str:
    """One group of dependent inputs in words (plain text: show it in a Text, never as markup)."""
    shown = ", ".join(str(i) for i in g.indices[:24]) + (" …" if len(g.indices) > 24 else "")
    n = len(g.coefficients)
    parts = [f"inputs {shown}", GROUP_WORDS.get(g.kind, g.kind), f"null dimension {g.dimension}"]
    if n:
        parts.append(f"{n} coefficient vector{'s' if n != 1 else ''} ({g.vectors_listed} listed)")
    if g.partly_collided_at is not None:
        parts.append(f"partly collided in block {g.partly_collided_at}")
    parts += [p for p in (g.description, g.coefficient_rule and f"coefficients: {g.coefficient_rule}") if p]
    return "; ".join(parts)


def _head(layers: list[LayerRow], n_dep: int) -> Text:
    if any(loses_information(b) for b in layers):
        what = (" (1 = most information lost: inputs merged in the block itself first, then the rank drop beyond "
                "what the block's width forces). ")
    else:
        what = (": no block loses information (no inputs merged, no rank drop beyond what a block's width "
                "forces), so they are ordered by how far rank(G_ℓ) falls short. ")
    if any(b.call_order and b.call_order != b.index for b in layers):
        what += ("Blocks are numbered in parameter order (the rows of G: the last cumulative rank is rank(G)); the "
                 "forward pass calls them in another order. ")
    if any(b.skip_around for b in layers):
        what += "↷ = a skip connection goes around the block: what it merges is no loss for the network. "
    return Text.assemble((f"{len(layers)} blocks in ranking order", "bold"), what,
                         f"{n_dep} group{'s' if n_dep != 1 else ''} of dependent inputs from the null space of GᵀG. "
                         "Move the cursor to see a block's details.")


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
        self.blocks: list[LayerRow] = []
        self.dependent: list[DependentGroup] = []
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

    def show(self, report: Report) -> None:
        layers = report.layers
        table = self.query_one(DataTable)
        table.clear()
        if not layers:
            off = "The information-loss analysis is off for this run (analysis.layers = false)."
            enabled = report.config.analysis.layers
            self.clear(why_missing(report, "layers", "The information-loss analysis", None if enabled else off,
                                   "layers"))
            return
        self.blocks = list(layers)
        self.dependent = list(report.dependent_inputs.groups) if report.dependent_inputs is not None else []
        self.order = sorted(range(len(layers)), key=lambda i: (layers[i].position, i))
        for i in self.order:
            table.add_row(*[cell(layers[i]) for _, cell in COLUMNS], key=str(i))
        self.query_one("#layers-head", Static).update(_head(self.blocks, len(self.dependent)))
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
        for key, value in detail_rows(layer):
            t.add_row(Text(key), Text(value) if isinstance(value, str) else value)  # never read as markup
        parts: list[Any] = [Text(f"Block {layer.name}", style="bold")]  # Text: names show literally
        if layer.finding:
            parts.append(Text(layer.finding, style="italic"))
        parts.append(Text(
            f"The m·d columns of its largest merged class agree on every parameter after this block, so their "
            f"rank is at most {layer.dependence_bound}"
            + (": dependence is guaranteed." if layer.dependence_guaranteed else "."), style="italic"))
        parts += self._dependent_lines(layer)
        parts += [Text(""), t]
        self.query_one("#layer-detail-text", Static).update(Group(*parts))

    def _dependent_lines(self, layer: LayerRow) -> list[Text]:
        hits = [g for g in self.dependent if collided_at(g, layer)]
        if hits:
            return [Text(f"Dependent inputs that collided here ({len(hits)} group{'s' if len(hits) != 1 else ''}):",
                         style="bold"), *[Text(f"  • {describe_group(g)}") for g in hits]]
        if self.dependent:
            return [Text("No group of dependent inputs collided in this block.", style="dim")]
        return [Text("No dependent inputs in this report (the null space of GᵀG is empty or was not reported).",
                     style="dim")]
