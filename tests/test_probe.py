"""Probe sets (issue 18 item 3): the probe rank equals the training rank when the probe repeats the training
inputs (drawn or read from a file), drawn probes come from the training distribution and avoid the training
inputs where the data set is finite, and bad settings name analysis.probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basintui.config import PresetError, load_preset
from basintui.engine.analyses import probe
from basintui.engine.errors import InputError
from basintui.engine.numerics import spectrum
from basintui.engine.problem import data as data_mod
from basintui.engine.problem.models import build_mlp, layout_of
from basintui.engine.routes import jacobian


def _G(model, x):
    return jacobian.compute_G(model, layout_of(model), x)[0]


def _model(width: int = 3):
    torch.manual_seed(0)
    return build_mlp(2, (width,), 1, "tanh", True).double()


def test_probe_repeating_the_training_inputs_has_the_training_rank():
    m = _model()  # N = 13 > k = 8
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    G = _G(m, x)
    rank = spectrum.spectrum_of(G).rank
    out = probe.ranks(G, _G(m, x), rank, 0.0, "repeat")
    assert out.rank_probe == out.rank_train == out.rank_both == rank
    assert out.flat_on_both == out.flat_on_train == 13 - rank


def test_new_probe_inputs_remove_flat_directions():
    m = _model(6)  # N = 25
    g = torch.Generator().manual_seed(2)
    x, xp = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    G, Gp = _G(m, x), _G(m, xp)
    out = probe.ranks(G, Gp, spectrum.spectrum_of(G).rank, 0.0, "drawn")
    assert (out.rank_train, out.rank_probe, out.rank_both) == (5, 5, 10)  # generic tanh net, N ≥ 10
    assert out.flat_on_both == 25 - 10
    assert "(5 are not)" in out.meaning[0]


def test_probe_file_read_back_as_the_training_inputs(tmp_path):
    preset = load_preset("default", ["data.n=6"])
    inputs = data_mod.make_inputs(preset.data, preset.seed)
    np.savez(tmp_path / "p.npz", x=inputs.x)
    x, source = probe.read_file(str(tmp_path / "p.npz"), "", inputs.x)
    assert np.array_equal(x, inputs.x) and "read from" in source
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 5)))
    with pytest.raises(InputError, match="analysis.probe"):
        probe.read_file(str(tmp_path / "bad.npz"), "", inputs.x)


def test_gaussian_probe_lies_in_the_training_subspace():
    preset = load_preset("default", ["data.rank=3", "data.n=20", "analysis.probe=10"])
    inputs = data_mod.make_inputs(preset.data, preset.seed)
    xp, _ = probe.probe_inputs(preset, inputs)
    assert xp.shape == (10, 8)
    both = np.concatenate([inputs.x, xp])
    assert np.linalg.matrix_rank(both) == 3
    assert not any(np.allclose(row, r) for row in xp for r in inputs.x)


@pytest.mark.parametrize("kind", ["digits", "modular", "parity"])
def test_finite_data_sets_draw_other_inputs_than_the_training_ones(kind):
    base, extra = {"digits": ("digits", ["data.n=100"]),
                   "modular": ("modadd", ["data.p=7", "data.train_fraction=0.5"]),
                   "parity": ("default", ["data.kind=parity", "data.dim=5", "data.n=20", "data.targets=labels"])}[kind]
    preset = load_preset(base, [*extra, "analysis.probe=8"])
    inputs = data_mod.make_inputs(preset.data, preset.seed)
    xp = probe.draw(preset, inputs, 8)
    assert len(xp) == 8
    train = {tuple(np.asarray(r).ravel()) for r in inputs.x}
    assert not any(tuple(np.asarray(r).ravel()) in train for r in xp)


def test_asking_for_more_probe_inputs_than_remain_is_an_input_error():
    preset = load_preset("default", ["data.kind=parity", "data.dim=3", "data.n=6", "data.targets=labels"])
    inputs = data_mod.make_inputs(preset.data, preset.seed)
    with pytest.raises(InputError, match="only 2 bit strings"):
        probe.draw(preset, inputs, 5)


@pytest.mark.parametrize(("item", "words"), [("analysis.probe=-3", "a count of probe inputs"),
                                             ("analysis.probe=true", "an integer or a string"),
                                             ('analysis.probe="p.txt"', "a file ending in .npz"),
                                             ('analysis.probe="missing.npz"', "an existing file")])
def test_bad_probe_settings_name_the_key(item, words):
    with pytest.raises(PresetError, match=words) as info:
        load_preset("default", [item])
    assert info.value.key == "analysis.probe"
