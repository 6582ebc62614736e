"""The command line as a user meets it: presets headless, bad input, help without torch, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from basintui.config import list_presets
from conftest import ROOT, run_cli

# The research-scale presets take a minute or more each as shipped: tests/test_zoo.py runs each at a reduced
# size in the default set (and as shipped, headless, in the slow set) with the same checks.
RESEARCH_PRESETS = {"modadd", "digits-cnn", "resmlp"}
PRESETS = [name for name, _ in list_presets() if name not in RESEARCH_PRESETS]


FAST_PRESETS = {"default"}  # one preset in the default run; every other one is in the slow set


@pytest.mark.parametrize("name", [n if n in FAST_PRESETS else pytest.param(n, marks=pytest.mark.slow)
                                  for n in PRESETS])
def test_every_preset_runs_headless_and_writes_a_true_report(name, tmp_path):
    out = tmp_path / "r.json"
    npz = tmp_path / "r.npz"
    proc = run_cli("run", name, "--set", "train.steps=15", "--json", str(out), "--npz", str(npz))
    assert proc.returncode == 0, proc.stderr
    assert "rank(G) =" in proc.stdout
    r = json.loads(out.read_text())
    assert r["schema"] == "basintui.report/2"
    g = r["G"]
    N, k, d = r["model"]["n_params"], r["data"]["n_train"], r["data"]["out_dim"]
    sv = g["singular_values"]
    assert len(sv) == min(N, k * d)
    assert sv == sorted(sv, reverse=True)
    assert g["rank"] == sum(s > g["tolerance"] for s in sv)
    assert g["kernel_dim"] == N - g["rank"]
    assert g["generic_dim"] == (N - k * d if N >= k * d else None)
    assert g["regime"] == ("over" if N > k * d else "under" if N < k * d else "square")
    assert g["submersion"] == (g["rank"] == k * d)
    assert r["training"]["steps"] == 15 or r["training"]["status"] == "converged"
    assert set(r["timings"]) >= {"train", "jacobian", "spectrum", "total"}
    import numpy as np

    with np.load(npz) as z:
        assert np.allclose(z["singular_values"], sv)
        assert z["theta"].shape == (N,)
        assert len(z["losses"]) == r["training"]["steps"]


@pytest.mark.slow  # a whole preset from the command line; test_oracles checks the same in process
def test_deep_linear_preset_reports_the_singh_rank(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("run", "deep-linear", "--set", "train.steps=0", "--set", "analysis.hessian=off",
                   "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    q = min(4, 3, 6, 5)
    assert r["G"]["rank"] == q * (4 + 3 - q) == 12


@pytest.mark.slow  # a whole preset from the command line; test_oracles checks the same in process
def test_underparam_preset_says_no_submersion(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("run", "underparam", "--set", "train.steps=5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["model"]["n_params"] < r["data"]["n_train"] * r["data"]["out_dim"]
    assert r["G"]["regime"] == "under" and r["G"]["generic_dim"] is None and r["G"]["submersion"] is False
    assert "never a submersion" in " ".join(r["G"]["meaning"])


BAD = [
    ("unknown key", ["--set", "train.stepz=3"], "train.stepz"),
    ("wrong type", ["--set", "train.steps=ten"], "train.steps"),
    ("out of range", ["--set", "data.n=0"], "data.n"),
    ("unknown enum", ["--set", "train.optimizer=rmsprop"], "train.optimizer"),
]


@pytest.mark.parametrize("what,args,key", BAD, ids=[b[0] for b in BAD])
def test_bad_overrides_exit_2_and_name_the_key(what, args, key):
    proc = run_cli("run", "default", *args)
    assert proc.returncode == 2
    assert key in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_data_file_malformed_toml_and_unknown_preset(tmp_path):
    (tmp_path / "missing.toml").write_text('[data]\nkind = "file"\npath = "absent.csv"\n')
    (tmp_path / "broken.toml").write_text('[data\nkind = "xor"\n')
    for args, needle in [
        (["run", str(tmp_path / "missing.toml")], "data.path"),
        (["run", str(tmp_path / "broken.toml")], "broken.toml"),
        (["run", "no-such-preset"], "no-such-preset"),
        (["run", str(tmp_path / "nope.toml")], "nope.toml"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_cuda_request_without_a_device_is_a_one_line_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the error path cannot be exercised here")
    proc = run_cli("run", "default", "--device", "cuda", "--set", "train.steps=1")
    assert proc.returncode == 2
    assert "cuda" in proc.stderr and "no CUDA device" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from basintui import cli\n"
        "rc = [cli.main(['--help']), cli.main(['--version']), cli.main(['run', '--help'])]\n"
        "print('RC', rc, 'TORCH' if 'torch' in sys.modules else 'NOTORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "RC [0, 0, 0] NOTORCH" in proc.stdout
    assert "basintui" in proc.stdout


def test_presets_command_lists_names_with_descriptions():
    proc = run_cli("presets")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("default ") and "ReLU" in line for line in lines)
    assert {line.split()[0] for line in lines} == set(PRESETS) | RESEARCH_PRESETS


def test_usage_error_exits_2():
    assert run_cli("run").returncode == 2
    assert run_cli("--no-such-flag").returncode == 2


def test_sigint_cancels_writes_a_cancelled_report_and_exits_130(tmp_path):
    """SIGINT while training: exit 130 and a cancelled report with the steps done. The signal is sent
    once the progress bar shows a loss (training under way, however long torch took to import on a
    loaded machine); the timeouts only guard against a hang, no duration is asserted."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "basintui.cli", "run", "default", "--set", "train.steps=5000000",
           "--set", "train.target_loss=0.0", "--set", "analysis.rank_every=-1", "--json", str(out)]
    env = dict(os.environ, TTY_COMPATIBLE="1", FORCE_COLOR="1", COLUMNS="120")  # the live progress bar
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen = bytearray()
    training = threading.Event()

    def read() -> None:
        while chunk := os.read(proc.stderr.fileno(), 65536):
            seen.extend(chunk)
            if re.search(rb"loss [-0-9.]", seen):
                training.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert training.wait(300) and proc.poll() is None, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(30)
    stderr = seen.decode(errors="replace")
    assert proc.returncode == 130, stderr
    r = json.loads(out.read_text())
    assert r["training"]["status"] == "cancelled"
    assert r["training"]["steps"] > 0 and len(r["training"]["losses"]) == r["training"]["steps"]
    assert "cancelled" in stderr
