"""One sweep run, in whatever process runs it (a pool worker, a Dask worker): exactly what
`basintui run PRESET --set … --set seed=S` does (the same preset loader, the same engine call in its
helper thread), with a timer that cancels the run at `--timeout`.

`run_task` returns a plain dict: `outcome` (ok | retry | fail | cancelled) and the journal row's fields.
`retry` is a runtime failure or a timeout (the caller retries it once); `fail` is the preset's own fault
(an input error: a retry would fail the same way).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .grid import point_sets


@dataclass(frozen=True)
class Task:
    preset: str  # a built-in preset's name or a preset file's absolute path
    sets: tuple[str, ...]
    point: dict[str, Any]
    seed: int
    timeout: float | None = None
    report_path: str | None = None  # --keep-reports: where this run's report JSON goes
    text: str | None = None  # a preset held in memory (the app's Setup): its TOML, read relative to source_dir
    source_dir: str = ""


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_task(task: Task, cancel=None) -> dict[str, Any]:
    """Run one task to its row fields. `cancel` (a CancelToken) lets the caller stop it."""
    from ..cli import _partial_as_cancelled, _run_engine
    from ..config import PresetError
    from ..engine.cancel import CancelToken
    from ..engine.errors import InputError
    from .grid import load_run_preset
    from .verdicts import row_fields

    t0 = time.perf_counter()
    base = {"worker": _worker_name()}
    try:
        preset = load_run_preset(task.preset, list(task.sets) + point_sets(task.point, task.seed), task.text,
                                 task.source_dir)
    except PresetError as exc:
        return {**base, "outcome": "fail", "error": str(exc), "seconds": time.perf_counter() - t0}
    token = cancel or CancelToken()
    timed_out = threading.Event()
    timer = None
    if task.timeout:
        def expire() -> None:
            timed_out.set()
            token.cancel()
        timer = threading.Timer(task.timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        report, partial = _run_engine(preset, lambda e: None, token)
    except InputError as exc:
        return {**base, "outcome": "fail", "error": str(exc), "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - the engine's boundary: a user model or torch failed
        return {**base, "outcome": "retry", "error": f"the run failed: {_first_line(exc)}",
                "seconds": time.perf_counter() - t0}
    finally:
        if timer is not None:
            timer.cancel()
    seconds = time.perf_counter() - t0
    if timed_out.is_set():
        return {**base, "outcome": "retry", "error": f"timed out after {task.timeout:g} s", "seconds": seconds}
    if report is None or report.status == "cancelled":
        typed = report.to_schema() if report is not None else _partial_as_cancelled(partial, token.cancelled_stage)
        return {**base, **_keep(task, typed), "outcome": "cancelled", "error": "cancelled", "seconds": seconds}
    typed = report.to_schema()
    out = {**base, **row_fields(typed), **_keep(task, typed), "seconds": seconds}
    if typed.error is not None:
        kind = "fail" if typed.error.kind == "input" else "retry"
        return {**out, "outcome": kind, "error": typed.error.message}
    return {**out, "outcome": "ok", "error": None}


def _keep(task: Task, typed) -> dict[str, Any]:
    if not task.report_path or typed is None:
        return {}
    from ..engine.session.report import write_json

    Path(task.report_path).parent.mkdir(parents=True, exist_ok=True)
    return {"report": str(write_json(typed, task.report_path))}
