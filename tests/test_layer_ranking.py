"""The layer ranking of issue 15: blocks that merge inputs first (bits lost in the block itself), then the
rank drop of [A, 1] beyond what the block's width forces (rank [A, 1] ≤ width + 1 after a block of width w,
so max(0, rank_before − (w + 1)) of any drop is forced by the architecture), then block-G deficiency, then
network order. Exact positions on hand-built rows and on real engine runs; the words a block that loses
nothing gets; block names with brackets shown literally in the CLI table and the pane."""

from __future__ import annotations

import asyncio
import io

import msgspec
import pytest
from conftest import ROOT
from rich.console import Console

from basintui.schema import LayerRow, load_report
from basintui.schema._layers import (
    loses_information,
    rank_drop_parts,
    rank_positions,
    width_forced_drop,
)

REPORTS = ROOT / "tests" / "fixtures" / "reports"


def row(index: int, *, here: float = 0.0, before: int = 5, after: int = 5, width: int = 8, deficiency: int = 0,
        name: str | None = None, stored: tuple[int, int] | None = None) -> LayerRow:
    """A layers-table row with the ranking's inputs set: bits lost here, the rank of [A, 1] before and after
    the block, its width and block-G deficiency (the rest are fixed, valid values)."""
    forced, excess = stored if stored is not None else (None, None)
    return LayerRow(
        index=index, name=name or f"{index}: block", n_params=10, width=width, classes=4, largest_class=1,
        bits_lost=here, bits_lost_here=here, activation_rank=after, rank_drop=before - after,
        forced_rank_drop=forced, excess_rank_drop=excess, dead_units=0, zero_fraction=0.0, params_upstream=10,
        dependence_bound=11, dependence_guaranteed=False, block_rank=3, cumulative_rank=3, position=0,
        block_rank_deficiency=deficiency, merged_class_rank=None, merged_class=[], collision_kind="none",
        classes_before_activation=4, bits_lost_linear=0.0, bits_lost_activation=here, constant_units=0,
        atol=1e-12, atol_rule="‖A[i] − A[j]‖∞ ≤ 1e-9 · max|A_ℓ| = 1e-12", activation_rank_tolerance=1e-14,
        finding="")


# --------------------------------------------------------------------------- the forced part of a drop


@pytest.mark.parametrize("before, width, forced", [
    (12, 2, 9),  # [A, 1] of a 2-wide block has rank ≤ 3
    (3, 2, 0),  # room enough: nothing forced
    (4, 3, 0),  # exactly width + 1
    (5, 3, 1),
    (0, 0, 0),  # rank 0 before a 0-wide block
    (1, 0, 0),  # a 0-wide block leaves [A, 1] = the ones column, rank 1
])
def test_width_forced_drop(before, width, forced):
    assert width_forced_drop(before, width) == forced


@pytest.mark.parametrize("before, after, width, parts", [
    (12, 3, 2, (9, 0)),  # all of the drop forced by the width
    (12, 3, 4, (7, 2)),  # 7 forced, 2 more lost
    (17, 12, 16, (0, 5)),  # a 16-wide block has room for 17: all 5 lost
    (9, 17, 16, (0, 0)),  # a rise loses nothing
    (5, 4, 3, (1, 0)),  # 5 → 4 at width 3: the whole drop is forced
    (1, 1, 1, (0, 0)),  # constant activations on every input: [A, 1] has rank 1
])
def test_rank_drop_parts(before, after, width, parts):
    assert rank_drop_parts(row(1, before=before, after=after, width=width)) == parts


def test_stored_parts_and_derived_parts_agree_and_old_reports_derive_them():
    new = row(1, before=12, after=3, width=4, stored=(7, 2))
    old = row(1, before=12, after=3, width=4)  # a report written before the fields existed
    assert (new.forced_rank_drop, new.excess_rank_drop) == (7, 2)
    assert (old.forced_rank_drop, old.excess_rank_drop) == (None, None)
    assert rank_drop_parts(new) == rank_drop_parts(old) == (7, 2)
    text = msgspec.json.encode(old)
    assert b'"forced_rank_drop":null' in text
    raw = msgspec.json.decode(text)
    del raw["forced_rank_drop"], raw["excess_rank_drop"]
    assert msgspec.convert(raw, LayerRow) == old  # the fields have defaults: older rows still decode


# --------------------------------------------------------------------------- the ranking on hand-built rows


def test_merged_inputs_rank_first_whatever_the_drops():
    rows = [row(1, before=17, after=2, width=16, deficiency=40),  # excess 15: the largest drop
            row(2, here=0.25),
            row(3, here=1.5),
            row(4, before=5, after=1, width=8, deficiency=9)]  # excess 4
    assert rank_positions(rows) == [3, 2, 1, 4]


def test_the_output_layers_forced_drop_ranks_below_a_genuine_bottleneck():
    # the default preset's shape: a hidden block whose rank drops below its width, then a 1-wide output
    rows = [row(1, before=9, after=17, width=16),  # a rise
            row(2, before=17, after=12, width=16),  # 5 lost beyond its width
            row(3, before=12, after=2, width=1, deficiency=5)]  # 10 forced by the width, 0 beyond
    assert rank_positions(rows) == [3, 1, 2]
    assert [loses_information(r) for r in rows] == [False, True, False]
    # the old rule (rank drop, not its excess) put the output layer first
    assert min(rows, key=lambda r: -r.rank_drop).index == 3


def test_excess_then_block_deficiency_then_network_order():
    rows = [row(1, before=12, after=3, width=2, deficiency=1),  # all forced: excess 0
            row(2, before=12, after=3, width=4, deficiency=0),  # excess 2
            row(3, before=12, after=3, width=3),  # excess 1
            row(4, before=12, after=3, width=4, deficiency=6),  # excess 2, more deficient than block 2
            row(5, before=12, after=3, width=2, deficiency=1)]  # ties block 1: network order
    assert rank_positions(rows) == [4, 2, 3, 1, 5]


def test_ties_everywhere_keep_network_order_and_nothing_is_lost():
    rows = [row(i) for i in range(1, 5)]
    assert rank_positions(rows) == [1, 2, 3, 4]
    assert not any(loses_information(r) for r in rows)
    assert rank_positions([]) == []


def test_equal_bits_here_fall_back_to_the_excess_drop():
    rows = [row(1, here=0.5), row(2, here=0.5, before=9, after=6, width=8), row(3, here=0.5 + 1e-12)]
    assert rank_positions(rows) == [2, 1, 3]  # bits equal to 9 decimals are a tie


def test_the_engine_ranks_its_blocks_by_the_same_rule():
    from basintui.engine.analyses import infoloss

    shapes = [(0.0, 12, 2, 1, 5), (0.0, 17, 12, 16, 0), (0.0, 9, 17, 16, 0), (0.0, 12, 3, 2, 0)]
    blocks = [infoloss.BlockReport(
        index=i, name=str(i), n_params=1, width=w, classes=1, largest_class=1, bits_lost=h, bits_lost_here=h,
        activation_rank=after, rank_drop=before - after, dead_units=0, zero_fraction=0.0, params_upstream=1,
        dependence_bound=2, dependence_guaranteed=False, block_rank=1, cumulative_rank=1,
        block_rank_deficiency=dfc) for i, (h, before, after, w, dfc) in enumerate(shapes, start=1)]
    infoloss.rank_blocks(blocks)
    assert [b.position for b in blocks] == [2, 1, 3, 4]  # blocks 3 and 4 lose nothing: network order
    assert [(b.forced_rank_drop, b.excess_rank_drop) for b in blocks] == [(10, 0), (0, 5), (0, 0), (9, 0)]


# --------------------------------------------------------------------------- real engine runs


def _layers(name: str, *sets: str):
    from basintui.config import load_preset
    from basintui.engine.session.run import run

    report = run(load_preset(name, ['analysis.hessian="off"', "analysis.rank_every=-1", *sets])).to_schema()
    assert report.error is None and report.layers is not None
    return report


def _by_index(report, attr):
    return [getattr(b, attr) for b in sorted(report.layers, key=lambda b: b.index)]


def test_collapse_block_one_merges_inputs_and_ranks_first():
    r = _layers("collapse", "train.steps=30")
    assert _by_index(r, "position") == [1, 4, 2, 3]
    assert _by_index(r, "width") == [2, 32, 32, 1]
    assert _by_index(r, "rank_drop") == [1, -13, 3, 11]
    assert _by_index(r, "forced_rank_drop") == [1, 0, 0, 11]  # 4 → 3 at width 2; 13 → 2 at width 1
    assert _by_index(r, "excess_rank_drop") == [0, 0, 3, 0]
    first = min(r.layers, key=lambda b: b.position)
    assert first.bits_lost_here > 0 and first.finding.startswith("merges inputs")
    out = min(r.layers, key=lambda b: -b.index)
    assert "drops 13 → 2 because the output layer is 1 wide (forced by its width, not information loss)" \
        in out.finding and out.finding.startswith("loses no information here")


def test_default_a_genuine_bottleneck_ranks_above_the_output_layer():
    r = _layers("default", "train.steps=30")
    assert _by_index(r, "position") == [3, 1, 2]
    assert [(b.activation_rank + b.rank_drop, b.activation_rank) for b in sorted(r.layers, key=lambda b: b.index)] \
        == [(9, 17), (17, 12), (12, 2)]  # [X, 1] of 64 points in 8 dimensions has rank 9
    assert _by_index(r, "forced_rank_drop") == [0, 0, 10]
    assert _by_index(r, "excess_rank_drop") == [0, 5, 0]
    b2 = r.layers[1]
    assert b2.finding.startswith("no inputs merged, but the rank of [A, 1] drops 17 → 12 although the block is "
                                 "16 wide, room for rank 17: 5 lost beyond its width (a bottleneck)")


def test_deep_linear_nothing_is_lost_and_says_so():
    r = _layers("deep-linear", "train.steps=50")
    # no merges and no drop beyond a width anywhere: ordered by block-G deficiency min(n_ℓ, kd) − rank(G_ℓ),
    # with kd = 32·3 = 96, n_ℓ = 48, 30, 15 and rank(G_ℓ) = q(r + d − q) = 3·(4 + 3 − 3) = 12
    assert r.G.rank == 12
    assert _by_index(r, "block_rank_deficiency") == [36, 18, 3]
    assert _by_index(r, "position") == [1, 2, 3]
    assert _by_index(r, "forced_rank_drop") == [0, 0, 1]  # 5 → 4 at the 3-wide output
    assert _by_index(r, "excess_rank_drop") == [0, 0, 0]
    assert all(b.finding.startswith("loses no information here: no inputs merged") for b in r.layers)
    assert not any(loses_information(b) for b in r.layers)
    from basintui.render.layers import layers_view

    text = _render(layers_view(r), 80)
    assert "no block loses information" in text and "most information lost" not in text


def test_a_rank_zero_g_the_critique_point():
    r = _layers("critique")
    (b,) = r.layers
    assert r.G.rank == 0 and b.block_rank == 0
    # 4 inputs in 2 dimensions ([X, 1] rank 3) all map to f = 0: one class, 2 bits, rank [A, 1] = 1
    assert (b.classes, b.bits_lost_here, b.activation_rank, b.rank_drop) == (1, 2.0, 1, 2)
    assert (b.forced_rank_drop, b.excess_rank_drop, b.position) == (1, 1, 1)


# --------------------------------------------------------------------------- names shown literally


def _render(renderable, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, color_system=None).print(renderable)
    return buf.getvalue()


NAMES = ["net[i]", "[i]"]


def _bracketed():
    r = load_report(REPORTS / "xor-relu.json")
    layers = [msgspec.structs.replace(b, name=n) for b, n in zip(r.layers, NAMES)]
    groups = [msgspec.structs.replace(g, collided_in="[bold]net[i]", description="[i] identical")
              for g in r.dependent_inputs.groups]
    dep = msgspec.structs.replace(r.dependent_inputs, groups=groups)
    return msgspec.structs.replace(r, layers=layers, dependent_inputs=dep)


@pytest.mark.parametrize("width", [80, 200])
def test_bracketed_names_show_literally_in_the_cli_table(width):
    from basintui.render.layers import layers_view

    text = _render(layers_view(_bracketed()), width)
    lines = text.splitlines()
    for name in NAMES:
        assert any(line.split()[1:2] == [name] for line in lines if line.strip()[:1].isdigit()), name
    assert "[bold]net[i]" in text  # the dependent group's block, markup and all
    assert max(len(line) for line in lines) <= width


def test_bracketed_names_show_literally_in_the_pane():
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Static

    from basintui.tui.widgets.layers import LayersPane

    class One(App):
        def compose(self) -> ComposeResult:
            yield LayersPane()

    async def show():
        async with One().run_test(size=(120, 50)) as pilot:
            pane = pilot.app.query_one(LayersPane)
            pane.show(_bracketed())
            await pilot.pause()
            table = pane.query_one(DataTable)
            names = [table.get_row_at(i)[1] for i in range(table.row_count)]
            detail = _render(pane.query_one("#layer-detail-text", Static).content, 200)
            return [n.plain if hasattr(n, "plain") else str(n) for n in names], detail

    names, detail = asyncio.run(show())
    assert names == NAMES  # ranking order: block 1 merges inputs
    assert "Block net[i]" in detail and "[i] identical" in detail
    for raw_key in ("partly_collided_at", "coefficient_rule", "vectors_listed", "block_rank_deficiency",
                    "collision kind", "atol rule"):
        assert raw_key not in detail, raw_key
