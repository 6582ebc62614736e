"""Research-scale data and the built-in architectures: modular addition, digits as images, the cnn, the
one-layer transformer and the residual MLP, their presets at reduced size, and the input they refuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from basintui.config import PresetError, load_preset
from basintui.engine.problem import zoo
from basintui.engine.problem.data import input_shape, make_inputs
from basintui.engine.problem.models import make_model
from basintui.planner import sizes_from_preset, zoo_params
from conftest import make_preset, run_cli

MODULAR = {"kind": "modular", "targets": "labels"}


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("p, fraction, k", [(7, 1.0, 49), (7, 0.5, 24), (11, 0.3, 36), (2, 0.25, 1), (13, None, 169)])
def test_modular_data_has_round_fraction_of_the_pairs_and_true_labels(p, fraction, k):
    cfg = make_preset(data={**MODULAR, "p": p, **({"train_fraction": fraction} if fraction else {})},
                      model={"kind": "transformer", "hidden": [4, 4]}, train={"loss": "ce"}).data
    inputs = make_inputs(cfg, seed=3)
    x = inputs.x
    assert x.shape == (k, 2) and x.dtype == np.int64 and input_shape(cfg) == (k, 2)
    assert ((0 <= x) & (x < p)).all()
    assert len({tuple(r) for r in x}) == k  # distinct pairs
    assert (inputs.labels == (x[:, 0] + x[:, 1]) % p).all() and inputs.n_classes == p
    assert (np.diff(x[:, 0] * p + x[:, 1]) > 0).all()  # kept in (a, b) order


def test_modular_data_is_deterministic_in_the_seed():
    cfg = make_preset(data={**MODULAR, "p": 17, "train_fraction": 0.4}, model={"kind": "mlp"},
                      train={"loss": "ce"}).data
    a, b, c = make_inputs(cfg, 5).x, make_inputs(cfg, 5).x, make_inputs(cfg, 6).x
    assert (a == b).all() and not np.array_equal(a, c)


def test_digits_as_images_are_the_flat_digits_reshaped():
    flat = make_preset(data={"kind": "digits", "n": 30, "targets": "labels"}, train={"loss": "ce"}).data
    image = make_preset(data={"kind": "digits", "n": 30, "targets": "labels", "layout": "image"},
                        model={"kind": "cnn", "hidden": [2]}, train={"loss": "ce"}).data
    f, i = make_inputs(flat, 0), make_inputs(image, 0)
    assert f.x.shape == (30, 64) and i.x.shape == (30, 1, 8, 8) and i.x.dtype == np.float64
    assert np.array_equal(i.x.reshape(30, 64), f.x) and np.array_equal(i.labels, f.labels)


def test_image_duplicates_are_appended_whole():
    cfg = make_preset(data={"kind": "digits", "n": 10, "duplicates": 3, "targets": "labels", "layout": "image"},
                      model={"kind": "cnn", "hidden": [2]}, train={"loss": "ce"}).data
    inputs = make_inputs(cfg, 0)
    assert inputs.x.shape == (13, 1, 8, 8)
    for j, src in inputs.duplicate_of.items():
        assert np.array_equal(inputs.x[j], inputs.x[src])


# --------------------------------------------------------------------------- architectures


def _n(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("hidden, bias, d, n", [
    # conv 1→c1: 9·c1 + c1; conv c1→c2: 9·c1·c2 + c2; Linear: 64·c_last·d + d
    ((4, 4), True, 10, (36 + 4) + (144 + 4) + (64 * 4 * 10 + 10)),
    ((3,), False, 10, 27 + 64 * 3 * 10),
])
def test_cnn_shape_and_parameter_count(hidden, bias, d, n):
    cfg = make_preset(data={"kind": "digits", "n": 5, "targets": "labels", "layout": "image"},
                      model={"kind": "cnn", "hidden": list(hidden), "bias": bias}, train={"loss": "ce"}).model
    torch.manual_seed(0)
    net = zoo.build(cfg, 1, d)
    assert _n(net) == n == zoo_params(cfg, 64, d)[0]
    assert net(torch.zeros(7, 1, 8, 8)).shape == (7, d)


def test_cnn_conv_is_torch_conv2d():
    torch.manual_seed(2)
    conv = zoo.Conv2d(3, 5, kernel_size=3, padding=1).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    assert isinstance(conv, torch.nn.Conv2d)
    assert torch.allclose(conv(x), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("w, m, heads, ln, bias, p", [(16, 64, 2, None, True, 31), (8, 12, 1, False, False, 5)])
def test_transformer_shape_and_parameter_count(w, m, heads, ln, bias, p):
    cfg = make_preset(data={**MODULAR, "p": p}, train={"loss": "ce"},
                      model={"kind": "transformer", "hidden": [w, m], "heads": heads, "bias": bias,
                             **({"layernorm": ln} if ln is not None else {})}).model
    b, lns = int(bias), 0 if ln is False else 3
    # token and position embeddings, LayerNorms (weight and bias), q k v o, the MLP, the unembedding
    n = p * w + 2 * w + lns * 2 * w + 4 * (w * w + b * w) + (w * m + b * m + m * w + b * w) + (w * p + b * p)
    net = zoo.build(cfg, 2, p)
    assert _n(net) == n == zoo_params(cfg, 2, p)[0]
    tokens = torch.tensor([[0, 1], [p - 1, p - 1], [2, 3]])
    out = net(tokens)
    assert out.shape == (3, p)
    assert torch.equal(net(tokens.double()), out)  # float tokens (the run's dtype) are the same tokens


def test_transformer_reads_the_last_position_and_never_mixes_the_batch():
    cfg = make_preset(data={**MODULAR, "p": 7}, train={"loss": "ce"}, model={"kind": "transformer",
                                                                           "hidden": [8, 8]}).model
    torch.manual_seed(1)
    net = zoo.build(cfg, 2, 7).double()
    x = torch.tensor([[1, 2], [2, 1], [3, 4], [1, 2]])
    together = net(x)
    alone = torch.cat([net(x[i:i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, rtol=1e-13, atol=1e-13)
    assert torch.equal(together[0], together[3])
    assert not torch.allclose(together[0], together[1])  # position embeddings: (1, 2) is not (2, 1)


@pytest.mark.parametrize("hidden, ln, bias, in_dim, d", [((32, 32), None, True, 8, 1), ((5, 5, 5), False, False, 3, 2)])
def test_resmlp_shape_and_parameter_count(hidden, ln, bias, in_dim, d):
    cfg = make_preset(data={"kind": "gaussian", "dim": in_dim, "out_dim": d},
                      model={"kind": "resmlp", "hidden": list(hidden), "bias": bias,
                             **({"layernorm": ln} if ln is not None else {})}).model
    w, depth, b, lnw = hidden[0], len(hidden), int(bias), 0 if ln is False else 2 * hidden[0]
    n = (in_dim * w + b * w) + depth * (lnw + w * w + b * w) + lnw + (w * d + b * d)
    net = zoo.build(cfg, in_dim, d)
    assert _n(net) == n == zoo_params(cfg, in_dim, d)[0]
    assert net(torch.zeros(4, in_dim)).shape == (4, d)


def test_resmlp_block_is_the_identity_plus_its_branch():
    """With the block's Linear zeroed (and so its ReLU branch 0), the residual block passes x through: the
    skip makes two different inputs of the block collide only if they were equal."""
    cfg = make_preset(data={"kind": "gaussian", "dim": 3}, model={"kind": "resmlp", "hidden": [4]}).model
    net = zoo.build(cfg, 3, 1).double()
    block = net.blocks[0]
    with torch.no_grad():
        block.fc.weight.zero_()
        block.fc.bias.zero_()
    h = torch.randn(5, 4, dtype=torch.float64)
    assert torch.equal(block(h), h)


def test_make_model_builds_the_new_kinds_from_the_seed():
    cfg = make_preset(data={"kind": "gaussian", "dim": 3}, model={"kind": "resmlp", "hidden": [4, 4]}).model
    torch.manual_seed(9)
    a = make_model(cfg, 3, 1, "")
    torch.manual_seed(9)
    b = make_model(cfg, 3, 1, "")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_planner_knows_the_sizes_of_the_new_presets_before_anything_runs():
    for name, kd in (("modadd", 480 * 31), ("digits-cnn", 250 * 10), ("resmlp", 256)):
        sizes = sizes_from_preset(load_preset(name))
        assert sizes.kd == kd and sizes.n_params > 0 and not sizes.linear_ok


# --------------------------------------------------------------------------- presets at reduced size


def _run(name: str, *overrides: str):
    from basintui.engine.session.run import run

    report = run(load_preset(name, list(overrides)))
    assert report.error is None, report.error
    return report.to_dict()


def _consistent(r: dict) -> None:
    g = r["G"]
    N, k, d = r["model"]["n_params"], r["data"]["n_train"], r["data"]["out_dim"]
    assert g["rank"] <= min(N, k * d)
    assert g["kernel_dim"] == N - g["rank"]
    if g["complete"]:
        assert len(g["singular_values"]) == min(N, k * d)
        assert g["rank"] == sum(s > g["tolerance"] for s in g["singular_values"])


# Every analysis on (the Hessian and the layer report included) costs 10-40 s on 2 shared cores for the cnn
# and the transformer (vmapped Hessian-vector products): those runs are slow; the fast ones stop at G.
G_ONLY = ["analysis.hessian=off", "analysis.layers=false", "analysis.rank_every=-1"]
MODADD_SMALL = ["data.p=5", "model.hidden=[4, 8]", "train.steps=5"]
CNN_SMALL = ["data.n=12", "model.hidden=[2, 2]", "train.steps=5"]


def test_modadd_gives_G_at_reduced_size():
    r = _run("modadd", *MODADD_SMALL, *G_ONLY)
    assert (r["data"]["n_train"], r["data"]["out_dim"]) == (12, 5)
    assert r["model"]["n_params"] == zoo_params(load_preset("modadd", MODADD_SMALL).model, 2, 5)[0]
    _consistent(r)


def test_digits_cnn_gives_G_at_reduced_size():
    r = _run("digits-cnn", *CNN_SMALL, *G_ONLY)
    assert (r["data"]["n_train"], r["data"]["out_dim"], r["model"]["n_params"]) == (12, 10, 20 + 38 + 1290)
    _consistent(r)


@pytest.mark.slow
def test_modadd_runs_every_analysis_at_reduced_size():
    r = _run("modadd", *MODADD_SMALL, "analysis.hessian=dense")
    _consistent(r)
    assert r["hessian"] is not None and r["layers"] is not None


@pytest.mark.slow
def test_digits_cnn_runs_every_analysis_at_reduced_size():
    r = _run("digits-cnn", *CNN_SMALL)
    _consistent(r)
    assert r["hessian"] is not None and r["layers"] is not None


def test_resmlp_runs_at_reduced_size():
    r = _run("resmlp", "data.n=16", "model.hidden=[6, 6]", "train.steps=5")
    assert (r["data"]["n_train"], r["data"]["out_dim"]) == (16, 1)
    _consistent(r)
    assert r["hessian"] is not None and r["layers"] is not None


@pytest.mark.slow  # the whole preset, as shipped: about a minute or more on 2 cores
@pytest.mark.parametrize("name", ["modadd", "digits-cnn", "resmlp"])
def test_new_preset_runs_headless_as_shipped(name, tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("run", name, "--json", str(out), "-q", timeout=900)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    _consistent(r)
    if name == "modadd":
        assert r["training"]["status"] == "converged"  # trained until it fits


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("preset, sets, key", [
    ("digits", ["model.kind=transformer", "model.hidden=[8, 8]"], "model.kind"),  # digits are not tokens
    ("digits", ["model.kind=cnn"], "model.kind"),  # flat digits
    ("digits", ["data.layout=image"], "data.layout"),  # an MLP on images
    ("modadd", ["data.p=1"], "data.p"),
    ("modadd", ["data.train_fraction=0"], "data.train_fraction"),
    ("modadd", ["data.train_fraction=1.5"], "data.train_fraction"),
])
def test_bad_combinations_exit_2_naming_the_key(preset, sets, key):
    proc = run_cli("run", preset, *[a for s in sets for a in ("--set", s)], "--json", "-")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert key in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("data, model, key, words", [
    ({"kind": "digits", "targets": "labels"}, {"kind": "transformer", "hidden": [8, 8]}, "model.kind", "modular"),
    ({"kind": "gaussian"}, {"kind": "cnn", "hidden": [2]}, "model.kind", "layout = 'image'"),
    ({"kind": "gaussian", "layout": "image"}, {"kind": "cnn", "hidden": [2]}, "data.layout", "digits"),
    ({"kind": "digits", "layout": "image", "targets": "labels"}, {"kind": "mlp"}, "data.layout", "cnn"),
    ({**MODULAR, "p": 1}, {"kind": "transformer", "hidden": [8, 8]}, "data.p", "from 2 to"),
    ({**MODULAR, "train_fraction": 0.0}, {"kind": "transformer", "hidden": [8, 8]}, "data.train_fraction", "(0, 1]"),
    ({**MODULAR, "train_fraction": 1.5}, {"kind": "transformer", "hidden": [8, 8]}, "data.train_fraction", "(0, 1]"),
    ({**MODULAR, "p": 3, "train_fraction": 0.01}, {"kind": "transformer", "hidden": [8, 8]}, "data.train_fraction",
     "no pair"),
    ({**MODULAR, "n": 10}, {"kind": "transformer", "hidden": [8, 8]}, "data.n", "train_fraction"),
    ({"kind": "gaussian", "p": 5}, {}, "data.p", "modular"),
    ({**MODULAR}, {"kind": "transformer", "hidden": [8]}, "model.hidden", "[width, mlp_width]"),
    ({**MODULAR}, {"kind": "transformer", "hidden": [8, 8], "heads": 3}, "model.heads", "divisor"),
    ({"kind": "modular", "targets": "teacher"}, {"kind": "transformer", "hidden": [8, 8]}, "data.targets", "labels"),
    ({"kind": "gaussian"}, {"kind": "resmlp", "hidden": [8, 4]}, "model.hidden", "all equal"),
    ({"kind": "gaussian"}, {"kind": "mlp", "heads": 2}, "model.heads", "transformer"),
    ({"kind": "gaussian"}, {"kind": "mlp", "layernorm": False}, "model.layernorm", "resmlp"),
])
def test_bad_input_names_the_key_and_what_is_allowed(data, model, key, words):
    with pytest.raises(PresetError) as info:
        make_preset(data=data, model=model, train={"loss": "ce" if data.get("targets") == "labels" else "mse"})
    assert info.value.key == key
    assert words in str(info.value)


# --------------------------------------------------------------------------- a factory on images

IMAGE_FACTORY = '''
from pathlib import Path

from torch import nn

def with_shape(in_dim, out_dim, in_shape):
    Path(__file__).with_name("seen.txt").write_text(repr((in_dim, tuple(in_shape))))
    c, h, w = in_shape
    return nn.Sequential(nn.Conv2d(c, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * (h - 2) * (w - 2), out_dim))

def flat_only(in_dim, out_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_dim, out_dim))
'''


@pytest.mark.parametrize("fn", ["with_shape", "flat_only"])
def test_a_factory_on_images_gets_the_pixel_count_and_the_shape(tmp_path, fn):
    """data.layout = "image" with a factory: in_dim is one image's pixel count (8·8 = 64, not its channel
    count 1), a factory that takes in_shape gets (1, 8, 8), and the report's data.in_dim says 64."""
    from basintui.engine.session.run import run

    (tmp_path / "imgnet.py").write_text(IMAGE_FACTORY)
    preset = make_preset(data={"kind": "digits", "n": 6, "targets": "labels", "layout": "image"},
                         model={"kind": "python", "factory": f"imgnet:{fn}"},
                         train={"loss": "ce", "steps": 0},
                         analysis={"hessian": "off", "layers": False, "rank_every": -1},
                         source_dir=str(tmp_path))
    report = run(preset)
    assert report.error is None, report.error
    assert report.data.in_dim == 64
    if fn == "with_shape":
        assert (tmp_path / "seen.txt").read_text() == "(64, (1, 8, 8))"
        assert report.model.n_params == (2 * 9 + 2) + (2 * 36 * 10 + 10)
    else:
        assert report.model.n_params == 64 * 10 + 10
    assert report.G.rank <= min(report.model.n_params, 6 * 10)
