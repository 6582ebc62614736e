"""Information loss at a layer (DESIGN §1, issue 5): hand-built networks with known answers."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from basintui.config import load_preset
from basintui.engine.analyses import dependent, infoloss, partitions
from basintui.engine.routes.jacobian import compute_G
from basintui.engine.problem.models import layout_of
from basintui.engine.session.run import run
from basintui.render.summary import summary

from conftest import make_preset, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import infoloss_models as fm  # noqa: E402


def _analyse(model: nn.Module, x: np.ndarray, d: int = 1):
    model = model.to(torch.float64)
    layout = layout_of(model)
    xt = torch.as_tensor(x, dtype=torch.float64)
    G, _ = compute_G(model, layout, xt)
    tol = infoloss.g_tolerance(G)
    la = infoloss.analyse_blocks(model, layout, xt, G, tol, d)
    dep = dependent.dependent_inputs(G, tol, d, la.partitions, [b.name for b in la.blocks], R=la.R)
    return la, dep, G, tol


def _render(r) -> str:
    """The summary of a typed report (schema.Report), as text."""
    buf = io.StringIO()
    Console(file=buf, width=200, no_color=True).print(summary(r))
    return buf.getvalue()


# ----------------------------------------------------------------------------- ReLU collapse


def test_relu_layer_zeroes_a_known_group_with_a_dead_unit():
    la, dep, G, tol = _analyse(fm.relu_dead_group(2, 1), fm.RELU_X)
    b1, b2, b3 = la.blocks
    assert b1.classes == 5 and b1.largest_class == 8  # 8 inputs → (0, 0), 4 distinct positives
    assert b1.merged_class == fm.RELU_GROUP
    # H(P0) = log2 12, H(P1) = log2 12 − (8/12)·log2 8: exactly 2 bits
    assert b1.bits_lost == pytest.approx(2.0, abs=1e-12)
    assert b1.bits_lost_here == pytest.approx(2.0, abs=1e-12)
    assert b1.dead_units == 1
    assert b1.zero_fraction == pytest.approx(20 / 24)
    assert b1.collision_kind == "activation"  # pre-activations x1 were all distinct
    assert b1.params_upstream == 6 and b1.dependence_bound == 7
    assert b1.dependence_guaranteed is True  # 8 > 1 + 6
    assert b1.merged_class_rank == 1  # dead ReLUs zero their block-1 gradients too
    # nothing further is lost: cumulative stays, here is zero, and block 1 alone ranks first
    assert (b2.bits_lost, b3.bits_lost) == (pytest.approx(2.0), pytest.approx(2.0))
    assert b2.bits_lost_here == 0 and b3.bits_lost_here == 0
    assert b1.position == 1 and sorted(b.position for b in la.blocks) == [1, 2, 3]
    assert not b2.dependence_guaranteed and not b3.dependence_guaranteed
    # ranks: block 1's rows of G, the cumulative rank reaching rank(G)
    rank_G = int((torch.linalg.svdvals(G) > tol).sum())
    assert b3.cumulative_rank == rank_G == 5
    # block 1's rows: the dead unit's 3 rows are zero, the live unit's are c_i·(x_i, 1) over 4 inputs
    assert b1.block_rank == int((torch.linalg.svdvals(G[:6]) > tol).sum()) == 3
    assert b1.block_rank_deficiency == 6 - 3
    # dependent inputs: exactly that group, identical gradients, collided in block 1
    assert dep.null_dim == 12 - 5 == 7 and dep.explained_dim == 7
    assert len(dep.groups) == 1
    g = dep.groups[0]
    assert g.kind == "identical" and g.indices == fm.RELU_GROUP and g.dimension == 7
    assert g.collided_at == 1 and g.collided_in.startswith("1: Linear(2→2) + ReLU")


def test_relu_group_with_two_outputs_reports_per_input():
    la, dep, G, tol = _analyse(fm.relu_dead_group(2, 2), fm.RELU_X, d=2)
    b1 = la.blocks[0]
    assert b1.dependence_bound == 2 + 6 and b1.dependence_guaranteed  # 8·2 > 8
    assert b1.merged_class_rank == 2  # one column per output
    g = dep.groups[0]
    assert (g.kind, g.indices, g.dimension, g.collided_at) == ("identical", fm.RELU_GROUP, 14, 1)
    assert dep.null_dim == 24 - int((torch.linalg.svdvals(G) > tol).sum())
    assert dep.explained_dim == dep.null_dim
    # any further relation involves at most one member of the group (its representative)
    assert all(len(set(h.indices) & set(fm.RELU_GROUP)) <= 1 for h in dep.groups[1:])
    assert "(input, output) pairs" in dep.how


def test_linear_map_merging_inputs_is_a_collision_before_the_activation():
    # Linear(2→1) with weights (1, 1): inputs with equal x1 + x2 merge before the ReLU
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0]]))
        lin.bias.copy_(torch.tensor([0.5]))
    out = nn.Linear(1, 1)
    model = nn.Sequential(lin, nn.ReLU(), out)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75], [2.0, 1.0], [-3.0, 0.5]])
    la, dep, _, _ = _analyse(model, x)
    b1 = la.blocks[0]
    assert b1.classes == 3 and b1.largest_class == 3
    assert b1.classes_before_activation == 3 and b1.collision_kind == "linear"
    # H(P0) − H(P1) = log2 5 − [(3/5) log2(5/3) + (2/5) log2 5] = (3/5) log2 3
    assert b1.bits_lost_here == pytest.approx(0.6 * math.log2(3), abs=1e-12)
    assert b1.bits_lost_linear == pytest.approx(b1.bits_lost_here) and b1.bits_lost_activation == 0
    assert not b1.dependence_guaranteed  # 3 columns vs bound 1 + 3
    # their block-1 gradients differ (x differs), so any dependence is a combination, named with block 1
    assert all(g.kind == "combination" for g in dep.groups)


# ----------------------------------------------------------------------------- no collisions


def test_linear_bottleneck_drops_rank_without_collisions():
    x = np.random.default_rng(0).standard_normal((10, 4))  # general position, rank 4
    la, dep, _, _ = _analyse(fm.linear_bottleneck(4, 1), x)
    b1 = la.blocks[0]
    assert b1.name.startswith("1: Linear(4→2)") and b1.width == 2
    assert all(b.classes == 10 and b.bits_lost == 0 and b.bits_lost_here == 0 for b in la.blocks)
    assert b1.activation_rank == 3 and b1.rank_drop == 5 - 3
    assert b1.collision_kind == "none" and b1.merged_class_rank is None
    # 5 → 3 is all a width of 2 allows (rank [A, 1] ≤ 3): forced by the architecture, no information lost
    assert (b1.forced_rank_drop, b1.excess_rank_drop) == (2, 0)
    assert b1.finding.startswith("loses no information here: no inputs merged")
    assert "drops 5 → 3 because the block is 2 wide (forced by its width, not information loss)" in b1.finding


def test_network_without_information_loss():
    x = np.random.default_rng(1).standard_normal((8, 3))
    la, dep, G, tol = _analyse(fm.tanh_wide(3, 1), x)
    assert [b.bits_lost for b in la.blocks] == [0.0, 0.0, 0.0]
    assert [b.classes for b in la.blocks] == [8, 8, 8]
    assert [b.dead_units for b in la.blocks] == [0, 0, 0]
    assert not any(b.dependence_guaranteed for b in la.blocks)
    assert la.blocks[-1].cumulative_rank == 8
    assert dep.groups == [] and dep.null_dim == 0


def test_duplicated_inputs_lose_no_bits_relative_to_the_raw_partition():
    p = make_preset(data={"kind": "gaussian", "n": 10, "dim": 3, "duplicates": 3},
                    model={"hidden": [12, 12], "activation": "tanh"}, train={"steps": 0},
                    analysis={"hessian": "off"})
    rep = run(p)
    r = rep.to_dict()
    assert r["error"] is None
    info = r["layers_info"]
    distinct = 10 + 3 - len(set(rep.data.duplicate_of))  # duplicates of one source may coincide
    assert info["raw_classes"] == 10 and distinct >= 10
    assert all(b["bits_lost"] == 0 and b["bits_lost_here"] == 0 and b["classes"] == 10 for b in r["layers"])
    # the dependent groups are exactly the duplicate sets, collided in the raw data (block 0)
    expected: dict[int, set[int]] = {}
    for dup, src in rep.data.duplicate_of.items():
        expected.setdefault(src, {src}).add(dup)
    groups = r["dependent_inputs"]["groups"]
    assert sorted(sorted(g["indices"]) for g in groups) == sorted(sorted(s) for s in expected.values())
    assert all(g["kind"] == "identical" and g["collided_at"] == 0 for g in groups)
    assert r["dependent_inputs"]["null_dim"] == 3


# ----------------------------------------------------------------------------- ranking


def _block(index, here=0.0, drop=0, deficiency=0, width=8):  # wide enough that no drop here is forced
    return infoloss.BlockReport(
        index=index, name=str(index), n_params=1, width=width, classes=1, largest_class=1, bits_lost=here,
        bits_lost_here=here, activation_rank=1, rank_drop=drop, dead_units=0, zero_fraction=0.0,
        params_upstream=1, dependence_bound=2, dependence_guaranteed=False, block_rank=1, cumulative_rank=1,
        block_rank_deficiency=deficiency)


def test_ranking_rule_bits_here_then_rank_drop_then_block_deficiency():
    blocks = [_block(1, drop=1, deficiency=5), _block(2, here=0.5), _block(3, drop=4), _block(4, drop=1, deficiency=7)]
    infoloss.rank_blocks(blocks)
    assert [b.position for b in blocks] == [4, 1, 2, 3]


def test_collapse_in_block_one_ranks_block_one_first_through_a_session():
    p = make_preset(data={"kind": "file", "path": str(_relu_npz())},
                    model={"kind": "python", "factory": "infoloss_models:relu_dead_group"},
                    train={"steps": 0}, analysis={"hessian": "off"}, source_dir=FIXTURES)
    rep = run(p)
    r = rep.to_dict()
    assert r["error"] is None
    L = r["layers"]
    # later blocks carry the cumulative loss but lose nothing here: block 1 alone is first, no ties
    assert L[0]["position"] == 1 and sorted(b["position"] for b in L) == [1, 2, 3]
    assert [b["bits_lost_here"] for b in L] == [pytest.approx(2.0), 0, 0]
    assert [b["bits_lost"] for b in L] == [pytest.approx(2.0)] * 3
    for key in ("name", "n_params", "classes", "largest_class", "bits_lost", "bits_lost_here", "activation_rank",
                "rank_drop", "dead_units", "zero_fraction", "params_upstream", "dependence_bound",
                "dependence_guaranteed", "block_rank", "cumulative_rank", "position", "collision_kind",
                "merged_class_rank", "atol"):
        assert key in L[0], key
    assert L[-1]["cumulative_rank"] == r["G"]["rank"]
    assert r["dependent_inputs"]["groups"][0]["indices"] == fm.RELU_GROUP
    text = _render(rep.to_schema())
    table = text[text.index("Information loss by layer"):]
    first_row = next(line for line in table.splitlines() if line.strip().startswith("1 "))
    assert "1: Linear(2→2) + ReLU" in first_row
    assert "identical" in text and "0, 1, 2, 3, 4, 5, 6, 7" in text


def _relu_npz() -> Path:
    path = FIXTURES / "infoloss_relu_group.npz"
    if not path.exists():  # pragma: no cover - the file is committed; rebuilt only if removed
        np.savez(path, x=fm.RELU_X, y=np.linspace(-1, 1, len(fm.RELU_X)))
    return path


def test_collapse_preset_names_the_inputs_that_collided_in_block_one():
    r = run(load_preset("collapse", ['analysis.hessian="off"', "analysis.rank_every=-1"])).to_dict()
    L = r["layers"]
    top = min(L, key=lambda b: b["position"])
    assert top["index"] == 1 and top["bits_lost_here"] > 0 and top["dependence_guaranteed"]
    assert all(b["bits_lost_here"] == 0 and b["bits_lost"] == pytest.approx(top["bits_lost"]) for b in L[1:])
    groups = r["dependent_inputs"]["groups"]
    assert groups and all(g["collided_at"] == 1 for g in groups)
    assert sorted(i for g in groups for i in g["indices"]) == top["merged_class"]
    assert r["G"]["rank"] == r["data"]["n_train"] - (top["largest_class"] - 1)


# ----------------------------------------------------------------------------- other models


def test_non_sequential_model_gets_a_row_per_module_and_the_run_goes_on():
    """TwoPath = b(relu(a(x))) + skip(x): one row per module that owns parameters, named by named_modules(), in
    parameter order; every path has another around it, so no row claims a loss for the network."""
    p = make_preset(data={"kind": "gaussian", "n": 12, "dim": 3},
                    model={"kind": "python", "factory": "infoloss_models:two_path"},
                    train={"steps": 0}, analysis={"hessian": "off"}, source_dir=FIXTURES)
    rep = run(p)
    r = rep.to_dict()
    assert r["error"] is None and r["G"]["rank"] > 0
    L = r["layers"]
    assert [b["module"] for b in L] == ["a", "b", "skip"] and r["layers_info"]["whole_model"] is False
    assert r["layers_info"]["available"] is True and r["layers_info"]["cut"] == "modules"
    assert [b["n_params"] for b in L] == [3 * 8 + 8, 8 + 1, 3 + 1]
    assert L[-1]["cumulative_rank"] == r["G"]["rank"]
    assert all(b["skip_around"] and not b["dependence_guaranteed"] for b in L)
    assert r["dependent_inputs"]["null_dim"] == 12 - r["G"]["rank"]
    assert "skip connection" in _render(rep.to_schema())


def test_batchnorm_in_train_mode_is_refused_with_exit_2():
    proc = run_cli("run", str(FIXTURES / "infoloss_batchnorm.toml"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "BatchNorm" in proc.stderr and "batch" in proc.stderr
    assert "per-sample" in proc.stderr.lower() or "Per-sample" in proc.stderr


# ----------------------------------------------------------------------------- pieces


def test_partition_uses_the_stated_tolerance():
    A = np.array([[1.0, 2.0], [1.0 + 1e-12, 2.0], [1.0 + 1e-6, 2.0], [5.0, 0.0]])
    P = partitions.partition_of(A)
    assert partitions.activation_atol(A) == pytest.approx(5e-9)
    assert P.labels.tolist() == [0, 0, 1, 2]
    assert partitions.entropy_bits(np.array([2, 1, 1])) == pytest.approx(1.5)


def test_close_pairs_projection_matches_brute_force():
    rng = np.random.default_rng(2)
    V = rng.standard_normal((40, 50))
    V[7] = V[3]
    V[20] = V[3] + 1e-13
    V[33] = V[11] * (1 + 1e-14)
    I, J = partitions.close_pairs(V, 1e-10, "2")
    brute = {(i, j) for i in range(40) for j in range(i + 1, 40) if np.linalg.norm(V[i] - V[j]) <= 1e-10}
    assert set(zip(I.tolist(), J.tolist())) == brute == {(3, 7), (3, 20), (7, 20), (11, 33)}


def test_null_space_in_echelon_form_names_the_relation():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((6, 5))
    A[:, 2] = 2 * A[:, 0] - A[:, 4]  # one relation among columns 0, 2, 4
    E = dependent.null_basis_rref(A, 4)
    assert E.shape == (1, 5)
    assert np.abs(A @ E.T).max() < 1e-12
    v = E[0] / E[0][np.argmax(np.abs(E[0]))]
    support = np.flatnonzero(np.abs(v) > 1e-10).tolist()
    assert support == [0, 2, 4]
    assert v[[0, 2, 4]] / v[2] == pytest.approx([-2.0, 1.0, 1.0])


def test_dependent_combination_groups_from_g():
    # G's columns: inputs 0..4, with g_3 = g_0 + g_1 and g_4 = g_2 (identical), in R^7
    rng = np.random.default_rng(5)
    g = rng.standard_normal((7, 5))
    g[:, 3] = g[:, 0] + g[:, 1]
    g[:, 4] = g[:, 2]
    G = torch.as_tensor(g)
    dep = dependent.dependent_inputs(G, infoloss.g_tolerance(G), 1)
    kinds = sorted((grp.kind, grp.indices) for grp in dep.groups)
    assert kinds == [("combination", [0, 1, 3]), ("identical", [2, 4])]
    comb = next(grp for grp in dep.groups if grp.kind == "combination")
    c = np.array(comb.coefficients[0])
    assert c / c[2] == pytest.approx([-1.0, -1.0, 1.0])
    assert dep.null_dim == 2 and dep.explained_dim == 2


def test_json_caps_the_coefficient_vectors_of_a_large_group():
    m = 300
    coefs = [[1.0] + [0.0] * (m - 1) for _ in range(m - 1)]
    g = dependent.DependentGroup("identical", list(range(m)), coefs, m - 1, 1, "1: x", 1)
    out = g.to_dict()
    assert out["vectors_listed"] == len(out["coefficients"]) == dependent.MAX_COEFS // m
    assert out["dimension"] == m - 1 and len(g.coefficients) == m - 1


def test_softmax_probabilities_give_one_relation_within_each_input():
    p = make_preset(data={"kind": "gaussian", "n": 8, "dim": 4, "out_dim": 3, "targets": "random"},
                    model={"hidden": [16], "activation": "tanh"}, train={"loss": "ce", "steps": 0},
                    analysis={"hessian": "off", "ce_output": "probabilities"})
    r = run(p).to_dict()
    dep = r["dependent_inputs"]
    assert dep["null_dim"] == 8 and r["G"]["rank"] == 24 - 8
    [g] = dep["groups"]
    assert g["kind"] == "within_input" and g["indices"] == list(range(8)) and g["dimension"] == 8
    assert "Σ_c" in g["coefficient_rule"]
    first = np.array(g["coefficients"][0][0])  # input 0's 3 coefficients: all equal
    assert np.allclose(first, first[0]) and first[0] != 0


def test_batch_coupled_model_that_runs_one_at_a_time_is_refused_too():
    from basintui.engine.errors import InputError

    p = make_preset(data={"kind": "gaussian", "n": 16, "dim": 4},
                    model={"kind": "python", "factory": "infoloss_models:batch_centering"},
                    train={"steps": 0}, source_dir=FIXTURES)
    with pytest.raises(InputError, match="depends on the other inputs in the batch"):
        run(p)


def test_cancelled_token_stops_the_analysis():
    from basintui.engine.cancel import CancelToken
    from basintui.engine.errors import Cancelled

    model = fm.relu_dead_group(2, 1).to(torch.float64)
    layout = layout_of(model)
    x = torch.as_tensor(fm.RELU_X)
    G, _ = compute_G(model, layout, x)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        infoloss.analyse_blocks(model, layout, x, G, infoloss.g_tolerance(G), 1, token)


def test_ranked_table_fits_80_columns_with_block_one_first():
    p = make_preset(data={"kind": "file", "path": str(_relu_npz())},
                    model={"kind": "python", "factory": "infoloss_models:relu_dead_group"},
                    train={"steps": 0}, analysis={"hessian": "off"}, source_dir=FIXTURES)
    r = run(p).to_schema()
    from basintui.render.layers import layers_view

    buf = io.StringIO()
    Console(file=buf, width=80, no_color=True).print(layers_view(r))
    text = buf.getvalue()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    rows = [line for line in text.splitlines() if line[:1].isdigit()]
    assert rows[0].split()[:3] == ["1", "1:", "Linear(2→2)"]
    assert "2.000" in rows[0] and "yes" in rows[0]
