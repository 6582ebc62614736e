"""The memory guard: estimates made before allocating, a reroute where a cheaper route fits, a refusal
with the estimate and the way out where none does."""

from __future__ import annotations

import importlib

import torch
from conftest import make_preset, run_cli

from basintui.engine import memory as resources
from basintui.limits import SAFETY, spectrum_peak_bytes


def test_a_job_whose_G_and_Gram_cannot_fit_is_rerouted_to_the_matrix_free_top_of_the_spectrum():
    # N ≈ 9e4 parameters, kd = 2e5 outputs: G (~150 GB) and its 9e4² Gram (~240 GB) do not fit.
    p = make_preset(model={"hidden": [300, 300]}, data={"n": 200_000, "dim": 2})
    plan = resources.plan(p, 91_201, 200_000, 1, torch.device("cpu"), linear_ok=True, width_sum=1204,
                          forward_bytes=3 * 8 * 200_000 * 602)
    assert plan.route == "matfree" and not plan.g_fits
    assert any("matrix-free svds finds the top 32" in n for n in plan.notes)
    assert any("analysis.hessian, analysis.layers" in n and "skipped" in n for n in plan.notes)
    resources.guard(plan)  # does not raise


def test_a_job_that_no_route_fits_is_refused_with_every_estimate(monkeypatch):
    monkeypatch.setattr(resources, "available_bytes", lambda device: 4 * 2**30)  # the forward pass fits, no route does
    p = make_preset(model={"hidden": [300, 300]}, data={"n": 200_000, "dim": 2})
    plan = resources.plan(p, 91_201, 200_000, 1, torch.device("cpu"), linear_ok=True, width_sum=1204,
                          forward_bytes=3 * 8 * 200_000 * 602)
    assert plan.route == "none"
    try:
        resources.guard(plan)
    except resources.ResourceError as exc:
        msg = str(exc)
        assert exc.key == "data.n" and "its Gram" in msg and "matrix-free route" in msg and "usable" in msg
    else:  # pragma: no cover
        raise AssertionError("no route fits in 4 GiB: the guard must refuse")


def test_a_forced_route_that_does_not_apply_names_the_key():
    p = make_preset(analysis={"route": "matfree", "top_k": 500})
    plan = resources.plan(p, 1000, 64, 1, torch.device("cpu"), linear_ok=True, width_sum=40)
    try:
        resources.guard(plan)
    except resources.ResourceError as exc:
        assert exc.key == "analysis.top_k" and "below min(N, kd) = 64" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("top_k ≥ min(N, kd) must be refused")


def test_a_forward_pass_that_cannot_fit_is_refused_before_the_targets_are_made():
    proc = run_cli("run", "default", "--set", "model.hidden=[2000, 2000]", "--set", "data.n=1000000",
                   "--set", "data.dim=2", "--set", "train.steps=0", timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "forward and backward pass" in proc.stderr and "data.n" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_factored_route_reroutes_a_job_whose_G_would_not_fit():
    p = make_preset(analysis={"hessian": "off"})
    cpu = torch.device("cpu")
    avail = resources.available_bytes(cpu)
    N, k = 3_000_000, 4096  # G would be 98 GB
    factored = resources.plan(p, N, k, 1, cpu, linear_ok=True, width_sum=2 * 1700 + 10)
    assert spectrum_peak_bytes(N, k, False) > avail and factored.peak_bytes < 0.8 * avail
    assert factored.route == "factored" and any("factored per-layer Gram" in n for n in factored.notes)
    resources.guard(factored)  # does not raise
    # the same job in a model that is not a network of Linear layers streams its Gram instead
    streamed = resources.plan(p, N, k, 1, cpu, linear_ok=False)
    assert streamed.route == "streamed-params" and any("summed over parameter chunks" in n for n in streamed.notes)
    forced = resources.plan(make_preset(analysis={"hessian": "off", "route": "explicit"}), N, k, 1, cpu)
    try:
        resources.guard(forced)
    except resources.ResourceError as exc:
        assert exc.key == "analysis.route" and exc.estimate_bytes == spectrum_peak_bytes(N, k, False)
    else:  # pragma: no cover
        raise AssertionError("the explicit route should have been refused")


def test_stage_that_needs_G_after_the_factored_spectrum_is_refused_and_the_spectrum_kept(monkeypatch):
    session = importlib.import_module("basintui.engine.session.run")  # the module (the package exports run())
    p = make_preset(data={"n": 16, "dim": 6}, model={"hidden": [32, 32]}, train={"steps": 0},
                    analysis={"hessian": "off", "layers": False})
    real = resources.available_bytes
    calls = {"n": 0}

    def tight(device):  # plenty for the plan, nothing left when G is to be formed
        calls["n"] += 1
        return real(device) if calls["n"] == 1 else 1024

    monkeypatch.setattr(resources, "available_bytes", tight)

    def needs_G(ctx, report):
        return {"frobenius": float(ctx.G.norm())}

    monkeypatch.setattr(session, "analysis_stages", lambda preset, *mode: [("levelset", needs_G)])
    report = session.run(p)
    assert report.G is not None and report.G.rank == 16 and report.G_route == "factored linear"
    assert report.error["kind"] == "input" and "G (" in report.error["message"]
    assert report.levelset is None


def test_stages_that_need_a_G_that_cannot_fit_are_skipped_with_the_reason_and_the_spectrum_kept(monkeypatch):
    session = importlib.import_module("basintui.engine.session.run")  # the module (the package exports run())
    from basintui.render.summary import why_missing

    p = make_preset(data={"n": 64, "dim": 6}, model={"hidden": [64, 64]}, train={"steps": 0},
                    analysis={"hessian": "dense", "layers": True})
    N, kd = 64 * 6 + 64 + 64 * 64 + 64 + 65, 64
    g2 = 2 * 8 * N * kd  # G and its copy: the route planner's test for "G fits"
    monkeypatch.setattr(resources, "available_bytes", lambda device: int(g2 / SAFETY) - 1)
    report = session.run(p)
    d = report.to_dict()
    assert report.G.rank == 64 and d["G"]["route"] == "factored" and d["G"]["method"].startswith("factored linear")
    assert d["hessian"] is None and d["layers"] is None
    # the kernel split (analysis.symmetry, on by default) needs G too; soft needs only the spectrum and runs
    assert set(d["skipped"]) == {"hessian", "layers", "symmetry"} and "does not fit" in d["skipped"]["hessian"]
    assert d["soft"] is not None
    assert any(n.startswith("layers: skipped") for n in d["notes"])
    assert why_missing(report.to_schema(), "hessian", "The Hessian", None, "Hessian").startswith(
        "The Hessian was not computed: skipped, because it needs G")
