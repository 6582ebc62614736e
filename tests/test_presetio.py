"""presetio: a preset written as TOML reads back equal, and the equivalent command rebuilds it through the CLI."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import tomllib

import pytest
from conftest import ROOT

from basintui import cli, presetio
from basintui.config import PresetError, load_preset, replace
from basintui.presetio import (
    SaveError,
    equivalent_command,
    for_folder,
    overrides_between,
    preset_to_toml,
    toml_literal,
    write_preset_file,
)

PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.toml"))

# --set items as a user would type them: floats that only round-trip by repr, strings that need escapes
EDITS = [
    ["train.lr=0.1", "train.target_loss=1e-300"],
    ["train.lr=0.30000000000000004", "analysis.rtol=5e-324"],
    ["train.lr=999.9999999999999", "train.target_loss=1e300"],
    ['description="a \\"quoted\\" C:\\\\path\\\\ and a tab\\t and a newline\\n"'],
    ["description='single \"quotes\" in a literal, C:\\dir\\'", 'name="ünïcödé ∇θ, a DEL \\u007f, a NUL \\u0000"'],
    ['name="has spaces; $HOME `and` shell chars *"', "seed=4294967295"],
    ["model.hidden=[64, 32, 16, 8, 4, 2, 1]", "model.activation=tanh", "model.bias=false"],
    ["model.hidden=[]", "data.dim=5", "data.rank=3", "data.n=17", "data.duplicates=2"],
    ["analysis.route=matfree", "analysis.top_k=7", "analysis.rank_every=-1", "analysis.hessian=off"],
    ["device=cpu", "dtype=float32", "train.optimizer=sgd", "train.batch_size=8", "train.steps=0"],
]


def write(tmp_path, preset, name="saved.toml"):
    path = tmp_path / name
    path.write_text(preset_to_toml(preset), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", PRESETS)
def test_every_builtin_preset_round_trips(tmp_path, name):
    preset = load_preset(name)
    text = preset_to_toml(preset)
    back = load_preset(str(write(tmp_path, preset)))
    assert back.to_dict() == preset.to_dict()
    assert dataclasses.replace(back, source_dir=preset.source_dir) == preset  # the typed objects, too
    assert tomllib.loads(text)["seed"] == preset.seed


@pytest.mark.parametrize("base", ["default", "digits", "critique"])
@pytest.mark.parametrize("sets", EDITS, ids=range(len(EDITS)))
def test_edited_presets_round_trip_exactly(tmp_path, base, sets):
    if base == "digits" and "data.dim=5" in sets:
        sets = [s for s in sets if not s.startswith(("data.dim", "data.rank"))]
    preset = load_preset(base, sets)
    back = load_preset(str(write(tmp_path, preset)))
    assert back.to_dict() == preset.to_dict()
    assert dataclasses.replace(back, source_dir=preset.source_dir) == preset
    for key in ("lr", "target_loss"):  # bit for bit, not approximately
        assert math.copysign(1, getattr(back.train, key)) == math.copysign(1, getattr(preset.train, key))
        assert getattr(back.train, key).hex() == getattr(preset.train, key).hex()


def test_float_edges_are_written_exactly():
    for x in (0.1, 1e-300, 5e-324, 1e300, 1.7976931348623157e308, 2.0**-1074, 1 / 3, 100.0, -0.0):
        text = toml_literal(x)
        back = tomllib.loads(f"v = {text}")["v"]
        assert isinstance(back, float) and back.hex() == x.hex(), (x, text)
    assert toml_literal(float("inf")) == "inf" and toml_literal(-math.inf) == "-inf"
    assert math.isnan(tomllib.loads(f"v = {toml_literal(math.nan)}")["v"])


@pytest.mark.parametrize("value", [
    [[1, 2], [3, [4.5, "x"]], []],
    {"a": [1, {"b": 'q"uote'}], "with space": True},
    "back\\slash \"quote\" \x00 \x1f \x7f \b\f\r\n\t é ∇",
    ["", "'", '"', "\\"],
])
def test_nested_values_and_escapes_read_back_equal(value):
    assert tomllib.loads(f"v = {toml_literal(value)}")["v"] == value


def test_what_toml_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="surrogate"):
        toml_literal("a\ud800b")
    with pytest.raises(ValueError, match="no TOML form"):
        toml_literal(None)


def test_none_keys_are_left_out_and_mean_the_default(tmp_path):
    preset = load_preset("default", ["data.kind=sine"])
    preset = replace(preset, data={"n": None, "dim": None})
    text = preset_to_toml(preset)
    data = tomllib.loads(text)["data"]
    assert "n" not in data and "dim" not in data and "rank" not in data
    assert load_preset(str(write(tmp_path, preset))).to_dict() == preset.to_dict()


def command_preset(command: str):
    """The Preset that `command` describes, through the CLI's own parser and loader."""
    words = shlex.split(command)
    assert words[:2] == ["basintui", "run"]
    args = cli._parser().parse_args(words[1:])
    preset = cli._run_preset(args)
    assert not isinstance(preset, int), f"the CLI refused {command!r} (exit {preset})"
    return preset


def test_an_unedited_preset_is_the_bare_command():
    assert equivalent_command(load_preset("default"), "default") == "basintui run default"
    assert equivalent_command(load_preset("critique"), "critique") == "basintui run critique"


@pytest.mark.parametrize("base", ["default", "critique", "deep-linear"])
@pytest.mark.parametrize("sets", EDITS, ids=range(len(EDITS)))
def test_the_equivalent_command_rebuilds_the_preset(base, sets):
    preset = load_preset(base, sets)
    command = equivalent_command(preset, base)
    assert command.startswith(f"basintui run {base}")
    assert command_preset(command).to_dict() == preset.to_dict()
    changed = {item.partition("=")[0] for item in overrides_between(preset, load_preset(base))}
    assert changed <= {s.partition("=")[0] for s in sets}  # only what differs (an edit may equal the base)


def test_the_command_from_another_base_and_from_a_path(tmp_path):
    preset = load_preset("collapse", ["train.lr=1e-300"])
    command = equivalent_command(preset, "default")  # every key that differs from default
    assert "--set 'model.hidden=[" in command and "train.lr=1e-300" in command
    assert command_preset(command).to_dict() == preset.to_dict()
    odd = tmp_path / "it's a dir"
    odd.mkdir()
    path = write(odd, load_preset("default"), "my preset.toml")
    command = equivalent_command(preset, str(path))
    assert shlex.split(command)[2] == str(path)
    assert command_preset(command).to_dict() == preset.to_dict()


def test_a_key_the_base_sets_cannot_be_cleared_by_set():
    preset = replace(load_preset("default"), data={"n": None})
    with pytest.raises(PresetError, match="cannot clear") as info:
        equivalent_command(preset, "default")
    assert info.value.key == "data.n"


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "p.toml"
    assert write_preset_file(target, "seed = 1\n") == target
    with pytest.raises(SaveError, match="already exists"):
        write_preset_file(target, "seed = 2\n")
    assert target.read_text() == "seed = 1\n"
    write_preset_file(target, "seed = 2\n", overwrite=True)
    assert target.read_text() == "seed = 2\n"
    assert sorted(os.listdir(tmp_path)) == ["p.toml"], "no temporary is left behind"


def test_write_errors_are_words(tmp_path, monkeypatch):
    with pytest.raises(SaveError, match="does not exist") as info:
        write_preset_file(tmp_path / "no" / "such" / "p.toml", "seed = 1\n")
    assert "Traceback" not in str(info.value)
    with pytest.raises(SaveError, match="is a folder"):
        write_preset_file(tmp_path, "seed = 1\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: make the create itself refuse, as it would
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(presetio.os, "open", refuse)
        with pytest.raises(SaveError, match="no permission to write in") as info:
            write_preset_file(locked / "p.toml", "seed = 1\n")
        assert "Errno" not in str(info.value)
    finally:
        locked.chmod(0o700)
    assert os.listdir(locked) == []


def test_a_relative_data_path_is_rebased_for_another_folder(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    (src / "xy.csv").write_text("1,2\n3,4\n5,6\n")
    (src / "p.toml").write_text('[data]\nkind = "file"\npath = "xy.csv"\n')
    preset = load_preset(str(src / "p.toml"))
    same, notes = for_folder(preset, src)
    assert same == preset and notes == []
    moved, notes = for_folder(preset, dst)
    assert moved.data.path == str((src / "xy.csv").resolve()) and "data.path" in notes[0]
    back = load_preset(str(write(dst, moved)))
    assert back.to_dict() == moved.to_dict()


def test_a_relative_checkpoint_is_rebased_for_another_folder(tmp_path):
    import torch

    from basintui.engine.problem.models import build_mlp

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    torch.save(build_mlp(8, (4,), 1, "relu", True).state_dict(), src / "w.pt")
    (src / "p.toml").write_text('[model]\nhidden = [4]\ncheckpoint = "w.pt"\n[data]\ndim = 8\n')
    preset = load_preset(str(src / "p.toml"))
    assert for_folder(preset, src) == (preset, [])
    moved, notes = for_folder(preset, dst)
    assert moved.model.checkpoint == str((src / "w.pt").resolve()) and notes[0].startswith("model.checkpoint 'w.pt'")
    assert load_preset(str(write(dst, moved))).to_dict() == moved.to_dict()


def test_a_factory_beside_the_preset_is_noted(tmp_path):
    moved, notes = for_folder(load_preset("critique"), tmp_path)
    assert moved.model.factory == "critique:cross"
    assert len(notes) == 1 and "critique.py" in notes[0] and str(tmp_path) in notes[0]
