"""Two reports side by side (`basintui compare A.json B.json`, the app's compare screen): what differs in
their presets, their sizes, rank(G) and what it means, Claim 3, training, and the layer rankings.

Torch-free: reads the typed report (basintui.schema) only. A section one report lacks (a cancelled run, the
layers off) is "not computed" there, never an error.

- `compare(a, b, label_a, label_b) -> Comparison`: the facts, computed once;
- `comparison_table(c)`: a rich renderable, A beside B, that fits 80 columns, rows that differ marked ≠;
- `comparison_json(c)`: the same facts as plain JSON data for scripts (keys documented there).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..schema._layers import rank_drop_parts
from .fmt import fmt
from .summary import REGIME_WORDS

if TYPE_CHECKING:
    from ..schema import LayerRow, Report

COMPARISON_SCHEMA = "basintui.comparison/1"
NOT_COMPUTED = "not computed"
# the quantities compared, in order: key -> label in the table
QUANTITIES = {
    "status": "training", "steps": "steps", "final_loss": "final loss", "N": "N (parameters)",
    "k": "k (inputs)", "d": "d (outputs)", "kd": "kd", "rank": "rank(G)", "rank_exact": "rank exact",
    "tolerance": "tolerance", "kernel_dim": "kernel dim N − r", "regime": "regime", "claim3": "Claim 3",
}
MAX_VALUE = 60  # characters of a config value shown in the table (the JSON has them whole)


class ConfigDifference(msgspec.Struct, frozen=True):
    """One preset key whose values differ; None where a report's preset has no such key."""

    key: str
    a: Any
    b: Any


class LayerPlace(msgspec.Struct, frozen=True):
    """One block in a report's layer ranking."""

    position: int
    index: int
    name: str
    bits_lost_here: float
    excess_rank_drop: int  # the rank drop beyond what the block's width forces
    block_rank_deficiency: int


class Side(msgspec.Struct, frozen=True):
    """One report's facts. A quantity is None where the report did not compute it."""

    label: str
    preset: str
    quantities: dict[str, Any]  # keys of QUANTITIES
    layers: list[LayerPlace] | None  # in ranking order; None: no layer analysis in this report
    layers_why: str | None  # why `layers` is None


class Comparison(msgspec.Struct, frozen=True):
    a: Side
    b: Side
    config_differences: list[ConfigDifference]


# --------------------------------------------------------------------------- the facts


def flat_config(report: Report) -> dict[str, Any]:
    """The preset as dotted keys ("train.steps" -> 200); lists are values."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", msgspec.to_builtins(report.config))
    return out


def config_differences(a: Report, b: Report) -> list[ConfigDifference]:
    fa, fb = flat_config(a), flat_config(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    return [ConfigDifference(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]


def quantities(r: Report) -> dict[str, Any]:
    """The compared numbers and words of one report (None: not computed)."""
    g, tr, h = r.G, r.training, r.hessian
    n = r.model.n_params if r.model is not None else None
    k = r.data.n_train if r.data is not None else None
    d = r.data.out_dim if r.data is not None else None
    return {
        "status": tr.status, "steps": tr.steps, "final_loss": tr.final_loss, "N": n, "k": k, "d": d,
        "kd": k * d if k is not None and d is not None else None,
        "rank": g.rank if g is not None else None,
        "rank_exact": g.rank_exact if g is not None else None,
        "tolerance": g.tolerance if g is not None else None,
        "kernel_dim": g.kernel_dim if g is not None else None,
        "regime": g.regime if g is not None else None,
        "claim3": h.claim3.verdict if h is not None else None,
    }


def _layers(r: Report) -> tuple[list[LayerPlace] | None, str | None]:
    if not r.layers:
        if not r.config.analysis.layers:
            return None, "off (analysis.layers = false)"
        return None, "cancelled" if r.training.status == "cancelled" else NOT_COMPUTED
    rows = sorted(r.layers, key=lambda b: (b.position, b.index))
    return [_place(b) for b in rows], None


def _place(b: LayerRow) -> LayerPlace:
    return LayerPlace(position=b.position, index=b.index, name=b.name, bits_lost_here=b.bits_lost_here,
                      excess_rank_drop=rank_drop_parts(b)[1], block_rank_deficiency=b.block_rank_deficiency)


def side(r: Report, label: str) -> Side:
    layers, why = _layers(r)
    return Side(label=label, preset=r.config.name, quantities=quantities(r), layers=layers, layers_why=why)


def compare(a: Report, b: Report, label_a: str = "A", label_b: str = "B") -> Comparison:
    """The facts of two reports, side by side."""
    return Comparison(a=side(a, label_a), b=side(b, label_b), config_differences=config_differences(a, b))


# --------------------------------------------------------------------------- JSON for scripts


def _safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def comparison_json(c: Comparison) -> dict[str, Any]:
    """The comparison as JSON data. Keys (stable):

    - "schema": "basintui.comparison/1";
    - "a", "b": {"label", "preset"}: what was compared;
    - "config_differences": [{"key": dotted preset key, "a": value, "b": value}], only the keys that differ
      (null where a preset lacks the key);
    - "quantities": {name: {"a": value, "b": value, "same": bool}} for the names status, steps, final_loss,
      N, k, d, kd, rank, rank_exact, tolerance, kernel_dim (N − rank), regime ("over" | "under" | "square"),
      claim3 (the Claim 3 verdict); a value is null where that report did not compute it;
    - "layers": {"a": [...] or null, "b": [...] or null, "a_why": str or null, "b_why": str or null}: each
      report's blocks in ranking order as {"position", "index", "name", "bits_lost_here", "excess_rank_drop",
      "block_rank_deficiency"}; null with the reason ("off (analysis.layers = false)", "cancelled",
      "not computed") where the report has no layer analysis.

    Non-finite floats are the strings "nan", "inf", "-inf", as in the report itself."""
    qa, qb = c.a.quantities, c.b.quantities
    return {
        "schema": COMPARISON_SCHEMA,
        "a": {"label": c.a.label, "preset": c.a.preset},
        "b": {"label": c.b.label, "preset": c.b.preset},
        "config_differences": [{"key": d.key, "a": _safe(d.a), "b": _safe(d.b)} for d in c.config_differences],
        "quantities": {q: {"a": _safe(qa[q]), "b": _safe(qb[q]), "same": _same(qa[q], qb[q])} for q in QUANTITIES},
        "layers": {"a": _layer_list(c.a), "b": _layer_list(c.b), "a_why": c.a.layers_why, "b_why": c.b.layers_why},
    }


def _same(x: Any, y: Any) -> bool:
    both_nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
    return both_nan or x == y


def _layer_list(s: Side) -> list[dict[str, Any]] | None:
    return None if s.layers is None else [msgspec.to_builtins(p) for p in s.layers]


# --------------------------------------------------------------------------- the table


def _word(key: str, v: Any) -> str:
    if v is None:
        return NOT_COMPUTED
    if key == "regime":
        return REGIME_WORDS.get(v, str(v))
    if key == "claim3":
        return str(v).replace("_", " ")
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt(v)


def _short(v: Any) -> str:
    """A preset value as TOML would write it (true/false, [2, 32]); unset where the preset has none."""
    if v is None:
        text = "unset"
    elif isinstance(v, bool):
        text = "true" if v else "false"
    else:
        text = v if isinstance(v, str) else fmt(v)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _new_table(title: str, label_a: str, label_b: str) -> Table:
    t = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
              padding=(0, 1, 0, 0), collapse_padding=True)
    t.add_column(Text(""), no_wrap=True, width=1)  # ≠ where A and B differ
    t.add_column(Text(""), style="bold", overflow="fold", ratio=2)
    t.add_column(Text("A " + label_a), overflow="fold", ratio=3)
    t.add_column(Text("B " + label_b), overflow="fold", ratio=3)
    return t


def _add(t: Table, name: str, a: str, b: str, differs: bool) -> None:
    t.add_row(Text("≠" if differs else "", style="bold yellow"), Text(name), Text(a), Text(b),
              style="yellow" if differs else None)


def _facts_table(c: Comparison) -> Table:
    t = _new_table("A beside B (≠ marks what differs)", c.a.label, c.b.label)
    _add(t, "preset", c.a.preset, c.b.preset, c.a.preset != c.b.preset)
    for q, label in QUANTITIES.items():
        va, vb = c.a.quantities[q], c.b.quantities[q]
        _add(t, label, _word(q, va), _word(q, vb), not _same(va, vb))
    return t


def _config_table(c: Comparison) -> RenderableType:
    if not c.config_differences:
        return Text("Presets: no differences (every key has the same value).")
    t = _new_table(f"Presets: {len(c.config_differences)} key(s) differ", c.a.label, c.b.label)
    for d in c.config_differences:
        _add(t, d.key, _short(d.a), _short(d.b), True)
    return t


def _place_text(p: LayerPlace | None, why: str | None) -> str:
    if p is None:
        return why or "—"
    lost = []
    if p.bits_lost_here > 0:
        lost.append(f"{p.bits_lost_here:.3g} bits here")
    if p.excess_rank_drop > 0:
        lost.append(f"rank −{p.excess_rank_drop} beyond width")
    return f"{p.name} ({', '.join(lost) if lost else 'loses nothing'})"


def _layers_table(c: Comparison) -> Table:
    t = _new_table("Layer ranking (1 = most information lost)", c.a.label, c.b.label)
    la, lb = c.a.layers or [], c.b.layers or []
    for i in range(max(len(la), len(lb), 1)):
        pa = la[i] if i < len(la) else None
        pb = lb[i] if i < len(lb) else None
        ta, tb = _place_text(pa, c.a.layers_why), _place_text(pb, c.b.layers_why)
        _add(t, f"#{i + 1}", ta, tb, ta != tb)
    return t


def comparison_table(c: Comparison) -> Group:
    """A beside B: the compared quantities, the preset keys that differ, the layer rankings; rows that
    differ are marked ≠. Every cell wraps, so the whole fits 80 columns."""
    return Group(_facts_table(c), Text(""), _config_table(c), Text(""), _layers_table(c))


__all__ = [
    "COMPARISON_SCHEMA", "NOT_COMPUTED", "QUANTITIES", "Comparison", "ConfigDifference", "LayerPlace", "Side",
    "compare", "comparison_json", "comparison_table", "config_differences", "flat_config", "quantities",
]
