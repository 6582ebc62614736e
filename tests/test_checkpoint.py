"""Checkpoints (issue 16, item 1): a saved state_dict loaded into the preset's model before training, with
train.steps = 0 analysed as saved; bad files refused before any training; tuple and dict outputs."""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from basintui.config import PresetError, load_preset
from basintui.engine.errors import InputError
from basintui.engine.session.run import run
from basintui.schema.report import decode_report
from conftest import make_preset, run_cli

MODEL_PY = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, in_dim, out_dim):
            super().__init__()
            self.encoder = nn.Linear(in_dim, 6)
            self.head = nn.Linear(6, out_dim)

        def forward(self, x):
            return self.head(torch.tanh(self.encoder(x))) + 0.5 * x[:, :1]

    class Pair(Net):
        def forward(self, x):
            return (super().forward(x), x.sum())

    class Later(Net):
        def forward(self, x):
            return ["the output", super().forward(x)]

    class Named(Net):
        def forward(self, x):
            return {"hidden": self.encoder(x), "output": super().forward(x)}

    class NoTensor(Net):
        def forward(self, x):
            return (1, "two")

    class Tied(nn.Module):
        def __init__(self, in_dim, out_dim):
            super().__init__()
            self.a = nn.Linear(in_dim, in_dim, bias=False)
            self.b = nn.Linear(in_dim, in_dim, bias=False)
            self.b.weight = self.a.weight  # one parameter, two names in the state_dict
            self.out = nn.Linear(in_dim, out_dim)

        def forward(self, x):
            return self.out(self.b(torch.tanh(self.a(x))))

    def net(in_dim, out_dim):
        return Net(in_dim, out_dim)

    def tied(in_dim, out_dim):
        return Tied(in_dim, out_dim)

    def pair(in_dim, out_dim):
        return Pair(in_dim, out_dim)

    def later(in_dim, out_dim):
        return Later(in_dim, out_dim)

    def named(in_dim, out_dim):
        return Named(in_dim, out_dim)

    def no_tensor(in_dim, out_dim):
        return NoTensor(in_dim, out_dim)
""")
DATA = {"n": 5, "dim": 3}
QUICK = {"hessian": "off", "layers": False, "rank_every": -1}


def _user_folder(tmp_path: Path) -> Path:
    (tmp_path / "model.py").write_text(MODEL_PY)
    return tmp_path


def _net(seed: int = 3) -> nn.Module:
    """The same architecture as model.py's Net, trained a few steps (a network that is not at its init)."""
    ns: dict = {}
    exec(MODEL_PY, ns)  # noqa: S102 - the test's own source
    torch.manual_seed(seed)
    m = ns["Net"](3, 1).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        ((m(x) - y) ** 2).mean().backward()
        opt.step()
    return m


def _preset(folder: Path, ckpt: str, factory: str = "model:net", **analysis):
    return make_preset(data=DATA, model={"kind": "python", "factory": factory, "checkpoint": ckpt},
                       train={"steps": 0}, analysis={**QUICK, **analysis}, source_dir=folder)


def _reference_rank(model: nn.Module, x: torch.Tensor) -> int:
    """rank(G) of a model at its parameters, by torch.func: G = ∂f(θ, x)/∂θ (N × k·d), numpy's rank rule."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p):
        return torch.func.functional_call(model, p, (x,)).reshape(-1)

    jac = torch.func.jacrev(f)(params)
    G = torch.cat([jac[k].reshape(jac[k].shape[0], -1) for k in params], dim=1).T.numpy()
    return int(np.linalg.matrix_rank(G))


def _inputs(folder: Path) -> torch.Tensor:
    """The inputs the preset's run uses (its data section and seed), as the engine makes them."""
    from basintui.engine.problem.data import make_inputs

    p = _preset(folder, "")
    return torch.as_tensor(make_inputs(p.data, p.seed, p.source_dir).x, dtype=torch.float64)


def _flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def _save(tensors: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save(tensors, path)
    return path


# --------------------------------------------------------------------------- the round trip


@pytest.mark.parametrize("name", ["w.pt", "w.pth", "w.safetensors"])
def test_a_saved_state_dict_is_analysed_as_saved(tmp_path, name):
    folder = _user_folder(tmp_path)
    m = _net()
    path = _save(m.state_dict(), folder / name)
    report = run(_preset(folder, name))
    r = report.to_dict()
    assert r["error"] is None and r["training"]["steps"] == 0
    assert np.array_equal(report.theta, _flat(m))  # bit for bit
    assert r["G"]["rank"] == _reference_rank(m, _inputs(folder)) == 5
    assert r["model"]["checkpoint"] == name and r["model"]["checkpoint_path"] == str(path.resolve())
    assert r["model"]["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert any(n.startswith(f"loaded checkpoint {name}") for n in r["notes"])
    back = decode_report(json.dumps(r).encode())
    assert back.model.checkpoint_sha256 == r["model"]["checkpoint_sha256"]


def test_a_degenerate_checkpoint_gives_the_hand_computed_rank(tmp_path):
    """encoder = 0: each input's gradient is (a ⊗ x_i, a, 0, 1) with a the head's weights, so rank(G) is the rank
    of the 5 vectors (x_i, 1) in R^4, which is 4, not the generic min(N, k·d) = 5."""
    folder = _user_folder(tmp_path)
    m = _net()
    with torch.no_grad():
        m.encoder.weight.zero_()
        m.encoder.bias.zero_()
    _save(m.state_dict(), folder / "dead.pt")
    r = run(_preset(folder, "dead.pt")).to_dict()
    assert r["G"]["rank"] == 4 == _reference_rank(m, _inputs(folder))


def test_a_training_checkpoint_uses_its_state_dict_entry_and_says_so(tmp_path):
    folder = _user_folder(tmp_path)
    m = _net()
    torch.save({"epoch": 7, "state_dict": m.state_dict(), "lr": 0.1}, folder / "train.pt")
    report = run(_preset(folder, "train.pt"))
    assert np.array_equal(report.theta, _flat(m))
    assert any("its 'state_dict' entry" in n for n in report.to_dict()["notes"])


def test_a_float32_checkpoint_is_cast_to_float64_exactly(tmp_path):
    folder = _user_folder(tmp_path)
    m = _net().float()
    _save(m.state_dict(), folder / "w32.safetensors")
    report = run(_preset(folder, "w32.safetensors"))
    assert report.theta.dtype == np.float64 and np.array_equal(report.theta, _flat(m).astype(np.float64))


def test_the_built_in_mlp_loads_its_own_state_dict_and_training_starts_from_it(tmp_path):
    from basintui.engine.problem.models import build_mlp

    torch.manual_seed(11)
    m = build_mlp(3, (4,), 1, "tanh", True).double()
    torch.save(m.state_dict(), tmp_path / "mlp.pt")
    model = {"hidden": [4], "activation": "tanh", "checkpoint": "mlp.pt"}
    at_rest = run(make_preset(data=DATA, model=model, train={"steps": 0}, analysis=QUICK, source_dir=tmp_path))
    assert np.array_equal(at_rest.theta, _flat(m))
    trained = run(make_preset(data=DATA, model=model, train={"steps": 3, "optimizer": "sgd", "lr": 0.01},
                              analysis=QUICK, source_dir=tmp_path))
    fresh = run(make_preset(data=DATA, model={"hidden": [4], "activation": "tanh"},
                            train={"steps": 3, "optimizer": "sgd", "lr": 0.01}, analysis=QUICK))
    moved = np.abs(trained.theta - _flat(m)).max()
    assert 0 < moved < 0.1 * np.abs(fresh.theta - _flat(m)).max()  # three small steps from the checkpoint


# --------------------------------------------------------------------------- bad files: exit 2, no training


@pytest.fixture
def no_training(monkeypatch):
    calls = []
    run_mod = importlib.import_module("basintui.engine.session.run")  # the module (the package exports run())
    monkeypatch.setattr(run_mod, "train", lambda *a, **k: calls.append(1) or pytest.fail("training started"))
    return calls


def _refused(preset) -> str:
    with pytest.raises(InputError) as info:
        run(preset)
    msg = str(info.value)
    assert info.value.key == "model.checkpoint" and "\n" not in msg, msg
    return msg


def test_another_architecture_is_refused_with_every_mismatch_in_one_message(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    sd = dict(_net().state_dict())
    sd["encoder.weight"] = torch.zeros(7, 3, dtype=torch.float64)  # shape
    del sd["head.bias"]  # missing
    sd["decoder.weight"] = torch.zeros(2, 2, dtype=torch.float64)  # unexpected
    torch.save(sd, folder / "other.pt")
    msg = _refused(_preset(folder, "other.pt"))
    assert "missing keys (1): head.bias" in msg
    assert "unexpected keys (1): decoder.weight" in msg
    assert "encoder.weight [7, 3] in the file, [6, 3] in the model" in msg


@pytest.mark.parametrize("name", ["cut.pt", "cut.safetensors"])
def test_a_truncated_file_is_refused(tmp_path, no_training, name):
    folder = _user_folder(tmp_path)
    whole = _save(_net().state_dict(), folder / ("whole" + Path(name).suffix)).read_bytes()
    (folder / name).write_bytes(whole[: len(whole) // 2])
    msg = _refused(_preset(folder, name))
    assert "truncated or corrupt" in msg


def test_an_empty_file_is_refused(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    (folder / "empty.pth").write_bytes(b"")
    assert "is empty" in _refused(_preset(folder, "empty.pth"))


def test_a_pickled_model_is_never_unpickled(tmp_path, no_training, monkeypatch):
    folder = _user_folder(tmp_path)
    torch.save(nn.Linear(3, 1), folder / "whole_model.pt")  # the module object, not its state_dict
    pickle.dump({"a": 1}, (folder / "plain.pt").open("wb"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    msg = _refused(_preset(folder, "whole_model.pt"))
    assert "pickle of Python objects (torch.nn.modules.linear.Linear)" in msg and "model.state_dict()" in msg
    assert "plain pickle" in _refused(_preset(folder, "plain.pt"))


def test_a_dict_that_is_not_a_state_dict_is_refused(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    torch.save({"epoch": 3, "weights": [1.0, 2.0]}, folder / "meta.pt")
    msg = _refused(_preset(folder, "meta.pt"))
    assert "'epoch' (int)" in msg and "'state_dict' or 'model' entry" in msg


def test_non_finite_values_are_refused(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    sd = dict(_net().state_dict())
    sd["head.weight"] = sd["head.weight"].clone()
    sd["head.weight"][0, 0] = float("nan")
    torch.save(sd, folder / "nan.pt")
    assert "non-finite values in (1): head.weight" in _refused(_preset(folder, "nan.pt"))


def test_an_integer_tensor_for_a_floating_parameter_is_refused(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    sd = dict(_net().state_dict())
    sd["head.bias"] = torch.ones(1, dtype=torch.int64)
    torch.save(sd, folder / "ints.pt")
    assert "dtype mismatches (1): head.bias (torch.int64 in the file, torch.float64 in the model)" in \
        _refused(_preset(folder, "ints.pt"))


def _tied(folder: Path) -> nn.Module:
    ns: dict = {}
    exec(MODEL_PY, ns)  # noqa: S102 - the test's own source
    torch.manual_seed(5)
    m = ns["Tied"](3, 1).double()
    torch.save(m.state_dict(), folder / "tied.pt")
    return m


def test_tied_weights_that_differ_in_the_file_are_refused(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    sd = dict(_tied(folder).state_dict())
    sd["b.weight"] = sd["b.weight"] + 1.0
    torch.save(sd, folder / "untied.pt")
    assert "tied entries (one tensor in the model) with different values in the file (1): a.weight = b.weight" in \
        _refused(_preset(folder, "untied.pt", factory="model:tied"))


def test_tied_weights_that_agree_load(tmp_path):
    folder = _user_folder(tmp_path)
    m = _tied(folder)
    assert np.array_equal(run(_preset(folder, "tied.pt", factory="model:tied")).theta, _flat(m))


@pytest.mark.parametrize("name,allowed", [("nowhere.pt", "an existing file"), ("w.ckpt", "ending in .pt, .pth")])
def test_a_missing_file_or_a_wrong_suffix_is_refused_by_the_preset(tmp_path, name, allowed):
    folder = _user_folder(tmp_path)
    (folder / "w.ckpt").write_bytes(b"x")
    with pytest.raises(PresetError) as info:
        _preset(folder, name)
    assert info.value.key == "model.checkpoint" and allowed in str(info.value) and name in str(info.value)


# --------------------------------------------------------------------------- tuple and dict outputs


@pytest.mark.parametrize("factory,said", [
    ("model:pair", "returns a tuple of 2 items; basintui uses its first item"),
    ("model:later", "returns a list of 2 items; basintui uses item 1, its first tensor"),
    ("model:named", "returns a dict ('hidden', 'output'); basintui uses its 'output' entry"),
])
def test_tuple_and_dict_outputs_use_the_stated_tensor(tmp_path, factory, said):
    folder = _user_folder(tmp_path)
    m = _net()
    torch.save(m.state_dict(), folder / "w.pt")
    report = run(_preset(folder, "w.pt", factory=factory, layers=True))
    r = report.to_dict()
    assert r["error"] is None and any(said in n for n in r["notes"]), r["notes"]
    assert r["G"]["rank"] == _reference_rank(m, _inputs(folder))  # G of the tensor it says it uses
    assert [p["name"] for p in r["model"]["params"]] == [k for k, _ in m.named_parameters()]
    assert [row["module"] for row in r["layers"]] == ["encoder", "head"]  # the wrapper adds no prefix
    assert np.array_equal(report.theta, _flat(m))


def test_a_tuple_model_also_gives_teacher_targets(tmp_path):
    folder = _user_folder(tmp_path)
    p = make_preset(data={**DATA, "targets": "teacher"}, model={"kind": "python", "factory": "model:pair"},
                    train={"steps": 2}, analysis=QUICK, source_dir=folder)
    assert run(p).to_dict()["error"] is None


def test_an_output_with_no_tensor_is_refused(tmp_path, no_training):
    folder = _user_folder(tmp_path)
    with pytest.raises(InputError) as info:
        run(make_preset(data=DATA, model={"kind": "python", "factory": "model:no_tensor"}, analysis=QUICK,
                        source_dir=folder))
    assert info.value.key == "model.factory" and "none of them is a tensor" in str(info.value)


# --------------------------------------------------------------------------- a researcher's own files, from the CLI


FIVE_LINES = textwrap.dedent("""
    data = {n = 5, dim = 3}
    model = {kind = "python", factory = "model:net", checkpoint = "w.safetensors"}
    train = {steps = 0}
    analysis = {hessian = "dense", layers = true}
""")


def test_a_five_line_preset_loads_the_researchers_factory_and_state_dict(tmp_path):
    folder = _user_folder(tmp_path)
    m = _net()
    _save(m.state_dict(), folder / "w.safetensors")
    (folder / "my.toml").write_text(FIVE_LINES)
    report = run(load_preset(str(folder / "my.toml")))
    r = report.to_dict()
    assert r["error"] is None and np.array_equal(report.theta, _flat(m))
    assert r["G"]["rank"] == _reference_rank(m, _inputs(folder))
    assert r["hessian"] is not None
    assert [row["module"] for row in r["layers"]] == ["encoder", "head"]  # the user's own module names
    assert r["layers"][-1]["cumulative_rank"] == r["G"]["rank"]


@pytest.mark.slow  # a whole run in a second process; the test above is its in-process twin
def test_a_researchers_factory_and_state_dict_run_from_the_command_line(tmp_path):
    folder = _user_folder(tmp_path)
    m = _net()
    path = _save(m.state_dict(), folder / "w.safetensors")
    (folder / "my.toml").write_text(FIVE_LINES)
    proc = run_cli("run", str(folder / "my.toml"), "--json", str(folder / "out.json"))
    assert proc.returncode == 0, proc.stderr
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"w.safetensors (sha256 {sha[:12]}" in proc.stdout
    r = json.loads((folder / "out.json").read_text())
    assert r["model"]["checkpoint_sha256"] == sha and r["G"]["rank"] == _reference_rank(m, _inputs(folder))
    assert r["hessian"] is not None and r["layers"] is not None
    assert [p["name"] for p in r["model"]["params"]] == ["encoder.weight", "encoder.bias", "head.weight", "head.bias"]


@pytest.mark.slow  # a second process; the flag is a --set override, tested in process below
def test_the_checkpoint_flag_overrides_the_key_and_a_bad_file_exits_2(tmp_path):
    folder = _user_folder(tmp_path)
    (folder / "my.toml").write_text(FIVE_LINES.replace("w.safetensors", "absent.pt"))
    _save(_net().state_dict(), tmp_path / "elsewhere.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "elsewhere.pt").read_bytes()[:100])
    ok = run_cli("run", str(folder / "my.toml"), "--checkpoint", "elsewhere.pt", "--quiet", "--json",
                 str(tmp_path / "o.json"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "o.json").read_text())["model"]["checkpoint"] == str(tmp_path / "elsewhere.pt")
    bad = run_cli("run", str(folder / "my.toml"), "--checkpoint", "cut.pt", cwd=tmp_path)
    assert bad.returncode == 2 and "model.checkpoint" in bad.stderr and "Traceback" not in bad.stderr
    assert "stage train" not in bad.stderr


def test_the_flag_is_an_override_of_model_checkpoint(tmp_path, monkeypatch):
    from basintui import cli

    folder = _user_folder(tmp_path)
    (folder / "my.toml").write_text(FIVE_LINES.replace("w.safetensors", "absent.pt"))
    _save(_net().state_dict(), tmp_path / "elsewhere.pt")
    monkeypatch.chdir(tmp_path)
    args = cli._parser().parse_args(["run", str(folder / "my.toml"), "--checkpoint", "elsewhere.pt"])
    preset = cli._run_preset(args)
    assert preset.model.checkpoint == str(tmp_path / "elsewhere.pt")
    with pytest.raises(PresetError):
        load_preset(str(folder / "my.toml"))  # absent.pt: the preset alone is refused
