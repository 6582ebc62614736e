"""Bad input ends in one clear line and the right exit code, never a traceback (issue 13):
preset bytes, `--set` values, data keys, data files, user factories, sizes that cannot fit, and code
the user did not choose (the working directory never supplies a factory; npz files are never unpickled)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from basintui.config import MAX_PRESET_BYTES, MAX_SHOWN, PresetError, load_preset, load_text
from basintui.engine.errors import InputError, ResourceError
from basintui.engine.session.run import run
from conftest import make_preset, run_cli

BAD = Path(__file__).resolve().parent / "fixtures" / "bad"
CHEAP = {"train": {"steps": 0}, "analysis": {"hessian": "off", "layers": False, "rank_every": -1}}
# A guard against a hang, not a measure: the paths these tests rule out (tomllib on a dotted key of
# 30,000 parts, a quadratic scan, data or a model actually built) take minutes; the refusals take
# milliseconds, and seconds on a loaded machine (the first run() also imports the engine).
HANG_S = 30.0


@pytest.fixture
def toml_texts(monkeypatch) -> list[str]:
    """Every text tomllib is asked to parse in this test."""
    import tomllib

    seen: list[str] = []
    real = tomllib.loads

    def spy(text, *args, **kwargs):
        seen.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(tomllib, "loads", spy)
    return seen


def _one_line_error(exc: Exception, limit: int = 4 * MAX_SHOWN + 600) -> str:
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    assert len(msg) < limit, len(msg)
    return msg


def _load_bytes(tmp_path: Path, data: bytes, overrides=()) -> PresetError:
    f = tmp_path / "p.toml"
    f.write_bytes(data)
    with pytest.raises(PresetError) as info:
        load_preset(str(f), list(overrides))
    _one_line_error(info.value)
    return info.value


# --------------------------------------------------------------------------- preset bytes


@pytest.mark.parametrize("data,fragment", [
    (b'name = "caf\xe9"\n', "UTF-8"),                      # latin-1, not UTF-8
    (b"\xff\xfe" + "seed = 1".encode("utf-16-le"), "UTF-8"),
    (b"seed = " + b"[" * 5000 + b"]" * 5000, "nested"),  # RecursionError inside tomllib
    (b"v = " + b"{a = " * 3000 + b"1" + b"}" * 3000, "nested"),
    (b"seed = " + b"[" * 40 + b"1" + b"]" * 40, "nested"),  # parses, but deeper than any preset
    (b"seed = " + b"7" * 5000, "4300 digits"),           # ValueError inside tomllib
    (b"[data]\nn = 1\n[[[", "valid TOML"),
], ids=["latin1", "utf16", "deep-arrays", "deep-tables", "deep-but-parses", "huge-int", "broken"])
def test_unreadable_preset_bytes_name_the_file_and_what_is_wrong(tmp_path, data, fragment):
    exc = _load_bytes(tmp_path, data)
    assert exc.key == "TOML" and fragment in exc.allowed
    assert "p.toml" in str(exc)


def test_a_dotted_key_of_30000_parts_is_refused_at_once(tmp_path, toml_texts):
    t0 = time.perf_counter()
    exc = _load_bytes(tmp_path, b"a" + b".a" * 29_999 + b" = 1\n")
    assert time.perf_counter() - t0 < HANG_S
    assert toml_texts == []  # refused before tomllib, which alone takes half a minute on it
    assert "dotted keys of at most" in exc.allowed and "line 1" in exc.allowed
    exc = _load_bytes(tmp_path, b'[data]\nx = {' + b'"q".' * 5000 + b'z = 1}\n')
    assert "dotted keys" in exc.allowed and "line 2" in exc.allowed
    assert toml_texts == []


def test_a_10_MB_preset_is_refused_with_a_short_message(tmp_path):
    exc = _load_bytes(tmp_path, b'description = "' + b"x" * 10_000_000 + b'"\n')
    assert exc.key == "preset" and str(MAX_PRESET_BYTES) in exc.allowed
    assert len(str(exc)) < 300


def test_long_values_and_odd_keys_are_clipped_and_kept_on_one_line(tmp_path):
    exc = _load_bytes(tmp_path, b'[model]\nactivation = "' + b"w" * 100_000 + b'"\n')
    assert exc.key == "model.activation" and "100002 characters" in str(exc) and len(str(exc)) < 600
    exc = _load_bytes(tmp_path, b'"a\\nb" = 1\n')
    assert exc.key == "a\nb" and "'a\\nb'" in str(exc)
    exc = _load_bytes(tmp_path, b'"' + b"k" * 50_000 + b'" = 1\n')
    assert len(str(exc)) < 600


def test_a_utf8_bom_is_accepted(tmp_path):
    f = tmp_path / "bom.toml"
    f.write_bytes(b"\xef\xbb\xbfseed = 3\n")
    assert load_preset(str(f)).seed == 3


def test_non_finite_numbers_are_refused_where_a_number_is_wanted():
    for key, value in [("train.lr", "nan"), ("train.target_loss", "inf"), ("analysis.rtol", "-inf")]:
        with pytest.raises(PresetError) as info:
            load_preset("default", [f"{key}={value}"])
        assert info.value.key == key and "finite" in str(info.value)


# --------------------------------------------------------------------------- --set values


@pytest.mark.parametrize("item,key,fragment", [
    ("seed=" + "9" * 5000, "seed", "4300 digits"),
    ("seed=" + "9" * 4000, "seed", "from 0 to"),           # parses; far beyond torch's seed range
    ("model.hidden=" + "[" * 3000, "model.hidden", "nested"),
    ("model.hidden=" + "[" * 50 + "]" * 50, "model.hidden", "nested"),
    ("train.lr={" + "a." * 30_000 + "a = 1}", "train.lr", "dotted keys"),
    ("a" + ".a" * 29_999 + "=1", "a.a.a", "one level deep"),
    ("train.steps=3\nseed = 4", "train.steps", "one TOML value"),
    ("data.duplicates=" + "9" * 40, "data.duplicates", "from 0 to 1000000"),
    ("train.batch_size=" + "9" * 30, "train.batch_size", "from 0 to"),
    ("model.hidden=[" + "1," * 2000 + "1]", "model.hidden", "at most 1000 hidden layers"),
], ids=["huge-int", "big-seed", "deep", "deep-parses", "dotted-value", "dotted-key", "two-keys",
        "huge-duplicates", "huge-batch", "many-layers"])
def test_bad_set_values_name_the_key(item, key, fragment, toml_texts):
    t0 = time.perf_counter()
    with pytest.raises(PresetError) as info:
        load_preset("default", [item])
    assert time.perf_counter() - t0 < HANG_S
    if "dotted" in fragment:
        assert not any(item.split("=", 1)[1] in text for text in toml_texts)  # refused before tomllib
    assert str(info.value.key).startswith(key) and fragment in str(info.value)
    _one_line_error(info.value)


def test_the_app_editor_text_goes_through_the_same_guards():
    with pytest.raises(PresetError) as info:
        load_text("seed = " + "[" * 4000)
    assert "nested" in str(info.value)


# --------------------------------------------------------------------------- data keys and sizes


def test_rank_without_dim_is_checked_against_the_default_dim():
    with pytest.raises(PresetError) as info:
        make_preset(data={"kind": "gaussian", "rank": 20})
    assert info.value.key == "data.rank" and "8 when left out" in str(info.value)
    make_preset(data={"kind": "gaussian", "rank": 5})  # within the default dim: fine


@pytest.mark.parametrize("dups,n", [(1_000_000, None), (999_999, 2), (10**30, None)])
def test_duplicates_count_against_the_size_limit_of_data_n(dups, n):
    data = {"duplicates": dups} if n is None else {"duplicates": dups, "n": n}
    t0 = time.perf_counter()
    with pytest.raises(PresetError) as info:
        make_preset(data=data)
    assert time.perf_counter() - t0 < HANG_S
    assert info.value.key == "data.duplicates" and "1000000" in str(info.value)


def test_inputs_that_cannot_fit_are_priced_before_they_are_made():
    p = make_preset(data={"n": 1_000_000, "dim": 100_000}, **CHEAP)
    t0 = time.perf_counter()
    with pytest.raises(ResourceError) as info:
        run(p)
    assert time.perf_counter() - t0 < HANG_S
    assert info.value.key in ("data.n", "data.dim") and "TiB" in str(info.value)


def test_a_huge_mlp_is_refused_in_words_before_it_is_built():
    p = make_preset(model={"hidden": [100_000, 100_000]}, **CHEAP)
    t0 = time.perf_counter()
    with pytest.raises(ResourceError) as info:
        run(p)
    assert time.perf_counter() - t0 < HANG_S  # nothing of 80 GB was allocated
    msg = _one_line_error(info.value)
    assert info.value.key == "model.hidden"
    assert "10,001,100,001 parameters" in msg and "GiB" in msg and "optimiser" in msg
    assert info.value.estimate_bytes > 10**11


# --------------------------------------------------------------------------- data files


FILES = [
    ("empty.csv", "is empty"),
    ("header_only.csv", "no rows of numbers"),
    ("one_column.csv", "two columns"),
    ("nan_x.csv", "x holds nan at line 3"),
    ("inf_y.csv", "y holds inf at line 2"),
    ("strings_y.csv", "y holds nan at line 1"),
    ("no_arrays.npz", "arrays named x and y"),
    ("empty_x.npz", "non-empty"),
    ("y_3d.npz", "shape (4, 2, 2)"),
    ("y_scalar.npz", "single number"),
    ("y_strings.npz", "holds strings"),
    ("nan_x.npz", "x holds nan at x[2]"),
    ("inf_y.npz", "y holds -inf at y[3]"),
    ("pickled.npz", "never unpickled"),
    ("corrupt.npz", "cannot read"),
]


@pytest.mark.parametrize("name,fragment", FILES, ids=[f[0] for f in FILES])
def test_unusable_data_files_name_the_file_and_the_fault(name, fragment):
    p = make_preset(data={"kind": "file", "path": name}, source_dir=BAD, **CHEAP)
    with pytest.raises(InputError) as info:
        run(p)
    msg = _one_line_error(info.value)
    assert info.value.key == "data.path" and name in msg and fragment in msg


def test_a_csv_too_big_to_read_is_priced_before_it_is_read(monkeypatch):
    from basintui.engine.problem import data
    monkeypatch.setattr(data, "host_available_bytes", lambda: 100)  # 80 bytes usable; nan_x.csv is 20
    p = make_preset(data={"kind": "file", "path": "nan_x.csv"}, source_dir=BAD, **CHEAP)
    with pytest.raises(InputError) as info:
        run(p)
    assert info.value.key == "data.path" and "reading it takes about 160 B" in str(info.value)


def test_an_npz_that_unpacks_too_big_is_priced_from_its_headers(monkeypatch):
    from basintui.engine.problem import data
    monkeypatch.setattr(data, "host_available_bytes", lambda: 200)  # x 4×2 and y 4 as float64: 96 B, ×3 to load
    p = make_preset(data={"kind": "file", "path": "nan_x.npz"}, source_dir=BAD, **CHEAP)
    with pytest.raises(InputError) as info:
        run(p)
    assert info.value.key == "data.path" and "come to 96 B as float64" in str(info.value)


def test_pickled_npz_is_never_unpickled(tmp_path, monkeypatch):
    import pickle

    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a) or None)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a) or None)
    p = make_preset(data={"kind": "file", "path": "pickled.npz"}, source_dir=BAD, **CHEAP)
    with pytest.raises(InputError):
        run(p)
    assert calls == []


# --------------------------------------------------------------------------- user factories


MODELS = [
    ("one_d", "shape (1,)"),
    ("wrong_width", "3 outputs where the data needs out_dim = 1"),
    ("not_a_tensor", "returns ndarray"),
    ("a_dict", "returns a dict ('logits') on one input; basintui uses a dict's 'output' entry, which it lacks"),
    ("wrong_input_width", "fails on one input of shape (1, 3)"),
    ("nan_output", "non-finite"),
    ("integer_output", "torch.int64"),
    ("only_one_input", "fails on a batch of 2"),
    ("detached", "does not depend on its trainable parameters"),
]


@pytest.mark.parametrize("fn,fragment", MODELS, ids=[m[0] for m in MODELS])
def test_a_factory_whose_output_breaks_the_contract_is_refused_before_training(fn, fragment):
    p = make_preset(data={"n": 6, "dim": 3}, model={"kind": "python", "factory": f"bad_models:{fn}"},
                    source_dir=BAD, train={"steps": 1000}, analysis={"hessian": "off", "layers": False})
    t0 = time.perf_counter()
    with pytest.raises(InputError) as info:
        run(p)
    assert time.perf_counter() - t0 < HANG_S
    msg = _one_line_error(info.value)
    assert info.value.key == "model.factory" and fragment in msg and "bad_models" in msg


def test_the_report_says_which_file_the_factory_came_from():
    p = make_preset(data={"n": 6, "dim": 3}, model={"kind": "python", "factory": "bad_models:good"},
                    source_dir=BAD, **CHEAP)
    r = run(p).to_dict()
    assert r["error"] is None and r["model"]["factory_file"] == str(BAD / "bad_models.py")
    assert run(make_preset(data={"n": 6, "dim": 3}, **CHEAP)).to_dict()["model"]["factory_file"] is None


@pytest.mark.parametrize("spec", [".bad_models:good", "..x:f", "a..b:f", "os/path:f", "a:b.c", "a:", "1x:f"])
def test_relative_or_malformed_factory_names_are_refused(spec):
    with pytest.raises(PresetError) as info:
        make_preset(model={"kind": "python", "factory": spec})
    assert info.value.key == "model.factory" and "identifier" in str(info.value)


SHADOW = textwrap.dedent("""
    import torch
    def net(in_dim, out_dim):
        raise SystemExit("the working directory's module was imported")
""")
GOOD = textwrap.dedent("""
    import torch
    def net(in_dim, out_dim):
        return torch.nn.Linear(in_dim, out_dim)
""")


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_the_working_directory_never_supplies_a_factory(tmp_path):
    cwd, presets = tmp_path / "cwd", tmp_path / "presets"
    cwd.mkdir()
    presets.mkdir()
    (cwd / "shadowmod.py").write_text(SHADOW)
    (presets / "p.toml").write_text('[data]\nn = 4\ndim = 2\n[model]\nkind = "python"\nfactory = "shadowmod:net"\n'
                                    '[train]\nsteps = 0\n[analysis]\nhessian = "off"\nlayers = false\n')
    proc = run_cli("run", str(presets / "p.toml"), cwd=cwd, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "model.factory" in proc.stderr and "working directory is not searched" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # the preset's own folder wins over a same-named module in the working directory
    (presets / "shadowmod.py").write_text(GOOD)
    out = tmp_path / "r.json"
    proc = run_cli("run", str(presets / "p.toml"), "--json", str(out), "--quiet", cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads(out.read_text())["model"]["factory_file"] == str((presets / "shadowmod.py").resolve())


# --------------------------------------------------------------------------- the real command line


def _cli_refuses(*args, needle: str, cwd=None):
    proc = run_cli(*args, cwd=cwd, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert len(lines[0]) < 1500


def test_cli_turns_bad_bytes_and_set_values_into_exit_2(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    (tmp_path / "deep.toml").write_bytes(b"seed = " + b"[" * 5000)
    (tmp_path / "big.toml").write_bytes(b"#" * (2 * MAX_PRESET_BYTES))
    _cli_refuses("run", str(tmp_path / "latin1.toml"), needle="UTF-8")
    _cli_refuses("run", str(tmp_path / "deep.toml"), needle="nested")
    _cli_refuses("run", str(tmp_path / "big.toml"), needle="1 MiB")
    _cli_refuses("run", "default", "--set", "seed=" + "9" * 5000, needle="seed")
    _cli_refuses("run", "default", "--set", "a" + ".a" * 30_000 + "=1", needle="one level deep")


def test_cli_turns_bad_data_and_models_into_exit_2(tmp_path):
    for name in ("nan_x.csv", "pickled.npz", "y_3d.npz"):
        (tmp_path / name).write_bytes((BAD / name).read_bytes())
    (tmp_path / "bad_models.py").write_text((BAD / "bad_models.py").read_text())
    (tmp_path / "f.toml").write_text('[data]\nkind = "file"\npath = "nan_x.csv"\n[train]\nsteps = 0\n')
    _cli_refuses("run", str(tmp_path / "f.toml"), needle="line 3")
    (tmp_path / "m.toml").write_text('[data]\nn = 4\ndim = 3\n[model]\nkind = "python"\n'
                                     'factory = "bad_models:one_d"\n')
    _cli_refuses("run", str(tmp_path / "m.toml"), needle="shape (1,)")
    _cli_refuses("run", "default", "--set", "model.hidden=[100000, 100000]", needle="model.hidden")
    _cli_refuses("run", "default", "--set", "data.duplicates=1000000", needle="data.duplicates")
