"""Snapshots of every pane at 120×40 and 80×24, from a deterministic fake session (no torch).

The fake is injected through the bridge (`BasinApp(preset, session=fake_session)`): it emits canned
engine events and returns a canned report whose `to_dict()` has the DESIGN §5 keys. Regenerate with
`pytest tests/test_tui_snapshots.py --snapshot-update` after a deliberate change of the app's look.
"""

from __future__ import annotations

import math

import pytest
from conftest import make_preset
from textual.widgets import TabbedContent

from basintui.engine.events import Note, Plan, RankProbe, Stage, TrainStep
from basintui.tui.app import BasinApp

N, K, D = 65, 24, 1
STEPS = 300
SIGMAS = [10.0 * 0.8**j for j in range(18)] + [3e-14 * 0.7**j for j in range(6)]  # rank 18 of kd = 24


def _report() -> dict:
    tol = SIGMAS[0] * max(N, K * D) * 2.220446049250313e-16
    losses = [0.5 * math.exp(-s / 40) + 1e-6 for s in range(STEPS)]
    layers = [
        {"index": 1, "name": "1: Linear(4→2) + ReLU", "n_params": 10, "classes": 9, "largest_class": 8,
         "bits_lost": 2.1, "bits_lost_here": 2.1, "activation_rank": 3, "rank_drop": 2, "dead_units": 0,
         "zero_fraction": 0.41, "params_upstream": 10, "dependence_bound": 11, "dependence_guaranteed": False,
         "block_rank": 6, "cumulative_rank": 6, "position": 1},
        {"index": 2, "name": "2: Linear(2→8) + ReLU", "n_params": 24, "classes": 9, "largest_class": 8,
         "bits_lost": 2.1, "bits_lost_here": 0.0, "activation_rank": 3, "rank_drop": 0, "dead_units": 3,
         "zero_fraction": 0.62, "params_upstream": 34, "dependence_bound": 35, "dependence_guaranteed": False,
         "block_rank": 14, "cumulative_rank": 16, "position": 2},
        {"index": 3, "name": "3: Linear(8→3)", "n_params": 27, "classes": 9, "largest_class": 8,
         "bits_lost": 2.1, "bits_lost_here": 0.0, "activation_rank": 3, "rank_drop": 0, "dead_units": 0,
         "zero_fraction": 0.0, "params_upstream": 61, "dependence_bound": 62, "dependence_guaranteed": False,
         "block_rank": 18, "cumulative_rank": 18, "position": 3},
    ]
    return {
        "schema": "basintui.report/1",
        "config": {"name": "snapshot", "analysis": {"hessian": "dense", "layers": True, "levelset": True}},
        "device": "cpu",
        "model": {"n_params": N},
        "data": {"n_train": K, "out_dim": D},
        "training": {"final_loss": losses[-1], "steps": STEPS, "status": "max_steps", "message": "",
                     "reduction": "mean", "seconds": 1.5, "losses": losses,
                     "rank_history": [{"step": s, "rank": min(24, 10 + s // 30), "sigma_max": 10.0 - s / 100,
                                       "sigma_min": 10.0 ** (-1 - s / 60), "tolerance": tol}
                                      for s in range(0, STEPS, 30)]},
        "G": {"singular_values": SIGMAS, "tolerance": tol, "tolerance_rule": "σ₁ · max(N, kd) · ε", "rank": 18,
              "rank_at_rtol": {"1e-3": 18, "1e-6": 18, "1e-9": 18},
              "largest_gap": {"decades": 13.7, "after": 18, "above": SIGMAS[17], "below": SIGMAS[18]},
              "effective_rank": 9.87, "regime": "over", "submersion": False, "kernel_dim": N - 18,
              "generic_dim": N - K * D, "rank_deficiency": 6, "n_params": N, "n_outputs": K * D,
              "method": "factored gram-eigh", "on": "outputs", "near_threshold": 0,
              "rank_rule": {"rule": "σ₁ · max(N, kd) · ε", "rtol": 0.0, "scale": SIGMAS[0], "threshold": tol,
                            "near_factor": 2.0},
              "meaning": ["rank(G) = 18 of at most min(N, kd) = 24.",
                          "Rank-deficient by 6: the behavioural gradients are linearly dependent."]},
        "hessian": {"rank": 40, "rank_ggn": 18, "rank_residual": 38, "method": "dense",
                    "eigenvalues": [50.0 * 0.7**j for j in range(40)] + [0.0] * 20 + [-0.01 * j for j in range(5)],
                    "ggn_eigenvalues": [40.0 * 0.6**j for j in range(18)] + [0.0] * 47,
                    "grad_norm": 0.031, "output_residual_norm": 0.12, "residual_rel": 0.04,
                    "loss_hessian": "identity",
                    "hypotheses": {"critical_point": {"holds": False, "value": 0.031, "threshold": 1e-6,
                                                      "rule": "‖∇θL‖ ≤ 1e-8 · σ₁(G) · S"},
                                   "zero_residual": {"holds": False, "value": 0.12, "threshold": 8e-8,
                                                     "rule": "‖∇_Fℓ‖ ≤ 1e-8 · S"}},
                    "claim3": {"verdict": "holds_up_to_residual",
                               "why": "Claim 3's exact hypotheses fail only because θ is not exactly a zero-residual "
                                      "critical point. It holds up to the residual: 18 of H's eigenvalues lie "
                                      "outside [−b, b], b = ‖R‖₂ = 0.02, and 18 of GGN's lie above 2b."},
                    "weyl": {"residual_norm": 0.02, "band": 0.02, "band_widened": False, "resolution": 4e-11,
                             "outside_band": 18, "outside_band_exact": True, "above_band": 18, "below_band": 0,
                             "ggn_above_2r": 18, "rank_ggn": 18, "hidden_by_residual": 0, "agrees": True,
                             "n_eigenvalues_H": 65, "n_eigenvalues_H_total": 65, "n_eigenvalues_GGN": 65,
                             "residual_norm_from": "eigvalsh of the dense H − GGN",
                             "statement": "With b = ‖R‖₂ = 0.02: 18 of H's eigenvalues lie outside [−b, b] "
                                          "(Weyl allows at most rank(GGN) = 18), and 18 of GGN's lie above 2b."},
                    "rank_rule": {"statement": "One rule decides every rank (σ ↔ λ = q·σ²).",
                                  "G": {"rule": "σ₁ · max(N, kd) · ε", "rtol": 0.0, "scale": SIGMAS[0],
                                        "threshold": tol, "near_factor": 2.0, "near": 0, "rank": 18},
                                  "GGN": {"rule": "σ₁ · max(N, kd) · ε", "rtol": 0.0, "scale": SIGMAS[0] * 2**0.5,
                                          "threshold": tol * 2**0.5, "near_factor": 2.0, "near": 0, "rank": 18},
                                  "H": {"threshold": 2 * SIGMAS[0] ** 2 * N * 2.220446049250313e-16,
                                        "floor_applied": True, "governed_by": "resolution floor"}}},
        "layers": layers,
        "dependent_inputs": {"groups": [
            {"kind": "identical", "indices": [2, 5, 11, 17], "coefficients": [[1, -1, 0, 0], [1, 0, -1, 0]],
             "dimension": 3, "collided_at": 1, "collided_in": layers[0]["name"],
             "description": "identical behavioural gradients"},
            {"kind": "combination", "indices": [0, 3, 7], "coefficients": [[0.5, -1.0, 0.5]], "dimension": 1,
             "collided_at": None, "collided_in": None, "description": "1 linear relation among 3 inputs"}],
            "null_dim": 6},
        "levelset": {"locally_constant_rank": True, "estimated_dim": 47, "kernel_dim": N - 18,
                     "generic_dim": N - K * D, "walk": {"directions": 16, "converged": 16},
                     "manifold": True, "radius_dependent": False,
                     "manifold_why": "every branch has dimension 47 and their tangent spaces agree within 11.5°",
                     "by_radius": [{"radius": r, "points": 8, "converged": 8, "returned": 0, "branch_dims": {"47": 8},
                                    "unresolved_points": 0, "kinked_points": 0, "max_angle_deg": a,
                                    "spread_deg": a, "dimension": 47, "manifold": True, "why": "tangent spaces agree"}
                                   for r, a in ((1e-4, 0.04), (1e-3, 0.4), (1e-2, 4.1))]},
        "timings": {"data": 0.01, "train": 1.5, "jacobian": 0.02, "spectrum": 0.01, "hessian": 0.2,
                    "layers": 0.05, "levelset": 0.4, "total": 2.19},
        "notes": ["hessian = auto: dense"],
        "error": None,
    }


class FakeReport:
    def to_dict(self) -> dict:
        return _report()


def fake_session(preset, on_event, cancel):
    """A deterministic stand-in for engine.session.run: canned events, a canned report."""
    on_event(Stage("data"))
    on_event(Stage("data", done=True, seconds=0.01, detail="24 Gaussian inputs in R^4"))
    on_event(Plan(N, K, D, 8 * N * K * D, "auto", "dense", 32 * N * N))
    on_event(Note("hessian = auto: dense"))
    on_event(Stage("train", detail=f"{STEPS} steps of adam"))
    report = _report()
    for p in report["training"]["rank_history"]:
        on_event(RankProbe(p["step"], p["rank"], p["sigma_max"], p["sigma_min"], p["tolerance"]))
    for s in range(1, STEPS + 1):
        cancel.check()
        on_event(TrainStep(s, STEPS, report["training"]["losses"][s - 1], s * 0.005))
    on_event(Stage("train", done=True, seconds=1.5, detail="max_steps"))
    for name, secs in (("jacobian", 0.02), ("spectrum", 0.01), ("hessian", 0.2), ("layers", 0.05),
                       ("levelset", 0.4)):
        on_event(Stage(name))
        on_event(Stage(name, done=True, seconds=secs))
    return FakeReport()


def make_app() -> BasinApp:
    return BasinApp(make_preset(data={"n": 24, "dim": 4}, model={"hidden": [2, 8]}, train={"steps": STEPS}),
                    session=fake_session)


def run_then_show(tab: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        if tab != "setup":
            await pilot.press("r")
            for _ in range(600):
                if app.report is not None:
                    break
                await pilot.pause(0.05)
            assert app.report is not None, "the fake run did not finish"
            await app.workers.wait_for_complete()
        await pilot.press(str(["setup", "training", "spectrum", "layers", "hessian", "levelset"].index(tab) + 1))
        tabs = app.query_one(TabbedContent)
        for _ in range(100):
            if tabs.active == tab:
                break
            await pilot.pause(0.05)
        assert tabs.active == tab
        app.clear_notifications()
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
@pytest.mark.parametrize("tab", ["setup", "training", "spectrum", "layers", "hessian", "levelset"])
def test_pane_snapshot(snap_compare, tab, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=run_then_show(tab))
