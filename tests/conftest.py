"""Shared helpers: small presets built in code, and a CLI runner in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from basintui.config import Preset, from_dict

ROOT = Path(__file__).resolve().parent.parent


def make_preset(**sections) -> Preset:
    """A validated preset from keyword sections: make_preset(data={"n": 8}, train={"steps": 0})."""
    source_dir = str(sections.pop("source_dir", ""))
    raw = {"name": "test", "seed": 0, "device": "cpu", **sections}
    return from_dict(raw, source_dir=source_dir)


def engine_plan(preset: Preset):
    """The Plan the engine makes for `preset` (sizes measured from the built model): the session is run
    until its PlanReady event and stopped there, before training."""
    from basintui.engine.session.run import run
    from basintui.schema.events import PlanReady

    plans = []

    class Stop(Exception):
        pass

    def on_event(e):
        if isinstance(e, PlanReady):
            plans.append(e.plan)
            raise Stop

    with pytest.raises(Stop):
        run(preset, on_event)
    return plans[0]


def run_cli(*args: str, timeout: float = 300, cwd: str | os.PathLike | None = None, env: dict | None = None):
    """Run `python -m basintui.cli ARGS` and return the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.update({"COLUMNS": "120", "NO_COLOR": "1"})
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "basintui.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env=full_env)


@pytest.fixture
def preset_factory():
    return make_preset


MAX_AUTO_WORKERS = 8  # each worker imports torch; the CLI tests start processes of their own


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per CPU this process may run on, at most 8.

    xdist itself would count physical cores when psutil is installed: 1 on a 2-vCPU machine."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if env.isdigit():
        return int(env)
    return max(1, min(usable_cpus(), MAX_AUTO_WORKERS))


def _a_share_of_the_cpus() -> None:
    """In an xdist worker, torch's and BLAS's thread pools get this worker's share of the CPUs, and so
    do the CLI processes it starts (they inherit the environment). Every worker with a pool as wide as
    the machine oversubscribes it: OpenMP threads spinning against each other made a test of small
    products 4x slower on two busy cores (measured: 70 s with 2 threads, 19 s with 1). Set before any
    test module imports torch; a value already in the environment is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        share = str(max(1, usable_cpus() // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, share)


_a_share_of_the_cpus()


def plain(app, selector: str, width: int = 200) -> str:
    """The text a Static of the app's main screen shows (a rich renderable printed at `width`, styles dropped)."""
    import io

    from rich.console import Console
    from textual.widgets import Static

    content = app.screen_stack[0].query_one(selector, Static).content
    if isinstance(content, str):
        return content
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()
