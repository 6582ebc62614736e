"""Preset loading and validation: every bad value names its key, its value and what is allowed."""

from __future__ import annotations

import pytest

from basintui.config import (
    PresetError,
    apply_overrides,
    from_dict,
    list_presets,
    load_preset,
    load_text,
    parse_override,
    to_toml,
)

BUILTIN = ["collapse", "critique", "deep-linear", "default", "digits", "underparam", "xor-relu"]


def test_every_builtin_preset_loads_and_round_trips_through_toml():
    names = [n for n, _ in list_presets()]
    assert set(BUILTIN) <= set(names)
    for name in names:
        p = load_preset(name)
        assert p.name == name
        again = load_text(to_toml(p), source_dir=p.source_dir)
        assert again.to_dict() == p.to_dict()


@pytest.mark.parametrize(
    "raw,key,fragment",
    [
        ({"data": {"kind": "gaussian", "nn": 3}}, "data.nn", "a known key"),
        ({"colour": "red"}, "colour", "a known key"),
        ({"data": {"n": "many"}}, "data.n", "an integer"),
        ({"data": {"n": 0}}, "data.n", "from 1"),
        ({"train": {"lr": -1.0}}, "train.lr", "> 0"),
        ({"train": {"loss": "hinge"}}, "train.loss", "mse, bce, ce"),
        ({"model": {"activation": "swish"}}, "model.activation", "relu"),
        ({"model": {"hidden": [4, "x"]}}, "model.hidden", "list of integers"),
        ({"model": {"bias": 1}}, "model.bias", "true or false"),
        ({"data": {"kind": "xor", "dim": 3}}, "data.dim", "2 for data.kind"),
        ({"data": {"kind": "file"}}, "data.path", ".npz or .csv"),
        ({"data": {"kind": "file", "path": "nowhere.npz"}}, "data.path", "an existing file"),
        ({"data": {"kind": "gaussian", "targets": "labels"}}, "data.targets", "has no labels"),
        ({"data": {"dim": 4, "rank": 6}}, "data.rank", "at most data.dim"),
        ({"model": {"kind": "python"}}, "model.factory", "module:function"),
        ({"analysis": {"hessian": "exact"}}, "analysis.hessian", "auto, dense, lanczos, off"),
        ({"device": "tpu"}, "device", "auto, cpu, cuda"),
        ({"data": 3}, "data", "a table"),
    ],
)
def test_bad_values_name_key_value_and_allowed(raw, key, fragment):
    with pytest.raises(PresetError) as info:
        from_dict(raw)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert repr(info.value.value) in str(info.value)


def test_overrides_take_toml_values_and_bare_words():
    assert parse_override("model.hidden=[64, 64]") == (["model", "hidden"], [64, 64])
    assert parse_override("data.targets=self") == (["data", "targets"], "self")
    assert parse_override('data.targets="self"') == (["data", "targets"], "self")
    assert parse_override("train.lr=1e-3") == (["train", "lr"], 0.001)
    raw = apply_overrides({"train": {"steps": 5}}, ["train.steps=7", "seed=3"])
    assert raw == {"train": {"steps": 7}, "seed": 3}
    with pytest.raises(PresetError) as info:
        parse_override("train.steps")
    assert info.value.key == "--set"


def test_override_through_load_is_validated():
    p = load_preset("default", ["train.steps=3", "model.hidden=[4]"])
    assert p.train.steps == 3 and p.model.hidden == (4,)
    with pytest.raises(PresetError) as info:
        load_preset("default", ["train.optimizer=rmsprop"])
    assert info.value.key == "train.optimizer"


def test_unknown_preset_name_lists_the_builtin_ones():
    with pytest.raises(PresetError) as info:
        load_preset("no-such-preset")
    assert "default" in str(info.value) and info.value.key == "preset"


def test_relative_data_path_resolves_next_to_the_preset(tmp_path):
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(3))
    (tmp_path / "p.toml").write_text('[data]\nkind = "file"\npath = "d.npz"\n')
    p = load_preset(str(tmp_path / "p.toml"))
    assert p.data.path == "d.npz" and p.source_dir == str(tmp_path)
