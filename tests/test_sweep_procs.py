"""Sweeps across processes (the slow set): SIGKILL then --resume gives every (point, seed) exactly once, a
Dask LocalCluster gives the same table as the process pool, a worker killed mid-run costs that run one
retry (pool and Dask), and Ctrl-C exits 130 with the runs in flight recorded and the files complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from conftest import ROOT, run_cli

from basintui.schema.sweep import decode_row, decode_summary

pytestmark = pytest.mark.slow

DEEP = ["deep-linear", "--set", "train.steps=0", "--set", "data.targets=self", "--set", "data.n=12",
        "--grid", "model.hidden=[[6, 5], [2, 8]]", "--seeds", "4"]


def rows(out: Path):
    return [decode_row(line) for line in (out / "runs.jsonl").read_bytes().splitlines() if line.strip()]


def table(out: Path):
    """The summary's points without their timings (the only column two backends may differ in)."""
    points = msgspec.to_builtins(decode_summary((out / "sweep.json").read_bytes()).points)
    return [{k: v for k, v in p.items() if k != "mean_seconds"} for p in points]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "basintui.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_rows(out: Path, n: int, proc: subprocess.Popen, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        p = out / "runs.jsonl"
        if p.exists() and len(p.read_bytes().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rows after {limit_s} s")


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory):
    """The deep-linear sweep on the pool, SIGKILLed (with its workers) after two runs, then resumed."""
    out = tmp_path_factory.mktemp("pool")
    proc = start("sweep", *DEEP, "--workers", "1", "--out", str(out))
    wait_for_rows(out, 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = rows(out)
    done = run_cli("sweep", *DEEP, "--workers", "2", "--out", str(out), "--resume")
    return out, before, done


def test_sigkill_then_resume_runs_every_pair_exactly_once(pool_sweep):
    out, before, done = pool_sweep
    assert done.returncode == 0, done.stderr
    assert 2 <= len(before) < 8
    after = rows(out)
    assert after[: len(before)] == before  # nothing rewritten
    pairs = [(json.dumps(r.point, sort_keys=True), r.seed) for r in after]
    assert len(pairs) == len(set(pairs)) == 8  # 2 points × 4 seeds, each exactly once
    assert all(r.status == "ok" and r.attempts == 1 for r in after)
    for r in after:  # Singh et al.: q(r + d − q), data rank r = 4, d = 3
        q = min(4, 3, *r.point["model.hidden"])
        assert r.rank == q * (4 + 3 - q) == r.weyl_outside_band
    assert "fraction of runs rank-deficient" in done.stdout
    assert (out / "summary.csv").read_text().count("\n") == 3


def test_dask_local_gives_the_same_table_as_the_pool(pool_sweep, tmp_path):
    pool_out = pool_sweep[0]
    done = run_cli("sweep", *DEEP, "--dask", "local", "--workers", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert table(tmp_path) == table(pool_out)
    assert decode_summary((tmp_path / "sweep.json").read_bytes()).backend == "dask local"
    key = lambda r: (json.dumps(r.point, sort_keys=True), r.seed)
    for a, b in zip(sorted(rows(tmp_path), key=key), sorted(rows(pool_out), key=key)):
        assert (a.rank, a.near_threshold, a.weyl_outside_band, a.n_params) == \
               (b.rank, b.near_threshold, b.weyl_outside_band, b.n_params)


SELF_KILLING = '''
import os, signal
from pathlib import Path

import torch


def net(in_dim, out_dim):
    marker = Path(__file__).with_name("killed-once")
    if not marker.exists():  # the first run to build this model kills its own worker process
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return torch.nn.Sequential(torch.nn.Linear(in_dim, 3), torch.nn.Tanh(), torch.nn.Linear(3, out_dim))
'''

PRESET = '''
name = "self-killing"
[data]
kind = "xor"
targets = "labels"
[model]
kind = "python"
factory = "model:net"
[train]
steps = 20
[analysis]
hessian = "dense"
'''


@pytest.mark.parametrize("backend", [["--workers", "1"], ["--dask", "local", "--workers", "1"]])
def test_a_worker_killed_mid_run_costs_that_run_one_retry(tmp_path, backend):
    (tmp_path / "model.py").write_text(SELF_KILLING)
    (tmp_path / "p.toml").write_text(PRESET)
    out = tmp_path / "out"
    done = run_cli("sweep", str(tmp_path / "p.toml"), "--seeds", "3", *backend, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "killed-once").exists()
    rs = rows(out)
    assert sorted(r.seed for r in rs) == [0, 1, 2] and all(r.status == "ok" for r in rs)
    assert sorted(r.attempts for r in rs) == [1, 1, 2]


def test_ctrl_c_cancels_the_runs_in_flight_and_exits_130_with_complete_files(tmp_path):
    out = tmp_path / "out"
    proc = start("sweep", "xor-relu", "--set", "train.steps=1000000", "--set", "train.target_loss=0.0",
                 "--seeds", "3", "--workers", "2", "--out", str(out))
    time.sleep(8)  # the workers have imported torch and are training
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rs = rows(out)
    assert len(rs) == 2 and all(r.status == "cancelled" for r in rs)  # the two in flight; the third never started
    s = decode_summary((out / "sweep.json").read_bytes())
    assert not s.complete and s.points[0].cancelled == 2 and s.points[0].missing == 1
    assert (out / "summary.csv").read_text().count("\n") == 2
    assert "--resume" in err
