"""Sessions end to end: data kinds, files, user models, training outcomes, cancel and divergence."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import make_preset, run_cli

from basintui.config import load_preset
from basintui.engine.cancel import CancelToken
from basintui.engine.errors import InputError
from basintui.engine.problem.data import make_inputs
from basintui.engine.session.report import load_json, write_json
from basintui.engine.session.run import run
from basintui.schema.events import Finished, RankProbe, Stage, TrainStep

OFF = {"hessian": "off", "layers": False}


@pytest.mark.parametrize("kind", ["gaussian", "xor", "moons", "circles", "parity", "sine", "digits"])
def test_data_kinds_are_deterministic_for_a_seed(kind):
    p = make_preset(data={"kind": kind, "n": 16})
    a, b = make_inputs(p.data, 3), make_inputs(p.data, 3)
    assert np.array_equal(a.x, b.x) and a.x.shape[0] == 16 and a.x.dtype == np.float64
    c = make_inputs(p.data, 4)
    assert kind == "xor" or not np.array_equal(a.x, c.x)


def test_gaussian_rank_and_parity_labels():
    p = make_preset(data={"kind": "gaussian", "n": 30, "dim": 9, "rank": 4})
    assert np.linalg.matrix_rank(make_inputs(p.data, 0).x) == 4
    p = make_preset(data={"kind": "parity", "n": 32, "dim": 5})
    inp = make_inputs(p.data, 0)
    assert len({tuple(r) for r in inp.x}) == 32  # distinct bit strings
    assert np.array_equal(inp.labels, ((inp.x > 0).sum(axis=1) % 2))


def test_npz_and_csv_files_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    y = (x[:, 0] > 0).astype(int)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.savetxt(tmp_path / "d.csv", np.hstack([x, y[:, None]]), delimiter=",", header="a,b,c,y", comments="")
    for name in ("d.npz", "d.csv"):
        (tmp_path / f"{name}.toml").write_text(textwrap.dedent(f"""
            [data]
            kind = "file"
            path = "{name}"
            targets = "labels"
            [model]
            hidden = [5]
            [train]
            loss = "bce"
            steps = 3
            [analysis]
            hessian = "off"
            layers = false
        """))
        report = run(load_preset(str(tmp_path / f"{name}.toml")))
        assert report.data.n_train == 12 and report.data.out_dim == 1 and report.data.in_dim == 3
        assert report.G.rank == 12


def test_file_with_mismatched_rows_is_an_input_error(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    (tmp_path / "p.toml").write_text('[data]\nkind = "file"\npath = "bad.npz"\n')
    with pytest.raises(InputError) as info:
        run(load_preset(str(tmp_path / "p.toml")))
    assert info.value.key == "data.path" and "4 rows" in str(info.value)


def test_user_factory_found_next_to_the_preset(tmp_path):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch
        def net(in_dim, out_dim):
            return torch.nn.Sequential(torch.nn.Linear(in_dim, 3), torch.nn.Tanh(), torch.nn.Linear(3, out_dim))
    """))
    (tmp_path / "p.toml").write_text(textwrap.dedent("""
        [data]
        n = 10
        dim = 4
        [model]
        kind = "python"
        factory = "mymodels:net"
        [train]
        steps = 2
        [analysis]
        hessian = "off"
        layers = false
    """))
    report = run(load_preset(str(tmp_path / "p.toml")))
    assert report.model.n_params == 4 * 3 + 3 + 3 + 1
    assert report.G.rank == 10 and report.G_route == "linear"


def test_missing_factory_function_exits_2(tmp_path):
    (tmp_path / "mymodels.py").write_text("x = 1\n")
    (tmp_path / "p.toml").write_text('[model]\nkind = "python"\nfactory = "mymodels:net"\n')
    proc = run_cli("run", str(tmp_path / "p.toml"))
    assert proc.returncode == 2 and "model.factory" in proc.stderr and "no function 'net'" in proc.stderr


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.01), ("sgd", 0.05), ("lbfgs", 0.5)])
def test_optimizers_reduce_the_loss(optimizer, lr):
    p = make_preset(data={"n": 16, "dim": 3}, model={"hidden": [8], "activation": "tanh"},
                    train={"optimizer": optimizer, "lr": lr, "steps": 60}, analysis=OFF)
    report = run(p)
    losses = report.training.losses
    assert len(losses) == 60 and report.training.status == "max_steps"
    assert losses[-1] < 0.5 * losses[0]


def test_minibatches_and_early_stop():
    p = make_preset(data={"n": 32, "dim": 3}, model={"hidden": [32], "activation": "tanh"},
                    train={"steps": 5000, "batch_size": 8, "lr": 0.01, "target_loss": 0.05}, analysis=OFF)
    report = run(p)
    assert report.training.status == "converged" and report.training.steps < 5000
    assert report.training.final_loss < 0.05


def test_divergence_keeps_the_last_finite_parameters_and_still_analyses():
    p = make_preset(data={"n": 16, "dim": 3}, model={"hidden": [8]},
                    train={"optimizer": "sgd", "lr": 1000.0, "steps": 500}, analysis=OFF)
    events = []
    report = run(p, events.append)
    assert report.training.status == "diverged"
    assert "finite" in report.training.message
    assert np.isfinite(report.training.final_loss) and np.isfinite(report.theta).all()
    assert report.G is not None and report.G.rank >= 1
    assert any("diverged" in n or "loss became" in n for n in report.notes)


def test_cancel_from_an_event_stops_training_and_keeps_the_history(tmp_path):
    p = make_preset(data={"n": 16, "dim": 3}, model={"hidden": [8]}, train={"steps": 10_000_000},
                    analysis={**OFF, "rank_every": -1})
    token = CancelToken()
    seen = []

    def on_event(e):
        seen.append(e)
        if isinstance(e, TrainStep) and e.step > 50:
            token.cancel()

    report = run(p, on_event, token)
    assert report.training.status == "cancelled"
    assert report.training.steps > 50 and len(report.training.losses) == report.training.steps
    assert report.G is None
    assert isinstance(seen[-1], Finished)
    write_json(report, tmp_path / "c.json")
    assert load_json(tmp_path / "c.json")["training"]["status"] == "cancelled"


def test_events_arrive_in_order_with_rank_probes():
    p = make_preset(data={"n": 12, "dim": 3}, model={"hidden": [6]}, train={"steps": 40},
                    analysis={**OFF, "rank_every": 10})
    events = []
    report = run(p, events.append)
    probes = [e for e in events if isinstance(e, RankProbe)]
    assert [e.step for e in probes] == [0, 10, 20, 30]
    assert all(0 <= e.rank <= 12 for e in probes) and report.training.rank_history == probes
    names = [e.name for e in events if isinstance(e, Stage) and e.done]
    assert names[:4] == ["data", "train", "jacobian", "spectrum"]


def test_report_json_is_valid_and_atomic(tmp_path):
    p = make_preset(data={"n": 8, "dim": 2}, model={"hidden": [3]}, train={"steps": 3}, analysis=OFF)
    report = run(p)
    path = write_json(report, tmp_path / "sub" / "r.json")
    data = json.loads(path.read_text())
    assert data["G"]["rank"] == report.G.rank
    assert data["config"]["data"]["n"] == 8
    assert [f.name for f in (tmp_path / "sub").iterdir()] == ["r.json"]  # no temporary file left


def test_probabilities_output_for_ce_loses_one_direction_per_input():
    base = dict(data={"n": 6, "dim": 4, "out_dim": 3, "targets": "random"},
                model={"hidden": [20], "activation": "tanh"}, train={"loss": "ce", "steps": 0})
    logits = run(make_preset(**base, analysis=OFF))
    probs = run(make_preset(**base, analysis={**OFF, "ce_output": "probabilities"}))
    assert logits.G_on == "logits" and probs.G_on == "probabilities"
    assert logits.G.rank == 18
    assert probs.G.rank == 6 * (3 - 1)  # softmax outputs sum to one on every input


def test_partial_reports_carry_the_spectrum_before_the_later_stages_run():
    from basintui.schema.events import Partial

    p = make_preset(data={"n": 10, "dim": 3}, model={"hidden": [5]}, train={"steps": 3},
                    analysis={"hessian": "dense", "layers": True})
    events = []
    report = run(p, events.append)
    order = [(type(e).__name__, getattr(e, "name", getattr(e, "stage", ""))) for e in events
             if isinstance(e, (Partial, Stage)) and (not isinstance(e, Stage) or not e.done)]
    assert order.index(("Partial", "spectrum")) < order.index(("Stage", "hessian"))
    first = next(e for e in events if isinstance(e, Partial))
    assert first.report.G.rank == report.G.rank and first.report.hessian is None
    last = [e for e in events if isinstance(e, Partial)][-1]
    assert last.report.layers is not None and last.report.hessian is not None


@pytest.mark.parametrize("targets", ["random", "teacher"])
def test_ce_with_one_output_is_refused_before_anything_is_made(targets):
    p = make_preset(data={"n": 8, "dim": 3, "out_dim": 1, "targets": targets}, train={"loss": "ce", "steps": 1})
    with pytest.raises(InputError) as info:
        run(p)
    assert info.value.key == "data.out_dim" and "at least 2 outputs" in str(info.value)
