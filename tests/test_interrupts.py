"""Interrupts and outputs (issue 13): SIGINT and SIGTERM in every stage of a real `basintui run`,
checked by the report's contents; Ctrl-C while torch imports; atomic, umask-respecting writes that
leave nothing behind after SIGKILL; `--json -`; --json and --npz on one path.

Each stage test picks sizes that make that stage last (seconds, on two busy cores), starts the CLI
with `--progress lines`, reads stderr line by line, and sends the signal as soon as the line saying
the stage has started arrives. No wall-clock bound is asserted beyond a generous one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from basintui.config import list_presets
from conftest import ROOT, run_cli

GENEROUS_S = 60.0  # the wait for the exit after a signal: a hang guard (measured 0.1-0.3 s on two shared cores)
NO_PROBES = ["analysis.rank_every=-1"]  # no live rank probes during training

# stage -> the --set values that make it last, and the sections that must be in the report before it
STAGES: dict[str, list[str]] = {
    # 1M inputs: generating them, the teacher's targets and the plan take seconds
    "data": ["data.n=1000000", "data.dim=32", "model.hidden=[16,16]", "train.steps=0",
             'analysis.hessian="off"', "analysis.layers=false"],
    # live rank probes every 5 steps on a 3,217-parameter net
    "train": ["data.n=256", "data.dim=16", "model.hidden=[48,48]", "train.steps=100000", "train.target_loss=0.0",
              "analysis.rank_every=5"],
    # G of 4,801 × 16,384 formed explicitly (~0.5 s, and a long SVD after it)
    "jacobian": ["data.n=16384", "model.hidden=[64,64]", "train.steps=2", 'analysis.route="explicit"',
                 'analysis.hessian="off"', "analysis.layers=false", *NO_PROBES],
    # an SVD of 2,817 × 2,048 (tens of seconds here when not cancelled)
    "spectrum": ["data.n=2048", "model.hidden=[48,48]", "train.steps=5", 'analysis.route="explicit"',
                 'analysis.hessian="off"', "analysis.layers=false", *NO_PROBES],
    # a dense 1,377 × 1,377 Hessian (seconds)
    "hessian": ["data.n=128", "model.hidden=[32,32]", "train.steps=20", 'analysis.hessian="dense"',
                *NO_PROBES],
    # 4,096 inputs through the per-layer partitions (~10 s)
    "layers": ["data.n=4096", "model.hidden=[32,32]", "train.steps=5", 'analysis.hessian="off"',
               *NO_PROBES],
    # the level-set probe (minutes when not cancelled)
    "levelset": ["data.n=128", "model.hidden=[32,32]", "train.steps=20", 'analysis.hessian="off"',
                 "analysis.levelset=true", *NO_PROBES],
}
ORDER = ["data", "train", "jacobian", "spectrum", "hessian", "layers", "levelset"]
FULL_ORDER = [*ORDER, "symmetry", "soft", "probe", "llc", "slices"]  # with the stages beyond the rank (issue 18)


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def run_and_signal(stage: str, sig: int, sets: list[str], tmp_path: Path, *, timeout: float = 300):
    """Start `basintui run default` with `sets`, send `sig` when stderr says `stage` started.

    Returns (returncode, report dict or None, stderr text, seconds from the signal to the exit)."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "basintui.cli", "run", "default", "--progress", "lines", "--quiet",
           "--json", str(out), "--npz", str(tmp_path / "r.npz")]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
    seen, sent = [], None
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                if sent is not None:  # a hang guard, not a measure (0.1-0.3 s is usual)
                    pytest.fail(f"still running {GENEROUS_S} s after the signal:\n" + "".join(seen))
                pytest.fail(f"no 'stage {stage} started' within {timeout} s:\n" + "".join(seen))
            if line is None:
                break
            seen.append(line)
            if sent is None and line.strip() == f"basintui: stage {stage} started":
                proc.send_signal(sig)
                sent = time.monotonic()
                deadline = min(deadline, sent + GENEROUS_S)
        proc.wait(timeout=GENEROUS_S + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sent is not None, f"the stage {stage} never started:\n" + "".join(seen)
    report = json.loads(out.read_text()) if out.exists() else None
    return proc.returncode, report, "".join(seen), time.monotonic() - sent


def _sections_before(stage: str, report: dict) -> None:
    """Whatever finished before the cancelled stage is in the report; the stage's own section is not."""
    done = ORDER[: ORDER.index(stage)]
    assert (report["G"] is not None) == ("spectrum" in done)
    cfg = report["config"]["analysis"]
    if cfg["hessian"] != "off":
        assert (report["hessian"] is not None) == ("hessian" in done)
    if cfg["layers"]:
        assert (report["layers"] is not None) == ("layers" in done)
    assert report["levelset"] is None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", ORDER)
def test_a_signal_in_each_stage_cancels_and_writes_what_was_computed(stage, sig, tmp_path):
    rc, report, stderr, seconds = run_and_signal(stage, sig, STAGES[stage], tmp_path)
    assert rc == 130, stderr
    assert "Traceback" not in stderr
    assert report is not None, stderr
    t = report["training"]
    assert t["status"] == "cancelled", t
    assert t["cancelled_stage"] == stage, t
    assert f"cancelled during the {stage} stage" in stderr
    assert len(t["losses"]) == t["steps"]
    if stage == "data":
        assert t["steps"] == 0 and report["G"] is None
    elif stage == "train":
        assert 0 <= t["steps"] < 100000
    else:
        assert t["steps"] == int(next(s for s in STAGES[stage] if s.startswith("train.steps=")).split("=")[1])
    if stage != "data":
        assert report["model"]["n_params"] > 0
    _sections_before(stage, report)
    npz = tmp_path / "r.npz"
    assert npz.exists()
    with np.load(npz) as z:
        assert len(z["losses"]) == t["steps"]
        if report["G"] is not None:
            assert np.allclose(z["singular_values"], report["G"]["singular_values"])
    # nothing but the two reports is left in the folder (no temporary files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.npz"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", [0.15, 0.5, 1.0, 1.8])
def test_a_signal_while_starting_up_is_one_line_and_130(sig, delay, tmp_path):
    """The first seconds import rich, numpy and torch: a signal there is one line on stderr, exit 130."""
    out = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "basintui.cli", "run", "default", "--json", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not out.exists():  # interrupted before the run began: one line
        assert len(lines) == 1 and "interrupted" in lines[0], stderr
    else:  # the run had begun: a cancelled report
        assert json.loads(out.read_text())["training"]["status"] == "cancelled"


@pytest.mark.slow
def test_a_second_signal_ends_the_run_at_once(tmp_path):
    """The second signal aborts (no waiting for a report); either way the exit is 130, without a traceback."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "basintui.cli", "run", "default", "--progress", "lines", "--json", str(out)]
    for s in ["train.steps=100000", "train.target_loss=0.0", "analysis.rank_every=-1"]:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "stage train started" in line:
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------- outputs


def test_json_dash_writes_the_report_to_stdout_and_no_file_named_dash(tmp_path):
    proc = run_cli("run", "default", "--set", "train.steps=3", "--set", "analysis.layers=false",
                   "--set", 'analysis.hessian="off"', "--json", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert report["schema"] == "basintui.report/2" and report["training"]["steps"] == 3
    assert not (tmp_path / "-").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("npz", ["same", "dot", "dash"])
def test_json_and_npz_on_one_path_are_refused(npz, tmp_path):
    path = tmp_path / "r.out"
    other = {"same": str(path), "dot": str(tmp_path / "." / "r.out"), "dash": "-"}[npz]
    json_path = "-" if npz == "dash" else str(path)
    proc = run_cli("run", "default", "--json", json_path, "--npz", other)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--npz" in lines[0], proc.stderr
    assert not path.exists()


def test_reports_respect_the_umask(tmp_path):
    from basintui.atomic import write_atomic as _atomic

    old = os.umask(0o022)
    try:
        p = _atomic(tmp_path / "a.json", lambda fh: fh.write(b"{}"))
        assert (os.stat(p).st_mode & 0o777) == 0o644
        os.umask(0o077)
        p = _atomic(tmp_path / "b.json", lambda fh: fh.write(b"{}"))
        assert (os.stat(p).st_mode & 0o777) == 0o600
    finally:
        os.umask(old)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json", "b.json"]


KILL_WHILE_WRITING = """
import os, signal, sys
from basintui.atomic import write_atomic as _atomic
def write(fh):
    fh.write(b"x" * 100000)
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
_atomic(sys.argv[1], write)
"""


def test_sigkill_while_writing_leaves_the_old_report_and_no_stray_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text('{"old": true}')
    proc = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING, str(target)], cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert json.loads(target.read_text()) == {"old": True}


def test_a_temporary_left_by_a_killed_writer_is_swept_by_the_next_write(tmp_path):
    from basintui.atomic import write_atomic as _atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".r.json.basintui-{dead.pid}-0000.tmp"
    stale.write_text("half")
    other = tmp_path / f".other.json.basintui-{dead.pid}-0000.tmp"  # another target's: not ours to sweep
    other.write_text("half")
    _atomic(tmp_path / "r.json", lambda fh: fh.write(b"{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "r.json"]


PRESETS = [name for name, _ in list_presets()]


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_ctrl_c_at_a_random_moment_of_any_preset(name, tmp_path):
    """A seeded random moment: after a random stage's start line, plus up to 0.3 s. Either the run had
    already finished (exit 0, a complete report) or it exits 130 with what it had computed."""
    import random

    rng = random.Random(f"{name}-13")
    nth, extra = rng.randrange(0, 6), rng.uniform(0.0, 0.3)
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "basintui.cli", "run", name, "--progress", "lines", "--quiet", "--json", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    starts, sent, err = 0, False, []
    for line in proc.stderr:
        err.append(line)
        if line.endswith(" started\n"):
            if starts == nth and not sent:
                time.sleep(extra)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    sent = True
            starts += 1
    proc.wait(timeout=GENEROUS_S + 30)
    stderr = "".join(err)
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    t = report["training"]
    print(f"{name}: signal after start line {nth} + {extra:.2f} s: exit {proc.returncode}, "
          f"cancelled_stage {t['cancelled_stage']}")
    if proc.returncode == 0:
        assert t["status"] != "cancelled" and t["cancelled_stage"] is None
        assert report["G"] is not None
        return
    assert sent and proc.returncode == 130, stderr
    assert t["status"] == "cancelled" and t["cancelled_stage"] in FULL_ORDER, t
    assert len(t["losses"]) == t["steps"]
    stage = t["cancelled_stage"]
    done, after = FULL_ORDER[: FULL_ORDER.index(stage)], FULL_ORDER[FULL_ORDER.index(stage) + 1:]
    skipped = report.get("skipped") or {}
    assert (report["G"] is not None) or "spectrum" not in done
    for section in ("hessian", "layers", "levelset"):
        if section in after:
            assert report[section] is None
    cfg = report["config"]["analysis"]
    if "hessian" in done and cfg["hessian"] != "off" and "hessian" not in skipped:
        assert report["hessian"] is not None
    if "layers" in done and cfg["layers"] and "layers" not in skipped:
        assert report["layers"] is not None


@pytest.mark.parametrize("after", ["the last stage ended", pytest.param("the report was written", marks=pytest.mark.slow)])
def test_a_signal_once_the_run_is_over_leaves_a_complete_report_and_exit_0(tmp_path, after):
    """Once the engine has returned, a signal changes nothing: exit 0 beside a complete report (it had
    ended the process with 130 beside a complete, uncancelled report when it landed during the summary)."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "basintui.cli", "run", "xor-relu", "--set", "analysis.hessian=off",
           "--progress", "lines", "--json", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    trigger = "stage layers done" if after == "the last stage ended" else "wrote "
    err = []
    for line in proc.stderr:
        err.append(line)
        if trigger in line and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    proc.wait(timeout=GENEROUS_S + 30)
    stderr = "".join(err)
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    if proc.returncode == 130:  # the engine had not returned yet: a cancelled report, said so
        assert report["training"]["status"] == "cancelled", stderr
    else:
        assert proc.returncode == 0, stderr
        assert report["training"]["status"] != "cancelled" and report["G"]["rank"] == 3
