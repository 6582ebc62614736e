"""The one planner: torch-free, the same decision for the Setup pane (sizes from the preset) as for the
engine (sizes measured from the built model), and its boundaries (dense Hessian up to
DENSE_HESSIAN_MAX_PARAMS and while it fits; the route by memory), always with injected memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import typing

import msgspec
import pytest
from conftest import ROOT, engine_plan, make_preset

from basintui import planner
from basintui.config import load_preset
from basintui.limits import DENSE_HESSIAN_MAX_PARAMS, ROUTES, SAFETY, hessian_bytes, spectrum_peak_bytes
from basintui.schema.plan import Plan, Route, decode_plan

GiB = 2**30
AVAIL = 16 * GiB  # injected: every preset below fits many times over, so the machine's memory cannot decide


def test_the_planner_and_the_plan_do_not_import_torch():
    code = ("import sys, basintui.planner as p, basintui.schema.plan\n"
            "from basintui.config import load_preset\n"
            "plan = p.plan_preset(load_preset('default'), 8 * 2**30)\n"
            "assert plan.known and plan.route == 'factored', plan\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'textual', 'rich', 'numpy')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_plans_route_words_are_the_route_planners():
    assert set(typing.get_args(Route)) == {*ROUTES, "none"}


def _sizes(n: int, k: int, d: int = 1, **kw) -> planner.Sizes:
    return planner.Sizes(n, k, d, **kw)


def test_auto_hessian_is_dense_up_to_the_parameter_limit_and_lanczos_above():
    p = make_preset(analysis={"hessian": "auto"})
    at = planner.plan(p, _sizes(DENSE_HESSIAN_MAX_PARAMS, 8), AVAIL)
    above = planner.plan(p, _sizes(DENSE_HESSIAN_MAX_PARAMS + 1, 8), AVAIL)
    assert at.hessian_mode == "dense" and at.hessian_bytes == hessian_bytes(DENSE_HESSIAN_MAX_PARAMS)
    assert above.hessian_mode == "lanczos" and above.hessian_bytes == 0
    assert f"N = {DENSE_HESSIAN_MAX_PARAMS + 1} > {DENSE_HESSIAN_MAX_PARAMS}" in above.hessian_why
    assert at.hessian_why in at.notes and above.hessian_why in above.notes
    forced = planner.plan(make_preset(analysis={"hessian": "dense"}), _sizes(DENSE_HESSIAN_MAX_PARAMS + 1, 8), AVAIL)
    assert forced.hessian_mode == "dense" and forced.hessian_why == ""  # asked for: never re-chosen


def test_auto_hessian_is_lanczos_one_byte_below_the_memory_it_needs():
    p, n = make_preset(analysis={"hessian": "auto"}), 1000
    peak = planner.plan(p, _sizes(n, 8), AVAIL).peak_bytes
    need = hessian_bytes(n) + peak  # the dense Hessian beside the spectrum's peak, within SAFETY × available
    edge = math.ceil(need / SAFETY)
    while SAFETY * (edge - 1) >= need:
        edge -= 1
    while SAFETY * edge < need:
        edge += 1
    fits, short = planner.plan(p, _sizes(n, 8), edge), planner.plan(p, _sizes(n, 8), edge - 1)
    assert fits.route == short.route and fits.peak_bytes == short.peak_bytes == peak
    assert fits.hessian_mode == "dense" and short.hessian_mode == "lanczos"
    assert "only" in short.hessian_why and "is available" in short.hessian_why


def test_the_route_leaves_explicit_G_one_byte_below_what_it_needs():
    p = make_preset(analysis={"hessian": "off"})
    n, k = 5000, 40_000  # not a network of Linear layers: no factored route; G is 1.6 GB, its Gram 0.8 GB
    need = spectrum_peak_bytes(n, k, False)
    edge = math.ceil(need / SAFETY)
    while SAFETY * edge < need:
        edge += 1
    fits, short = planner.plan(p, _sizes(n, k), edge), planner.plan(p, _sizes(n, k), edge - 1)
    assert fits.route == "explicit" and fits.g_fits and fits.peak_bytes == need
    assert short.route == "streamed-inputs" and "does not fit" in short.route_why
    assert not short.g_fits and short.g_bytes == 8 * n * k


def test_no_route_that_fits_names_the_key_and_the_plan_says_so():
    plan = planner.plan(make_preset(), _sizes(91_201, 200_000, linear_ok=True, width_sum=1204), 2**20)
    assert plan.route == "none" and plan.route_key == "data.n" and "usable" in plan.route_why


def test_a_file_preset_is_unknown_until_the_run_with_the_reason(tmp_path):
    (tmp_path / "x.csv").write_text("x,y\n0.5,1\n")
    p = make_preset(data={"kind": "file", "path": "x.csv", "targets": "labels"}, source_dir=tmp_path)
    sizes = planner.sizes_from_preset(p)
    assert isinstance(sizes, planner.Unknown)
    plan = planner.plan(p, sizes, AVAIL)
    assert not plan.known and plan.n_train is None and plan.out_dim is None and plan.route is None
    assert plan.why_unknown == "k comes from the data file; d comes from the file's labels"
    from basintui.tui.widgets.setup import sizes_text

    assert sizes_text(plan).endswith("(k comes from the data file; d comes from the file's labels: known once "
                                     "the run starts)")


def test_a_factory_model_is_unknown_but_k_and_d_are_known():
    plan = planner.plan_preset(load_preset("critique"), AVAIL)
    assert not plan.known and plan.why_unknown == "N comes from the model factory"
    assert (plan.n_params, plan.n_train, plan.out_dim) == (None, 4, 1)


def test_a_plan_round_trips_json():
    plan = planner.plan(make_preset(), _sizes(433, 64, linear_ok=True, width_sum=58), AVAIL, gflops=10.0)
    text = msgspec.json.encode(plan)
    assert decode_plan(text) == plan and decode_plan(json.loads(text)) == plan
    assert plan.seconds == pytest.approx(plan.flops / 10.0 / 1e9)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.hessian_mode"):
        decode_plan({**json.loads(text), "hessian_mode": "auto"})


# --------------------------------------------------------------------------- the engine's own choice

def _engine_plan(preset, available: int, monkeypatch) -> Plan:
    """The Plan the session makes for `preset` (sizes measured from the built model), memory injected."""
    from basintui.engine import memory as resources

    monkeypatch.setattr(resources, "available_bytes", lambda device: available)
    return engine_plan(preset)


def _without_rate(plan: Plan) -> Plan:
    notes = [n.split("; its arithmetic (~")[0] for n in plan.notes]
    return msgspec.structs.replace(plan, gflops=None, seconds=None, stage_seconds={}, notes=notes)


@pytest.mark.parametrize("name, sets, available", [
    ("default", (), AVAIL), ("xor-relu", (), AVAIL), ("deep-linear", (), AVAIL), ("underparam", (), AVAIL),
    ("collapse", (), AVAIL), ("digits", (), AVAIL), ("default", ("analysis.route=streamed",), AVAIL),
    ("default", ("model.hidden=[80, 70]",), AVAIL),  # N = 6531: auto gives lanczos
    ("digits", (), 350 * 2**20),  # 280 MiB usable: the dense Hessian (177 MiB) no longer fits beside G's SVD (113 MiB)
    ("default", ("data.n=4000",), 20 * 2**20),  # neither G nor its Gram fits: matrix-free, stages skipped
    ("default", ('data.kind="parity"', 'data.targets="labels"', 'train.loss="ce"', "data.dim=5", "data.n=20"), AVAIL),
    ("default", ('data.kind="sine"', 'data.targets="labels"', "data.dim=3", "data.duplicates=5"), AVAIL),
    ("default", ('data.kind="moons"', "data.dim=2", 'data.targets="labels"', 'train.loss="bce"', 'dtype="float32"',
                 'train.optimizer="sgd"'), AVAIL),
    ("digits", ('train.loss="mse"',), AVAIL),  # ten classes: d = 10 under mse too
    ("xor-relu", ('data.targets="random"', "data.out_dim=3", 'train.optimizer="lbfgs"'), AVAIL),
])
def test_the_setup_plan_equals_the_engines_plan(name, sets, available, monkeypatch):
    preset = load_preset(name, [*sets, "device=\"cpu\""])
    setup = planner.plan(preset, planner.sizes_from_preset(preset), available)
    engine = _engine_plan(preset, available, monkeypatch)
    assert setup.known and engine.gflops is not None
    assert _without_rate(engine) == _without_rate(setup)


ENGINE_CASES = [("xor-relu", []), ("deep-linear", []), ("underparam", ["analysis.route=streamed"])]
SLOW_ENGINE_CASES = [("digits", []), ("default", ["model.hidden=[80, 70]", "data.n=8", "analysis.layers=false"]),
                     ("default", ["analysis.route=streamed"]), ("default", ["analysis.route=matfree", "analysis.top_k=8"])]
DRIVER = """
import json, sys
from basintui.cli import main
for i, (name, sets) in enumerate(json.loads(sys.argv[1])):
    argv = ["run", name, "--device", "cpu", "--set", "train.steps=0", "--json", f"{sys.argv[2]}/{i}.json", "-q"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0, (name, sets)
"""


def _route_of(method: str) -> str:
    """The route a report's G method names (engine/routes/dispatch.py's `how`)."""
    for prefix, route in (("factored linear", "factored"), ("streamed over input", "streamed-inputs"),
                          ("streamed over", "streamed-params"), ("J and Jᵀ products", "matfree")):
        if method.startswith(prefix):
            return route
    return "explicit"


def _check_cli_reports(cases, tmp_path):
    """`basintui run PRESET --json` (one process for every case: torch is imported once); each report's
    route (G's method), Hessian mode, sizes and first note are what the planner says from the preset."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases), str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, (name, sets) in enumerate(cases):
        report = json.loads((tmp_path / f"{i}.json").read_text())
        preset = load_preset(name, [*sets, "train.steps=0", "device=\"cpu\""])
        plan = planner.plan_preset(preset, AVAIL)
        assert plan.peak_bytes < SAFETY * 2 * GiB  # the decision holds on any machine with 2 GiB free
        assert (report["model"]["n_params"], report["data"]["n_train"], report["data"]["out_dim"]) == (
            plan.n_params, plan.n_train, plan.out_dim), name
        assert report["G"]["route"] == plan.route, (name, sets)  # the typed route, and the words agree with it
        assert _route_of(report["G"]["method"]) == plan.route, (name, sets, report["G"]["method"])
        assert report["hessian"]["method"] == plan.hessian_mode, (name, sets)
        assert report["notes"][0].startswith(plan.notes[0]), (report["notes"][0], plan.notes[0])
        engine = msgspec.structs.replace(decode_plan(report["plan"]), available_bytes=AVAIL)
        assert _without_rate(engine) == _without_rate(plan)  # the report's plan: the same decision, same estimates


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_the_engine_takes_the_route_and_hessian_mode_the_planner_chose(tmp_path):
    _check_cli_reports(ENGINE_CASES, tmp_path)


@pytest.mark.slow
def test_the_engine_takes_the_planners_choice_on_digits_a_lanczos_hessian_and_the_forced_routes(tmp_path):
    _check_cli_reports(SLOW_ENGINE_CASES, tmp_path)
