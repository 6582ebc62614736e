"""The typed report (basintui.schema): every preset's report round-trips JSON -> schema -> JSON unchanged,
basintui.report/1 files still open with their numbers, and a foreign or broken file gives a ReportError
that names the field. `import basintui.schema` stays torch-free."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import typing
from pathlib import Path

import msgspec
import pytest
from conftest import ROOT, make_preset

from basintui import config, schema
from basintui.schema import (
    ReportError,
    decode_report,
    encode_report,
    load_report,
    report_to_builtins,
)

REPORT1 = Path(__file__).parent / "fixtures" / "report1"
FIXTURES = sorted(REPORT1.glob("*.json"))
PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.toml"))

# Each preset at reduced size, every analysis it asks for left on: fewer steps, no live rank probes.
QUICK = ["analysis.rank_every=-1"]
SMALL = {
    "xor-relu": ["train.steps=100"],
    "critique": [],
    "deep-linear": ["train.steps=50", "data.n=12"],
    "default": ["train.steps=30"],
    "collapse": ["train.steps=30", "data.n=24"],
    "digits": ["train.steps=20", "data.n=40", "model.hidden=[8]"],
    "underparam": ["train.steps=50"],
    "modadd": ["train.steps=5", "data.p=5", "model.hidden=[4, 8]"],
    "digits-cnn": ["train.steps=5", "data.n=12", "model.hidden=[2, 2]"],
    "resmlp": ["train.steps=5", "data.n=16", "model.hidden=[6, 6]"],
}
FAST = ("xor-relu", "critique", "deep-linear")  # under 10 s each (measured 1-9 s); the others are slow


# --------------------------------------------------------------------------- helpers


def same_numbers(file_value, typed_value, path="$") -> list[str]:
    """Where the typed report's plain form differs from the file's (a key lost, a value changed).
    Non-finite floats are compared in their JSON string form ("nan", "inf")."""
    if isinstance(file_value, dict):
        if not isinstance(typed_value, dict):
            return [f"{path}: not an object"]
        out = []
        for key, value in file_value.items():
            if key not in typed_value:
                out.append(f"{path}.{key}: missing")
            else:
                out += same_numbers(value, typed_value[key], f"{path}.{key}")
        return out
    if isinstance(file_value, list):
        if not isinstance(typed_value, list) or len(typed_value) != len(file_value):
            return [f"{path}: list differs"]
        return [d for i, (a, b) in enumerate(zip(file_value, typed_value)) for d in same_numbers(a, b, f"{path}[{i}]")]
    if file_value != typed_value or type(file_value) is bool and type(typed_value) is not bool:
        return [f"{path}: {file_value!r} != {typed_value!r}"]
    return []


def fixture(name: str) -> dict:
    return json.loads((REPORT1 / name).read_text())


def raises_at(data, path: str, *words: str) -> ReportError:
    with pytest.raises(ReportError) as info:
        decode_report(data)
    assert info.value.path == path
    for word in words:
        assert word in str(info.value)
    return info.value


# --------------------------------------------------------------------------- every preset round-trips


def _round_trip(name: str) -> None:
    from basintui.engine.session.report import json_bytes
    from basintui.engine.session.run import run

    report = run(config.load_preset(name, [*SMALL[name], *QUICK]))
    assert report.error is None and report.status != "cancelled"
    text = json_bytes(report)
    typed = decode_report(text)
    assert typed.schema == schema.SCHEMA and typed.plan is not None and typed.plan.n_params == report.model.n_params
    assert encode_report(typed) == text  # JSON -> schema -> JSON, byte for byte
    assert report_to_builtins(typed) == json.loads(text)
    preset = config.load_preset(name)
    sections = {"hessian": preset.analysis.hessian != "off", "layers": preset.analysis.layers,
                "levelset": preset.analysis.levelset}
    for section, on in sections.items():  # every analysis the preset asks for produced its section
        assert (getattr(typed, section) is not None) == on, section
    assert typed.G is not None and typed.G.rank == report.G.rank


def test_the_reduced_runs_cover_every_preset():
    assert sorted(SMALL) == PRESETS


@pytest.mark.parametrize("name", FAST)
def test_preset_report_round_trips(name):
    _round_trip(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PRESETS if p not in FAST])
def test_preset_report_round_trips_slow(name):
    _round_trip(name)


# --------------------------------------------------------------------------- basintui.report/1 files


def test_report1_fixtures_are_report1():
    assert len(FIXTURES) >= 5
    for path in FIXTURES:
        assert json.loads(path.read_text())["schema"] == "basintui.report/1"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_report1_file_opens_with_its_numbers(path):
    typed = load_report(path)
    assert typed.schema == schema.SCHEMA  # read into the /2 shape
    assert typed.plan is None  # /2 only
    original = json.loads(path.read_text())
    assert same_numbers({k: v for k, v in original.items() if k != "schema"}, report_to_builtins(typed)) == []
    again = encode_report(typed)
    assert encode_report(decode_report(again)) == again


def test_report1_values_by_attribute():
    r = decode_report((REPORT1 / "xor-relu.json").read_bytes())
    raw = fixture("xor-relu.json")
    assert r.G.rank == raw["G"]["rank"] and r.G.regime == raw["G"]["regime"]
    assert r.G.singular_values == raw["G"]["singular_values"]
    assert r.hessian.weyl.outside_band == raw["hessian"]["weyl"]["outside_band"]
    assert r.hessian.claim3.verdict == raw["hessian"]["claim3"]["verdict"]
    assert r.hessian.rank_rule.GGN.from_ == raw["hessian"]["rank_rule"]["GGN"]["from"]
    assert [row.cumulative_rank for row in r.layers] == [row["cumulative_rank"] for row in raw["layers"]]
    assert r.layers_info.raw_classes == raw["layers_info"]["raw_classes"]
    assert r.training.losses == raw["training"]["losses"]
    critique = load_report(REPORT1 / "critique.json")
    assert critique.levelset.manifold == fixture("critique.json")["levelset"]["manifold"]
    assert critique.levelset.by_radius[0].radius == fixture("critique.json")["levelset"]["by_radius"][0]["radius"]


def test_report1_sections_left_out_are_none():
    off = load_report(REPORT1 / "xor-relu-hessian-off.json")
    assert off.hessian is None and off.levelset is None and off.layers is not None
    cancelled = load_report(REPORT1 / "cancelled.json")
    assert cancelled.training.status == "cancelled" and cancelled.training.cancelled_stage == "train"
    assert cancelled.G is None and cancelled.layers_info is None


# --------------------------------------------------------------------------- non-finite floats


def test_non_finite_floats_read_as_floats_and_write_as_strings():
    raw = fixture("xor-relu.json")
    raw["training"]["final_loss"] = "nan"
    raw["hessian"]["lambda_max"] = "inf"
    raw["hessian"]["lambda_min"] = "-inf"
    raw["training"]["losses"][:2] = ["nan", "inf"]
    r = decode_report(json.dumps(raw))
    assert math.isnan(r.training.final_loss)
    assert r.hessian.lambda_max == math.inf and r.hessian.lambda_min == -math.inf
    assert math.isnan(r.training.losses[0]) and r.training.losses[1] == math.inf
    back = json.loads(encode_report(r))
    assert back["training"]["final_loss"] == "nan" and back["hessian"]["lambda_max"] == "inf"
    assert back["hessian"]["lambda_min"] == "-inf" and back["training"]["losses"][:2] == ["nan", "inf"]


# --------------------------------------------------------------------------- foreign and broken files


def test_text_that_is_not_json():
    raises_at(b"{\"schema\": \"basintui.report/2\", ", "$", "not JSON")
    raises_at("hello", "$", "not JSON")


def test_json_that_is_not_a_report():
    raises_at(b"[1, 2, 3]", "$", "not an object")
    raises_at(b'{"name": "xor-relu", "seed": 0}', "$.schema", "`schema` is missing", "basintui.report/2")
    raises_at({"name": "xor-relu"}, "$.schema", "`schema` is missing")
    raises_at(b'{"schema": "other.format/1"}', "$.schema", "other.format/1", "not a basintui report")


def test_a_newer_schema():
    raw = fixture("xor-relu.json")
    raw["schema"] = "basintui.report/3"
    err = raises_at(json.dumps(raw), "$.schema", "basintui.report/3", "newer")
    assert "basintui.report/2" in str(err)


def test_a_wrong_typed_field_names_its_path():
    raw = fixture("xor-relu.json")
    raw["G"]["rank"] = "three"
    raises_at(json.dumps(raw), "$.G.rank", "Expected `int`", "$.G.rank")
    raw = fixture("xor-relu.json")
    raw["hessian"]["claim3"]["verdict"] = "maybe"
    raises_at(raw, "$.hessian.claim3.verdict", "maybe")
    raw = fixture("xor-relu.json")
    raw["layers"][1]["cumulative_rank"] = [3]
    raises_at(json.dumps(raw).encode(), "$.layers[1].cumulative_rank", "Expected `int`")


def test_a_missing_field_names_it():
    raw = fixture("xor-relu.json")
    del raw["G"]["rank"]
    raises_at(json.dumps(raw), "$.G", "rank")
    raw = fixture("xor-relu.json")
    del raw["training"]
    raises_at(json.dumps(raw), "$", "training")


def test_report_error_is_a_value_error(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ValueError):
        load_report(tmp_path / "r.json")


# --------------------------------------------------------------------------- the engine's boundary


def _small_report(**analysis):
    from basintui.engine.session.run import run

    return run(make_preset(data={"kind": "xor", "n": 4, "targets": "labels"}, model={"hidden": [3]},
                           train={"steps": 5}, analysis={"rank_every": -1, **analysis}))


def test_engine_report_fills_the_schema():
    from basintui.engine.session.report import json_bytes

    report = _small_report()
    typed = report.to_schema()
    assert isinstance(typed, schema.Report) and typed.schema == "basintui.report/2"
    assert typed.G.rank == report.G.rank and typed.hessian.rank == report.hessian.rank
    assert typed.layers_info is not None and typed.layers_info.available
    assert report.to_dict() == report_to_builtins(typed)
    assert json_bytes(report) == encode_report(typed)


def test_engine_boundary_rejects_a_wrong_type_or_an_unknown_key():
    from basintui.engine.session.report import ReportSchemaError

    report = _small_report(hessian="off", layers=False)
    report.timings["train"] = "slow"
    with pytest.raises(ReportSchemaError, match=r"\$\.timings"):
        report.to_schema()
    report = _small_report(hessian="off", layers=False)
    report.error = {"kind": "runtime", "message": "x", "bogus": 1}
    with pytest.raises(ReportSchemaError, match=r"\$\.error\.bogus"):
        report.to_schema()


def test_engine_error_is_typed():
    report = _small_report(hessian="off", layers=False)
    report.error = {"kind": "runtime", "message": "MemoryError: out of memory"}
    typed = report.to_schema()
    assert typed.error == schema.RunError(kind="runtime", message="MemoryError: out of memory")
    report.error = {"kind": "input", "key": "data.n", "message": "data.n is too large"}
    assert report.to_schema().error.key == "data.n"


def test_cli_cancelled_before_training_is_a_typed_report():
    from basintui import cli

    partial = cli._nothing_computed(config.load_preset("default"))
    r = cli._partial_as_cancelled(partial, "data")
    assert r.training.status == "cancelled" and r.training.cancelled_stage == "data"
    assert r.model is None and r.data is None and r.device is None and r.training.final_loss is None
    text = encode_report(r)
    assert encode_report(decode_report(text)) == text


# --------------------------------------------------------------------------- the words and the import


@pytest.mark.parametrize("words, literal", [
    (config.DATA_KINDS, "DataKind"), (config.TARGET_KINDS, "TargetKind"), (config.MODEL_KINDS, "ModelKind"),
    (config.ACTIVATIONS, "Activation"), (config.LOSSES, "LossName"), (config.OPTIMIZERS, "Optimizer"),
    (config.DEVICES, "DeviceName"), (config.DTYPES, "DType"), (config.HESSIAN_MODES, "HessianSetting"),
    (config.CE_OUTPUTS, "CeOutput"), (config.SPECTRUM_ROUTES, "RouteSetting"),
])
def test_config_words_agree_with_the_preset_module(words, literal):
    assert set(typing.get_args(getattr(schema.report, literal))) == set(words)


def test_every_preset_config_fits_the_schema():
    for name in PRESETS:
        record = msgspec.convert(config.load_preset(name).to_dict(), schema.PresetRecord)
        assert record.name == name


def test_import_schema_does_not_import_torch():
    code = ("import sys\nimport basintui.schema as s\n"
            "s.decode_report(open(sys.argv[1], 'rb').read())\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', 'NUMPY' if 'numpy' in sys.modules else '')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(FIXTURES[0])], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert proc.stdout.split() == ["NOTORCH"], proc.stderr


def test_lanczos_hessian_and_skipped_stages_fit_the_schema():
    report = _small_report(hessian="lanczos", layers=False)
    typed = report.to_schema()
    assert typed.hessian.method == "lanczos" and typed.hessian.density is not None
    text = encode_report(typed)
    assert encode_report(decode_report(text)) == text
    report.skipped = {"layers": "skipped, because it needs G, which does not fit"}
    assert report.to_schema().skipped == {"layers": "skipped, because it needs G, which does not fit"}
