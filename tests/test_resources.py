"""The memory guard: estimates made before allocating, a reroute where a cheaper route fits, a refusal
with the estimate and the way out where none does."""

from __future__ import annotations

import torch

from basintui.engine import resources
from conftest import make_preset, run_cli


def test_G_that_cannot_fit_is_refused_with_the_estimate_before_anything_is_computed():
    # N ≈ 9e4 parameters, kd = 2e5 outputs: the forward pass fits, G (~150 GB) does not.
    proc = run_cli("run", "default", "--set", "model.hidden=[300, 300]", "--set", "data.n=200000",
                   "--set", "data.dim=2", "--set", "train.steps=0", timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "data.n: G is" in proc.stderr and "available" in proc.stderr and "GiB" in proc.stderr
    assert "Traceback" not in proc.stderr


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
    explicit = resources.plan(p, N, k, 1, cpu, factored=False)
    factored = resources.plan(p, N, k, 1, cpu, factored=True, width_sum=2 * 1700 + 10)
    assert explicit.peak_bytes > avail and factored.peak_bytes < 0.8 * avail
    assert factored.g_method == "factored" and any("factored Gram" in n for n in factored.notes)
    resources.guard(factored)  # does not raise
    try:
        resources.guard(explicit)
    except resources.ResourceError as exc:
        assert exc.estimate_bytes == explicit.peak_bytes
    else:  # pragma: no cover
        raise AssertionError("the explicit route should have been refused")


def test_stage_that_needs_G_after_the_factored_spectrum_is_refused_and_the_spectrum_kept(monkeypatch):
    from basintui.engine import session

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

    monkeypatch.setattr(session, "analysis_stages", lambda preset: [("levelset", needs_G)])
    report = session.run(p)
    assert report.G is not None and report.G.rank == 16 and report.G_route == "factored linear"
    assert report.error["kind"] == "input" and "G (" in report.error["message"]
    assert report.levelset is None
